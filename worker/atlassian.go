package worker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/integrations/bitbucket"
	"github.com/autoinvite/autoinvite/integrations/organization"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
)

// OrgAdmin is what the worker needs from the Atlassian Organization Admin API,
// which administers the groups and invitations of workspaces moved to
// Atlassian Administration.
type OrgAdmin interface {
	OrgID() string
	Directories(ctx context.Context) ([]organization.Directory, error)
	FindGroups(ctx context.Context, names []string) (map[string]organization.Group, error)
	FindWorkspace(ctx context.Context, slug string) (organization.Workspace, error)
	FindUsers(ctx context.Context, directoryID string, accountIDs []string) (map[string]organization.User, error)
	FindUserActivity(ctx context.Context, directoryID string, accountIDs []string) (map[string]organization.UserActivity, error)
	AddToGroup(ctx context.Context, directoryID, groupID, accountID string) (alreadyMember bool, err error)
	RemoveFromGroup(ctx context.Context, directoryID, groupID, accountID string) error
	Invite(ctx context.Context, inv organization.Invitation) ([]organization.InviteResult, int, error)
}

// adminRecheck is how long an "administered in Bitbucket" answer from Redis
// is trusted before reading again what other processes may have learned.
const adminRecheck = 30 * time.Second

// orgCacheTTL bounds how long resolved group ids and resource ids are used
// (a reload builds a new worker, and a write answering 404 drops them sooner).
const orgCacheTTL = time.Hour

type adminMemo struct {
	atlassian bool
	at        time.Time
}

// orgCache holds what the Admin API resolved for this worker's config.
type orgCache struct {
	mu        sync.Mutex
	groups    map[string]cachedGroup // workspace \x00 lower(name)
	resources map[string]cachedValue // workspace -> resource id
	dirs      map[string]cachedValue // org id -> the only directory
}

type cachedGroup struct {
	g  organization.Group
	at time.Time
}

type cachedValue struct {
	v  string
	at time.Time
}

func groupCacheKey(ws, name string) string { return ws + "\x00" + strings.ToLower(name) }

// atlassianAdministered reports whether the workspace's groups and
// invitations go through the Admin API: so configured, or (auto) learned from
// a refused 1.0 write by any process.
func (w *Worker) atlassianAdministered(ctx context.Context, workspace string) (bool, error) {
	ws := w.o.Rules().Config().Workspace(workspace)
	if ws == nil || ws.Bitbucket.DataCenter() {
		return false, nil
	}
	switch ws.Administration {
	case config.AdministrationAtlassian:
		return true, nil
	case config.AdministrationBitbucket:
		return false, nil
	}
	now := w.o.Now()
	if v, ok := w.adminSeen.Load(workspace); ok {
		m := v.(adminMemo)
		if m.atlassian || now.Sub(m.at) < adminRecheck {
			return m.atlassian, nil
		}
	}
	a, err := w.o.Ledger.GetAdministration(ctx, workspace)
	if err != nil {
		return false, err
	}
	atl := a != nil && a.Kind == config.AdministrationAtlassian
	w.adminSeen.Store(workspace, adminMemo{atlassian: atl, at: now})
	return atl, nil
}

// refused handles a 1.0 write that Bitbucket refused because the workspace is
// administered in Atlassian Administration. With administration: auto it is
// remembered for every process; carryOn says the same task can go on through
// the Admin API. Otherwise err explains what the admin must change.
func (w *Worker) refused(ctx context.Context, workspace string, cause error) (carryOn bool, err error) {
	cfg := w.o.Rules().Config()
	ws := cfg.Workspace(workspace)
	idx := slices.IndexFunc(cfg.Workspaces, func(x config.Workspace) bool { return x.Workspace == workspace })
	if ws == nil {
		return false, cause
	}
	if ws.Administration == config.AdministrationBitbucket {
		return false, fmt.Errorf("%w; workspaces[%d] says administration: bitbucket: set it to atlassian (or auto) and add an organization block", cause, idx)
	}
	log := zerolog.Ctx(ctx).With().Str("workspace", workspace).Logger()
	if !w.adminKnown(workspace) {
		if err := w.o.Ledger.SetAdministration(ctx, workspace, ledger.Administration{
			Kind: config.AdministrationAtlassian, Reason: cause.Error(), At: w.o.Now(),
		}); err != nil {
			return false, errors.Join(cause, err)
		}
		log.Warn().Err(cause).Msg("workspace is administered in Atlassian Administration: Bitbucket refused a 1.0 write; from now on its groups and invitations go through the Organization Admin API")
	}
	w.adminSeen.Store(workspace, adminMemo{atlassian: true, at: w.o.Now()})
	if w.organization(workspace) == nil {
		return false, noOrganization(workspace, idx, cause)
	}
	return true, nil
}

func (w *Worker) adminKnown(workspace string) bool {
	v, ok := w.adminSeen.Load(workspace)
	return ok && v.(adminMemo).atlassian
}

// noOrganization is the permanent failure of an Atlassian-administered
// workspace without an organization block: it says what to add.
func noOrganization(workspace string, idx int, cause error) error {
	msg := fmt.Sprintf("workspace %s is administered in Atlassian Administration (admin.atlassian.com), where Bitbucket's 1.0 group writes and invitations are disabled: "+
		"add to workspaces[%d] `organization: {id: <the UUID in admin.atlassian.com/o/<id>>, api_key_env: %s}` and set that variable to an organization API key (admin.atlassian.com → Settings → API keys)",
		workspace, idx, config.DefaultOrgAPIKeyEnv)
	if cause != nil {
		return fmt.Errorf("%s: %w", msg, cause)
	}
	return errors.New(msg)
}

// orgOf returns the workspace's organization client and settings, or the
// error that explains why there is none.
func (w *Worker) orgOf(workspace string) (OrgAdmin, *config.Organization, error) {
	cfg := w.o.Rules().Config()
	ws := cfg.Workspace(workspace)
	org := w.organization(workspace)
	if ws == nil || ws.Organization == nil || org == nil {
		idx := slices.IndexFunc(cfg.Workspaces, func(x config.Workspace) bool { return x.Workspace == workspace })
		return nil, nil, noOrganization(workspace, idx, nil)
	}
	return org, ws.Organization, nil
}

// resolveGroups maps the rules' group names to the organization's groups.
// Names that cannot be used (unknown, synced from an identity provider) come
// back in problems with the reason; err is a failed lookup.
func (w *Worker) resolveGroups(ctx context.Context, workspace string, names []string) (found map[string]organization.Group, problems map[string]string, err error) {
	org, oc, err := w.orgOf(workspace)
	if err != nil {
		return nil, nil, err
	}
	now := w.o.Now()
	found, problems = map[string]organization.Group{}, map[string]string{}
	var search []string
	w.orgs.mu.Lock()
	for _, n := range names {
		if c, ok := w.orgs.groups[groupCacheKey(workspace, n)]; ok && now.Sub(c.at) < orgCacheTTL {
			found[n] = c.g
		} else if id := oc.Groups[n]; id == "" {
			search = append(search, n)
		}
	}
	w.orgs.mu.Unlock()
	for _, n := range names {
		if _, ok := found[n]; ok || oc.Groups[n] == "" {
			continue
		}
		dir, err := w.directory(ctx, org, oc)
		if err != nil {
			return nil, nil, err
		}
		found[n] = organization.Group{ID: oc.Groups[n], Name: n, DirectoryID: dir}
	}
	if len(search) > 0 {
		got, err := org.FindGroups(ctx, search)
		if err != nil {
			return nil, nil, fmt.Errorf("look up groups %s in organization %s: %w", strings.Join(search, ", "), org.OrgID(), err)
		}
		for _, n := range search {
			if g, ok := got[strings.ToLower(n)]; ok {
				found[n] = g
			}
		}
	}
	w.orgs.mu.Lock()
	for n, g := range found {
		w.orgs.groups[groupCacheKey(workspace, n)] = cachedGroup{g: g, at: now}
	}
	w.orgs.mu.Unlock()
	for _, n := range names {
		g, ok := found[n]
		switch {
		case !ok:
			problems[n] = fmt.Sprintf("group %q not found in Atlassian organization %s (looked up by name): create it in admin.atlassian.com → Directory → Groups, fix the rule, or map the name in organization.groups", n, org.OrgID())
		case g.ExternalSynced:
			problems[n] = fmt.Sprintf("group %q is managed by your identity provider (synced from an external directory): autoinvite cannot change its members; grant it through the identity provider or name another group", n)
		}
		if problems[n] != "" {
			delete(found, n)
		}
	}
	return found, problems, nil
}

// forgetGroup drops a cached group after a write said it no longer exists.
func (w *Worker) forgetGroup(workspace, name string) {
	w.orgs.mu.Lock()
	delete(w.orgs.groups, groupCacheKey(workspace, name))
	w.orgs.mu.Unlock()
}

// directory is the directory of groups given by id in the config: the
// configured one, else the organization's only directory.
func (w *Worker) directory(ctx context.Context, org OrgAdmin, oc *config.Organization) (string, error) {
	if oc.DirectoryID != "" {
		return oc.DirectoryID, nil
	}
	now := w.o.Now()
	w.orgs.mu.Lock()
	c, ok := w.orgs.dirs[org.OrgID()]
	w.orgs.mu.Unlock()
	if ok && now.Sub(c.at) < orgCacheTTL {
		return c.v, nil
	}
	dirs, err := org.Directories(ctx)
	if err != nil {
		return "", fmt.Errorf("list the directories of organization %s: %w", org.OrgID(), err)
	}
	if len(dirs) != 1 {
		return "", fmt.Errorf("organization %s has %d directories: set organization.directory_id to the one holding the groups in organization.groups", org.OrgID(), len(dirs))
	}
	w.orgs.mu.Lock()
	w.orgs.dirs[org.OrgID()] = cachedValue{v: dirs[0].ID, at: now}
	w.orgs.mu.Unlock()
	return dirs[0].ID, nil
}

// resource is the workspace's resource id for invitations: configured, or
// found by the workspace search.
func (w *Worker) resource(ctx context.Context, workspace string) (string, error) {
	org, oc, err := w.orgOf(workspace)
	if err != nil {
		return "", err
	}
	if oc.WorkspaceResourceID != "" {
		return oc.WorkspaceResourceID, nil
	}
	now := w.o.Now()
	w.orgs.mu.Lock()
	c, ok := w.orgs.resources[workspace]
	w.orgs.mu.Unlock()
	if ok && now.Sub(c.at) < orgCacheTTL {
		return c.v, nil
	}
	found, err := org.FindWorkspace(ctx, workspace)
	if err != nil {
		return "", fmt.Errorf("find workspace %s among organization %s's workspaces (or set organization.workspace_resource_id): %w", workspace, org.OrgID(), err)
	}
	w.orgs.mu.Lock()
	w.orgs.resources[workspace] = cachedValue{v: found.ID, at: now}
	w.orgs.mu.Unlock()
	return found.ID, nil
}

// queueAtlassian puts the person in the workspace's batched Admin API call:
// directory members are added to the groups, everyone else invited once.
func (w *Worker) queueAtlassian(ctx context.Context, entry *ledger.Entry, groups []string, actor string) error {
	if _, _, err := w.orgOf(entry.Workspace); err != nil {
		for _, g := range groups {
			entry.Wait(g)
		}
		entry.Status = ledger.StatusFailed
		return w.failAs(ctx, entry, err, actor)
	}
	if entry.AccountID == "" && entry.Email == "" {
		for _, g := range groups {
			entry.Wait(g)
		}
		entry.Status = ledger.StatusWaitingForEmail
		entry.Record(w.o.Now(), actor, ledger.ActionWaitingForEmail, "", "no account id and Jira hides the email: the organization can neither find nor invite the person")
		return w.o.Ledger.Put(ctx, entry)
	}
	it := jobs.BatchItem{Kind: jobs.BatchOrgAdmin, Workspace: entry.Workspace, Groups: groups, PersonID: entry.PersonID, Who: entry.Email, AccountID: entry.AccountID}
	if err := w.queueBatch(ctx, entry, []jobs.BatchItem{it}, actor, "Atlassian Administration: group membership or invitation, batched with others"); err != nil {
		return w.failAs(ctx, entry, err, actor)
	}
	return w.settle(ctx, entry, ledger.StatusBatched, nil, actor)
}

// orgSeatCountKept is how long a member count of an Atlassian-administered
// workspace answers the seat guard of every signup: a burst counts once,
// not once per signup (those workspaces have no invitation list and no
// member listing at signup). Reserving against a shared count is safe:
// every reservation settled since the count began still counts.
const orgSeatCountKept = time.Minute

// orgSeatCount counts the members of an Atlassian-administered workspace
// for the seat guard, or takes a count another signup made within
// orgSeatCountKept.
func (w *Worker) orgSeatCount(ctx context.Context, ws string) (ledger.SeatCount, int, error) {
	if count, members, ok, err := w.o.Ledger.KeptSeatCount(ctx, ws); err != nil || ok {
		return count, members, err
	}
	count, err := w.o.Ledger.BeginSeatCount(ctx)
	if err != nil {
		return count, 0, err
	}
	members, err := w.o.Bitbucket.CountMembers(ctx, ws)
	if err != nil {
		return count, 0, err
	}
	if err := w.o.Ledger.KeepSeatCount(ctx, ws, count, members, orgSeatCountKept); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Str("workspace", ws).Msg("seat count not shared: the next signup counts again")
	}
	return count, members, nil
}

// orgBatchProgress is what the calls of one org batch did so far, stored
// under its task id: adds attempted (person|group) and invitations sent.
type orgBatchProgress struct {
	Attempted map[string]bool                      `json:"attempted,omitempty"`
	Invited   map[string]organization.InviteResult `json:"invited,omitempty"`
}

// orgPerson is what the batched Admin API call did for one person.
type orgPerson struct {
	added, already []string
	failed         map[string]string // group -> reason
	invited        bool
	inviteDetail   string
	accountID      string
	noEmail        bool
	done           []string // groups settled (the rest stay batched for the retry)
}

func (p *orgPerson) fail(group, reason string) {
	if p.failed == nil {
		p.failed = map[string]string{}
	}
	p.failed[group] = reason
	p.done = append(p.done, group)
}

// runOrgBatch carries out one batched Admin API call for people bound
// for the same groups: one user search finds who is in the organization's
// directory; they are added to each group, everyone else is invited, at most
// invites_per_call emails per call.
// With inviteOnly (re-sends) everyone is invited: invitees are in the
// directory from the first invitation on, so the search cannot tell them apart.
func (w *Worker) runOrgBatch(ctx context.Context, first jobs.BatchItem, items []jobs.BatchItem, taskID string, inviteOnly bool) error {
	log := zerolog.Ctx(ctx)
	org, oc, err := w.orgOf(first.Workspace)
	if err != nil {
		return w.batchFailed(ctx, items, err, taskID)
	}
	var names []string // every group still to do, for one lookup
	for _, it := range items {
		for _, g := range it.Groups {
			if !slices.Contains(names, g) {
				names = append(names, g)
			}
		}
	}
	groups, problems, err := w.resolveGroups(ctx, first.Workspace, names)
	if err != nil {
		return w.batchFailed(ctx, items, err, taskID)
	}
	for _, g := range slices.Sorted(maps.Keys(problems)) {
		log.Error().Str("group", g).Msg(problems[g])
	}
	people := make([]*orgPerson, len(items))
	usable := make([][]string, len(items)) // per person: the groups that can be granted
	for i, it := range items {
		people[i] = &orgPerson{}
		for _, g := range it.Groups {
			if reason, bad := problems[g]; bad {
				people[i].fail(g, reason)
			} else {
				usable[i] = append(usable[i], g)
			}
		}
	}

	// Who is in the directory of each group already: one search per directory.
	inDir := map[string]map[string]bool{} // directory -> account ids
	if !inviteOnly {
		var ids []string
		for _, it := range items {
			if it.AccountID != "" && !slices.Contains(ids, it.AccountID) {
				ids = append(ids, it.AccountID)
			}
		}
		for _, g := range groups {
			if _, done := inDir[g.DirectoryID]; done || len(ids) == 0 {
				continue
			}
			users, err := org.FindUsers(ctx, g.DirectoryID, ids)
			if err != nil {
				return w.batchFailed(ctx, items, fmt.Errorf("look people up in organization %s: %w", org.OrgID(), err), taskID)
			}
			inDir[g.DirectoryID] = map[string]bool{}
			for id, u := range users {
				if u.MembershipStatus == "" || u.MembershipStatus == "active" {
					inDir[g.DirectoryID][id] = true
				}
			}
		}
	}

	// What earlier runs of this batch did (a crash between a call and the
	// settling must not repeat an invitation).
	progress := orgBatchProgress{Attempted: map[string]bool{}, Invited: map[string]organization.InviteResult{}}
	if taskID != "" {
		if _, err := w.o.Ledger.BatchOutcome(ctx, taskID, &progress); err != nil {
			return err
		}
	}
	save := func() error {
		if taskID == "" {
			return nil
		}
		return w.o.Ledger.SaveBatchOutcome(context.WithoutCancel(ctx), taskID, progress)
	}

	var stop error // a temporary failure: what is left waits for the retry
	var invitees []int
	for i, it := range items {
		p := people[i]
		if len(usable[i]) == 0 {
			continue
		}
		member := it.AccountID != ""
		for _, g := range usable[i] {
			member = member && inDir[groups[g].DirectoryID][it.AccountID]
		}
		switch {
		case !member && it.Who != "":
			invitees = append(invitees, i)
			continue
		case !member:
			p.noEmail = true
			p.done = append(p.done, usable[i]...)
			continue
		}
		for _, g := range usable[i] {
			if stop != nil {
				break
			}
			key := it.PersonID + "|" + g
			tried := progress.Attempted[key]
			if !tried {
				progress.Attempted[key] = true
				if err := save(); err != nil {
					stop = err
					break
				}
			}
			already, err := w.orgAdd(ctx, org, first.Workspace, groups, g, it.AccountID)
			switch {
			case err == nil && already && tried: // an earlier run's add landed
				p.added = append(p.added, g)
				p.done = append(p.done, g)
			case err == nil && already:
				p.already = append(p.already, g)
				p.done = append(p.done, g)
			case err == nil:
				p.added = append(p.added, g)
				p.done = append(p.done, g)
			case isTemporaryOrWait(err):
				stop = err
			default:
				p.fail(g, err.Error())
			}
		}
	}

	var unsent []jobs.BatchItem
	if len(invitees) > 0 && stop == nil {
		unsent, stop = w.orgInvite(ctx, org, oc, first.Workspace, groups, usable, items, invitees, people, &progress, save)
	}
	detail := fmt.Sprintf("through Atlassian organization %s, %d in one batch", org.OrgID(), len(items))
	settleErr := w.settleEach(ctx, items, taskID, func(e *ledger.Entry, it jobs.BatchItem) {
		i := slices.IndexFunc(items, func(x jobs.BatchItem) bool { return x.PersonID == it.PersonID })
		w.settleOrgPerson(e, people[i], detail)
	})
	for i, it := range items {
		// The seat reserved at signup: taken if invited, freed if added or failed.
		if p := people[i]; p.invited || len(p.done) > 0 {
			w.settleSeat(ctx, it.Workspace, it.PersonID, p.invited)
		}
	}
	if stop != nil {
		if len(unsent) > 0 && !isTemporaryOrWait(stop) {
			return errors.Join(w.batchFailed(ctx, unsent, stop, taskID), settleErr)
		}
		log.Warn().Err(stop).Msg("Admin API call failed for now: the people not yet done wait for the retry")
		return errors.Join(stop, settleErr)
	}
	return settleErr
}

// orgAdd adds one person to one group; a group that the API says is gone is
// looked up again by name once (it may have been re-created under a new id).
func (w *Worker) orgAdd(ctx context.Context, org OrgAdmin, workspace string, groups map[string]organization.Group, name, accountID string) (bool, error) {
	g := groups[name]
	already, err := org.AddToGroup(ctx, g.DirectoryID, g.ID, accountID)
	if !errors.Is(err, organization.ErrGroupNotFound) {
		return already, err
	}
	w.forgetGroup(workspace, name)
	fresh, problems, rerr := w.resolveGroups(ctx, workspace, []string{name})
	if rerr != nil {
		return false, errors.Join(err, rerr)
	}
	if reason := problems[name]; reason != "" {
		return false, fmt.Errorf("%s: %w", reason, err)
	}
	if fresh[name].ID == g.ID {
		return false, err
	}
	groups[name] = fresh[name]
	return org.AddToGroup(ctx, fresh[name].DirectoryID, fresh[name].ID, accountID)
}

// orgInvite sends one invitation per invitee carrying all of their groups,
// one call per set of groups. unsent are the people whose emails did not go
// out; stop is the failure that stopped the calls.
func (w *Worker) orgInvite(ctx context.Context, org OrgAdmin, oc *config.Organization, workspace string, groups map[string]organization.Group,
	usable [][]string, items []jobs.BatchItem, invitees []int, people []*orgPerson, progress *orgBatchProgress, save func() error) (unsent []jobs.BatchItem, stop error) {
	resource, err := w.resource(ctx, workspace)
	if err != nil {
		if isTemporaryOrWait(err) {
			return nil, err
		}
		for _, i := range invitees {
			for _, g := range usable[i] {
				people[i].fail(g, err.Error())
			}
		}
		return nil, nil
	}
	bySet := map[string][]int{} // the same groups share calls
	var sets []string
	for _, i := range invitees {
		key := strings.Join(slices.Sorted(slices.Values(usable[i])), ",")
		if _, ok := bySet[key]; !ok {
			sets = append(sets, key)
		}
		bySet[key] = append(bySet[key], i)
	}
	for _, key := range sets {
		members := bySet[key]
		if stop != nil {
			for _, i := range members {
				unsent = append(unsent, items[i])
			}
			continue
		}
		var emails, ids []string
		for _, i := range members {
			if _, sent := progress.Invited[strings.ToLower(items[i].Who)]; !sent && !slices.Contains(emails, items[i].Who) {
				emails = append(emails, items[i].Who)
			}
		}
		for _, g := range usable[members[0]] {
			ids = append(ids, groups[g].ID)
		}
		var results []organization.InviteResult
		var sent int
		if len(emails) > 0 {
			results, sent, stop = org.Invite(ctx, organization.Invitation{
				Emails: emails, Resource: resource, Role: oc.Role, GroupIDs: ids, NotificationText: oc.NotificationText, PerCall: oc.InvitesPerCall,
			})
		}
		for _, r := range results {
			progress.Invited[strings.ToLower(r.Email)] = r
		}
		for _, e := range emails[:sent] { // sent, with or without a per-person result
			if _, ok := progress.Invited[strings.ToLower(e)]; !ok {
				progress.Invited[strings.ToLower(e)] = organization.InviteResult{Email: e, Reason: "no per-person result in the answer"}
			}
		}
		if sent > 0 {
			if err := save(); err != nil && stop == nil {
				stop = err
			}
		}
		for _, i := range members {
			p, email := people[i], items[i].Who
			r, done := progress.Invited[strings.ToLower(email)]
			if !done {
				unsent = append(unsent, items[i])
				continue
			}
			if r.Failed {
				for _, g := range usable[i] {
					p.fail(g, "the organization refused the invitation: "+r.Reason)
				}
				continue
			}
			p.invited, p.inviteDetail, p.accountID = true, r.Reason, r.AccountID
			p.done = append(p.done, usable[i]...)
		}
	}
	return unsent, stop
}

// settleOrgPerson records on the person's entry what the batch did.
func (w *Worker) settleOrgPerson(e *ledger.Entry, p *orgPerson, detail string) {
	now := w.o.Now()
	inv := w.o.Rules().Config().Invitations
	for _, g := range p.done {
		e.Unbatch(g)
	}
	for _, g := range p.added {
		e.Grant(g)
		e.Record(now, "batch", ledger.ActionGroupAdded, g, detail)
	}
	for _, g := range p.already {
		if e.Invited(g) {
			e.Grant(g)
			e.Record(now, "batch", ledger.ActionGroupAdded, g, detail+" (already a member through the invitation)")
			continue
		}
		e.GrantedByHand(g)
		e.Record(now, "batch", ledger.ActionGroupAlreadyGiven, g, "")
	}
	if p.invited {
		if e.AccountID == "" {
			e.AccountID = p.accountID
		}
		d := detail
		if p.inviteDetail != "" {
			d += ": " + p.inviteDetail
		}
		for _, g := range p.done {
			if _, failed := p.failed[g]; failed {
				continue
			}
			e.Waiting = without(e.Waiting, g)
			if pi := e.PendingInvitation(g); pi != nil {
				pi.Resends++
				pi.SentAt, pi.ExpiresAt = now, now.Add(inv.ExpireAfter.D())
				e.Record(now, "batch", ledger.ActionInvitationResent, g, fmt.Sprintf("re-send %d of %d %s", pi.Resends, inv.MaxResends, d))
				continue
			}
			e.Invitations = append(e.Invitations, ledger.Invitation{Group: g, SentAt: now, ExpiresAt: now.Add(inv.ExpireAfter.D()), State: ledger.InvitationPending})
			e.Record(now, "batch", ledger.ActionInvitationSent, g, d)
		}
		if inv.EarlyCheckInterval > 0 && e.AccountID != "" && e.NextCheckAt.IsZero() {
			e.NextCheckAt = now.Add(inv.EarlyCheckInterval.D())
		}
	}
	if p.noEmail {
		for _, g := range p.done {
			e.Wait(g)
		}
		e.Record(now, "batch", ledger.ActionWaitingForEmail, "", "not in the organization's directory and Jira hides the email")
	}
	var reasons []string
	for _, g := range slices.Sorted(maps.Keys(p.failed)) {
		e.Wait(g)
		e.Record(now, "batch", ledger.ActionError, g, p.failed[g])
		reasons = append(reasons, p.failed[g])
	}
	switch {
	case len(reasons) > 0:
		e.Status, e.LastError = ledger.StatusFailed, strings.Join(reasons, "; ")
	case len(e.Batched) > 0:
		e.Status = ledger.StatusBatched
	case p.noEmail:
		e.Status = ledger.StatusWaitingForEmail
	case e.AnyPendingInvitation():
		e.Status, e.LastError = ledger.StatusInvited, ""
	case len(e.Waiting) == 0:
		e.Status, e.LastError = ledger.StatusGranted, ""
	}
}

// acceptAtlassian records that an invitee joined an Atlassian-administered
// workspace: the invitation itself put them in its groups.
func (w *Worker) acceptAtlassian(ctx context.Context, entry *ledger.Entry, actor string) error {
	now := w.o.Now()
	for _, g := range entry.PendingGroups() {
		entry.Grant(g)
		entry.Record(now, actor, ledger.ActionInvitationAccepted, g, "joined; the organization invitation assigned the group")
	}
	entry.SetPendingInvitations(ledger.InvitationAccepted)
	entry.NextCheckAt = time.Time{}
	if rest := pending(entry, nil); len(rest) > 0 {
		return w.queueAtlassian(ctx, entry, rest, actor)
	}
	return w.settle(ctx, entry, ledger.StatusGranted, nil, actor)
}

// removeThroughOrg removes a person from a group of an Atlassian-administered workspace.
func (w *Worker) removeThroughOrg(ctx context.Context, e *ledger.Entry, group string) error {
	if e.AccountID == "" {
		return fmt.Errorf("remove %s from %s in workspace %s: no Atlassian account id is known for the person", e.PersonID, group, e.Workspace)
	}
	org, _, err := w.orgOf(e.Workspace)
	if err != nil {
		return err
	}
	groups, problems, err := w.resolveGroups(ctx, e.Workspace, []string{group})
	if err != nil {
		return err
	}
	if reason := problems[group]; reason != "" {
		return errors.New(reason)
	}
	g := groups[group]
	if err := org.RemoveFromGroup(ctx, g.DirectoryID, g.ID, e.AccountID); err != nil {
		if errors.Is(err, organization.ErrGroupNotFound) {
			w.forgetGroup(e.Workspace, group)
		}
		return fmt.Errorf("remove %s from %s in organization %s: %w", e.AccountID, group, org.OrgID(), err)
	}
	return nil
}

// isRefusedWrite reports a 1.0 write refused for an Atlassian-administered workspace.
func isRefusedWrite(err error) bool { return errors.Is(err, bitbucket.ErrAdministeredInAtlassian) }
