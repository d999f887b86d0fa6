package worker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/integrations/bitbucket"
	"github.com/autoinvite/autoinvite/integrations/jira"
	"github.com/autoinvite/autoinvite/integrations/organization"
	"github.com/autoinvite/autoinvite/integrations/ratelimit"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
	"github.com/autoinvite/autoinvite/reconcile"
	"github.com/autoinvite/autoinvite/rules"
)

// ReconcileLister is what a reconciliation pass reads from Jira.
type ReconcileLister interface {
	ListUsers(ctx context.Context, group string, startAt, maxResults int) (jira.Page, error)
	ListGroupMembers(ctx context.Context, group string, startAt, maxResults int) (jira.Page, error)
}

// groupMemberLister reads a 1.0 group's members (the Bitbucket Cloud client).
type groupMemberLister interface {
	ListGroupMembers(ctx context.Context, workspace, group string) ([]bitbucket.GroupMember, error)
}

// orgMemberLister reads an organization group's members (the Admin API client).
type orgMemberLister interface {
	GroupMembers(ctx context.Context, directoryID, groupID string) ([]organization.User, error)
}

// ReconcileObserver is told a pass's progress (metrics).
type ReconcileObserver interface {
	ReconcileUsers(n int)
	ReconcileDrift(kind string)
	ReconcileFixed(kind string)
	ReconcilePass(outcome string)
}

// ReconcileOptions configures a pass.
type ReconcileOptions struct {
	Workspace string // only this workspace ("" = every one whose mode is not off)
	// DryRun changes nothing and keeps no state: the table only.
	DryRun   bool
	Actor    string
	Observer ReconcileObserver
	// Progress is told the number of Jira users examined after each one.
	Progress func(users int)
}

const actorReconcile = "reconcile"

// reconcileInPlaceWait is the longest rate-limit wait a pass sleeps through
// in its worker slot; a longer one ends the attempt (the cursor is stored)
// and the task comes back when the budget allows.
const reconcileInPlaceWait = 10 * time.Second

// signupsFirstDelay is how long a pass steps aside while signups wait for
// the Bitbucket budget, before it looks again.
const signupsFirstDelay = time.Minute

// Stages of a pass, in order.
const (
	stageJiraGroups = "jira-groups"
	stageBitbucket  = "bitbucket"
	stageUsers      = "users"
)

// reconcileState is where a pass is, stored in Redis after each page and
// each fix: an interrupted pass resumes there.
type reconcileState struct {
	Stage   string    `json:"stage"`
	Started time.Time `json:"started"`
	Group   int       `json:"group"` // Jira group being listed
	Start   int       `json:"start"` // startAt of the page being read
	Done    int       `json:"done"`  // users of that page already handled
	Users   int       `json:"users"`
	// JiraGroups are the rule-named Jira groups of each person id.
	JiraGroups map[string][]string `json:"jira_groups"`
	// Actual holds, per workspace and listed group, the members no Jira user
	// has explained yet (what is left at the end is reported).
	Actual map[string]map[string]map[string]bool `json:"actual"`
	Rows   []reconcile.Row                       `json:"rows,omitempty"`
	// Paused are the rows of a repair a budget wait interrupted, by
	// workspace and person: their reasons stand when the pass resumes.
	Paused map[string][]reconcile.Row `json:"paused,omitempty"`
	Notes  []string                   `json:"notes,omitempty"`
}

// pass is one running reconciliation.
type pass struct {
	o          ReconcileOptions
	cfg        *config.Config
	engine     *rules.Engine
	lister     ReconcileLister
	workspaces []string
	scope      string
	st         reconcileState
	pageSize   int
}

// Reconcile runs one reconciliation pass: it lists Jira's users and the
// members of the Jira groups the rules name, reads the Bitbucket groups the
// rules name, compares both with the ledger, and (mode apply) repairs the
// drift through the signup and revocation paths. A pass over the same
// workspaces that was interrupted resumes where it stopped.
func (w *Worker) Reconcile(ctx context.Context, lister ReconcileLister, o ReconcileOptions) (reconcile.Report, error) {
	engine := w.o.Rules()
	cfg := engine.Config()
	if o.Actor == "" {
		o.Actor = actorReconcile
	}
	p := &pass{o: o, cfg: cfg, engine: engine, lister: lister, pageSize: cfg.Reconcile.PageSize}
	if p.pageSize <= 0 {
		p.pageSize = 100
	}
	rep := reconcile.Report{DryRun: o.DryRun, Started: w.o.Now()}
	if o.Workspace != "" && cfg.Workspace(o.Workspace) == nil {
		return rep, fmt.Errorf("reconcile: workspace %q is not in the config", o.Workspace)
	}
	for _, ws := range cfg.Workspaces {
		switch {
		case o.Workspace != "" && ws.Workspace != o.Workspace:
		case cfg.ReconcileMode(ws.Workspace) == config.ReconcileOff:
			rep.Notes = append(rep.Notes, ws.Workspace+": reconcile mode is off: skipped")
		case ws.Bitbucket.DataCenter():
			rep.Notes = append(rep.Notes, ws.Workspace+": Bitbucket Data Center workspaces are not reconciled: skipped")
		default:
			p.workspaces = append(p.workspaces, ws.Workspace)
		}
	}
	p.scope = strings.Join(p.workspaces, ",")
	rep.Scope, rep.Workspaces = p.scope, p.workspaces
	if len(p.workspaces) == 0 {
		rep.Finished = w.o.Now()
		return rep, nil
	}
	log := zerolog.Ctx(ctx).With().Str("component", "reconcile").Str("scope", p.scope).Bool("dry_run", o.DryRun).Logger()
	ctx = log.WithContext(ctx)

	if !o.DryRun {
		// One pass per scope at a time: two would fight over one cursor.
		lock, err := w.o.Ledger.Lock(ctx, "reconcile-pass:"+p.scope, o.Actor, w.o.LockLease)
		if err != nil {
			return rep, fmt.Errorf("reconcile %s: another pass is running: %w", p.scope, err)
		}
		defer lock.Unlock()
		ok, err := w.o.Ledger.ReconcileState(ctx, p.scope, &p.st)
		if err != nil {
			return rep, err
		}
		rep.Resumed = ok
	}
	if p.st.Stage == "" {
		p.st = reconcileState{Stage: stageJiraGroups, Started: rep.Started, JiraGroups: map[string][]string{}, Actual: map[string]map[string]map[string]bool{}}
	} else {
		rep.Started = p.st.Started
		log.Info().Str("stage", p.st.Stage).Int("users", p.st.Users).Msg("resuming an interrupted reconciliation pass")
	}
	err := w.runPass(ctx, p)
	rep.Users, rep.Rows, rep.Finished = p.st.Users, p.st.Rows, w.o.Now()
	rep.Notes = dedupe(append(rep.Notes, p.st.Notes...))
	reconcile.Sort(rep.Rows)
	if err != nil {
		if o.Observer != nil {
			o.Observer.ReconcilePass("interrupted")
		}
		return rep, fmt.Errorf("reconcile %s (stage %s, %d users examined; the next pass resumes here): %w", p.scope, p.st.Stage, p.st.Users, err)
	}
	if o.DryRun {
		return rep, nil
	}
	if o.Observer != nil {
		o.Observer.ReconcilePass("completed")
	}
	found, fixed := len(rep.Rows), rep.Fixed()
	if err := w.o.Ledger.Audit(ctx, ledger.AuditRecord{
		Time: rep.Finished, Actor: o.Actor, Action: ledger.ActionReconcilePass,
		Detail: fmt.Sprintf("workspaces %s: %d Jira users, %d differences, %d fixed", p.scope, rep.Users, found, fixed),
	}); err != nil {
		return rep, err
	}
	log.Info().Int("users", rep.Users).Int("drift", found).Int("fixed", fixed).Msg("reconciliation pass done")
	return rep, w.o.Ledger.ClearReconcileState(ctx, p.scope)
}

func dedupe(items []string) []string {
	var out []string
	for _, s := range items {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// save stores the pass's position (not in a dry run: it keeps nothing).
func (w *Worker) save(ctx context.Context, p *pass) error {
	if p.o.DryRun {
		return nil
	}
	return w.o.Ledger.SaveReconcileState(context.WithoutCancel(ctx), p.scope, p.st)
}

func (w *Worker) runPass(ctx context.Context, p *pass) error {
	if p.st.Stage == stageJiraGroups {
		if err := w.listJiraGroups(ctx, p); err != nil {
			return err
		}
	}
	if p.st.Stage == stageBitbucket {
		if err := w.listBitbucket(ctx, p); err != nil {
			return err
		}
	}
	if err := w.reconcileUsers(ctx, p); err != nil {
		return err
	}
	return w.reportLeftovers(ctx, p)
}

// inPlace is the longest budget wait the pass sleeps through: a dry run
// keeps no cursor to resume from, so it waits whatever it takes.
func (p *pass) inPlace() time.Duration {
	if p.o.DryRun {
		return time.Duration(math.MaxInt64)
	}
	return reconcileInPlaceWait
}

// signupsFirst steps a pass aside while user events wait for the Bitbucket
// budget (signups always go first): a wait the task comes back from.
func (w *Worker) signupsFirst(ctx context.Context, p *pass) error {
	if p.o.DryRun || !w.signupsWaiting(ctx) {
		return nil
	}
	return fmt.Errorf("signups are waiting for the Bitbucket budget and go first: %w",
		&ratelimit.WaitError{API: ratelimit.APIBitbucket, Budget: "requests", RetryAfter: signupsFirstDelay, Position: -1})
}

// tooLong is a budget wait longer than the pass sleeps through.
func (p *pass) tooLong(err error) bool {
	w, ok := ratelimit.AsWait(err)
	return ok && w.RetryAfter > p.inPlace()
}

// jiraGroups are the Jira groups the rules of the pass's workspaces name.
func (p *pass) jiraGroups() []string {
	var out []string
	for _, ws := range p.workspaces {
		for _, r := range p.cfg.Workspace(ws).Rules {
			for _, g := range r.Match.JiraGroups {
				if !slices.Contains(out, g) {
					out = append(out, g)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// listJiraGroups pages through the members of each Jira group the rules
// name: Jira sends no webhook when someone joins a group.
func (w *Worker) listJiraGroups(ctx context.Context, p *pass) error {
	groups := p.jiraGroups()
	for p.st.Group < len(groups) {
		group := groups[p.st.Group]
		page, err := waitingUpTo(ctx, p.inPlace(), func() (jira.Page, error) {
			return p.lister.ListGroupMembers(ctx, group, p.st.Start, p.pageSize)
		})
		if err != nil {
			return err
		}
		for _, u := range page.Users {
			pid := jiraUser(u).PersonID()
			if pid != "" && !slices.Contains(p.st.JiraGroups[pid], group) {
				p.st.JiraGroups[pid] = append(p.st.JiraGroups[pid], group)
			}
		}
		if page.Done {
			p.st.Group, p.st.Start = p.st.Group+1, 0
		} else {
			p.st.Start = page.Next
		}
		if err := w.save(ctx, p); err != nil {
			return err
		}
	}
	p.st.Stage, p.st.Group, p.st.Start = stageBitbucket, 0, 0
	return w.save(ctx, p)
}

// ruleGroups are the Bitbucket groups a workspace's rules name.
func (p *pass) ruleGroups(ws string) []string {
	var out []string
	for _, r := range p.cfg.Workspace(ws).Rules {
		for _, g := range r.Groups {
			if !slices.Contains(out, g) {
				out = append(out, g)
			}
		}
	}
	return out
}

// listBitbucket reads the members of every group the rules name, per
// workspace: 1.0 group member listings where Bitbucket administers the
// workspace, the Admin API's users/search by group where Atlassian
// Administration does.
func (w *Worker) listBitbucket(ctx context.Context, p *pass) error {
	for _, ws := range p.workspaces {
		if _, done := p.st.Actual[ws]; done {
			continue
		}
		members, notes, err := w.groupMembers(ctx, p, ws, p.ruleGroups(ws))
		if err != nil {
			return err
		}
		p.st.Actual[ws] = members
		p.st.Notes = append(p.st.Notes, notes...)
		if err := w.save(ctx, p); err != nil {
			return err
		}
	}
	p.st.Stage = stageUsers
	return w.save(ctx, p)
}

// groupMembers lists the members of groups in a workspace. A group that
// cannot be read for good is left out with a note (nothing is compared on
// it); a temporary failure stops the pass, to resume later.
func (w *Worker) groupMembers(ctx context.Context, p *pass, ws string, groups []string) (map[string]map[string]bool, []string, error) {
	out := map[string]map[string]bool{}
	var notes []string
	atl, err := w.atlassianAdministered(ctx, ws)
	if err != nil {
		return nil, nil, err
	}
	if !atl {
		bb, ok := w.o.Bitbucket.(groupMemberLister)
		if !ok {
			return nil, nil, fmt.Errorf("reconcile %s: the Bitbucket client cannot list group members (dry_run is on?)", ws)
		}
		for _, g := range groups {
			if err := w.signupsFirst(ctx, p); err != nil {
				return nil, nil, err
			}
			members, err := waitingUpTo(ctx, p.inPlace(), func() ([]bitbucket.GroupMember, error) { return bb.ListGroupMembers(ctx, ws, g) })
			if isTemporaryOrWait(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return nil, nil, err
			}
			if err != nil {
				notes = append(notes, fmt.Sprintf("%s: group %s not compared: %v", ws, g, err))
				continue
			}
			set := map[string]bool{}
			for _, m := range members {
				id := m.AccountID
				if id == "" {
					id = m.UUID
				}
				set[id] = true
			}
			out[g] = set
		}
		return out, notes, nil
	}
	org, _, err := w.orgOf(ws)
	if err != nil {
		return nil, nil, err
	}
	lister, ok := org.(orgMemberLister)
	if !ok {
		return nil, nil, fmt.Errorf("reconcile %s: the organization client cannot list group members (dry_run is on?)", ws)
	}
	found, problems, err := w.resolveGroups(ctx, ws, groups)
	if err != nil {
		return nil, nil, err
	}
	for _, g := range groups {
		if reason, bad := problems[g]; bad {
			notes = append(notes, fmt.Sprintf("%s: group %s not compared: %s", ws, g, reason))
			continue
		}
		og := found[g]
		users, err := waitingUpTo(ctx, p.inPlace(), func() ([]organization.User, error) { return lister.GroupMembers(ctx, og.DirectoryID, og.ID) })
		if err != nil {
			return nil, nil, err
		}
		set := map[string]bool{}
		for _, u := range users {
			set[u.AccountID] = true
		}
		out[g] = set
	}
	return out, notes, nil
}

func jiraUser(u jira.User) jobs.User {
	return jobs.User{AccountID: u.AccountID, AccountType: u.AccountType, Name: u.Name, Key: u.Key, Email: u.Email, DisplayName: u.DisplayName}
}

// reconcileUsers pages through Jira's users (active and not) and handles
// each in every workspace of the pass.
func (w *Worker) reconcileUsers(ctx context.Context, p *pass) error {
	for {
		page, err := waitingUpTo(ctx, p.inPlace(), func() (jira.Page, error) { return p.lister.ListUsers(ctx, "", p.st.Start, p.pageSize) })
		if err != nil {
			return err
		}
		for i, u := range page.Users {
			if i < p.st.Done {
				continue // handled before the interruption
			}
			found, err := w.reconcileUser(ctx, p, u)
			if err != nil {
				return err
			}
			p.st.Done, p.st.Users = i+1, p.st.Users+1
			if p.o.Observer != nil && !p.o.DryRun {
				p.o.Observer.ReconcileUsers(1)
			}
			if found {
				if err := w.save(ctx, p); err != nil {
					return err
				}
			}
			if p.o.Progress != nil {
				p.o.Progress(p.st.Users)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		p.st.Start, p.st.Done = page.Next, 0
		if err := w.save(ctx, p); err != nil {
			return err
		}
		if page.Done {
			return nil
		}
	}
}

// reconcileUser compares one Jira user in every workspace of the pass and
// repairs what the mode allows; found says whether anything differed.
func (w *Worker) reconcileUser(ctx context.Context, p *pass, u jira.User) (found bool, err error) {
	user := jiraUser(u)
	pid := user.PersonID()
	if pid == "" || !rules.Eligible(u.AccountType) {
		return false, nil
	}
	decisions := map[string]rules.Decision{}
	if u.Active {
		for _, d := range p.engine.Evaluate(rules.Person{AccountType: u.AccountType, Email: u.Email, JiraGroups: p.st.JiraGroups[pid]}) {
			decisions[d.Workspace] = d
		}
	}
	for _, ws := range p.workspaces {
		e, err := w.o.Ledger.Get(ctx, ws, pid)
		if err != nil {
			return found, err
		}
		listed := p.st.Actual[ws]
		in := reconcile.Person{Active: u.Active, Entry: e, Actual: map[string]bool{}, Listed: map[string]bool{}, Decided: true, Regrant: p.cfg.RegrantRemoved(ws)}
		for g, members := range listed {
			in.Listed[g] = true
			in.Actual[g] = user.AccountID != "" && members[user.AccountID]
		}
		if d, ok := decisions[ws]; ok && !d.Excluded {
			in.Desired, in.Decided = d.Groups, !d.EmailUnknown && !d.Held
		}
		// Members this person explains are not reported as uncovered.
		for g := range in.Actual {
			if in.Actual[g] && (slices.Contains(in.Desired, g) || (e != nil && e.HasGranted(g))) {
				delete(listed[g], user.AccountID)
			}
		}
		rows := reconcile.Compare(in)
		if len(rows) == 0 {
			continue
		}
		found = true
		label := user.Email
		if label == "" && e != nil {
			label = e.Email
		}
		if label == "" {
			label = pid
		}
		pausedKey := ws + "\t" + pid
		paused := p.st.Paused[pausedKey]
		for i := range rows {
			rows[i].Person, rows[i].PersonID, rows[i].Workspace = strings.ToLower(label), pid, ws
			// A repair paused half way changed the ledger: the reason is the
			// one found before it.
			for _, r := range paused {
				if r.Group == rows[i].Group && r.Action == rows[i].Action {
					rows[i].Why = r.Why
				}
			}
		}
		if err := w.repair(ctx, p, user, e, rows); err != nil {
			// A long wait: this person is compared again when the pass resumes.
			if p.st.Paused == nil {
				p.st.Paused = map[string][]reconcile.Row{}
			}
			p.st.Paused[pausedKey] = rows
			return found, errors.Join(err, w.save(ctx, p))
		}
		delete(p.st.Paused, pausedKey)
		p.st.Rows = append(p.st.Rows, rows...)
		if err := w.auditRows(ctx, p, rows); err != nil {
			return found, err
		}
	}
	return found, nil
}

// repair carries out the rows' actions for one person in one workspace, as
// the mode allows, and sets each row's outcome. It returns only a budget
// wait too long to sleep through: the pass stops before this person.
func (w *Worker) repair(ctx context.Context, p *pass, user jobs.User, e *ledger.Entry, rows []reconcile.Row) error {
	ws := rows[0].Workspace
	apply := !p.o.DryRun && p.cfg.ReconcileMode(ws) == config.ReconcileApply
	var grant, regrant, revoke bool
	for i := range rows {
		switch rows[i].Action {
		case reconcile.ActGrant:
			grant = true
		case reconcile.ActRegrant:
			regrant = true
		case reconcile.ActRevoke:
			revoke = true
		}
		if !apply && rows[i].Actionable() {
			rows[i].Outcome = "would " + rows[i].Action
		}
	}
	if !apply {
		return nil
	}
	if atl, err := w.atlassianAdministered(ctx, ws); err == nil && !atl {
		if err := w.signupsFirst(ctx, p); err != nil {
			return err
		}
	}
	log := zerolog.Ctx(ctx).With().Str("person", user.PersonID()).Str("workspace", ws).Logger()
	owner := "reconcile:" + user.PersonID()
	if revoke {
		if mode := p.cfg.RevokeMode(ws); mode != config.RevokeApply {
			setOutcome(rows, reconcile.ActRevoke, func(string) string { return "not revoked (revoke: " + mode + ")" })
		} else {
			_, err := waitingUpTo(ctx, p.inPlace(), func() (struct{}, error) {
				return struct{}{}, w.reconcileRevoke(ctx, ws, user.PersonID(), owner, p.o.Actor)
			})
			if p.tooLong(err) {
				return err
			}
			after, gerr := w.o.Ledger.Get(ctx, ws, user.PersonID())
			setOutcome(rows, reconcile.ActRevoke, func(g string) string { return revokeOutcome(after, g, errors.Join(err, gerr)) })
			if err != nil {
				log.Warn().Err(err).Msg("reconcile: revocation failed (recorded in the ledger)")
			}
		}
	}
	if !grant && !regrant {
		return nil
	}
	if regrant {
		var groups []string
		for _, r := range rows {
			if r.Action == reconcile.ActRegrant {
				groups = append(groups, r.Group)
			}
		}
		if _, err := withBudget(ctx, func() (struct{}, error) {
			return struct{}{}, w.forgetGrants(ctx, ws, user.PersonID(), owner, p.o.Actor, groups)
		}); err != nil {
			setOutcome(rows, reconcile.ActRegrant, func(string) string { return "failed: " + err.Error() })
			if !grant {
				return nil
			}
		}
	}
	event := jobs.EventUserUpdated
	if e == nil {
		event = jobs.EventUserCreated
	}
	ev := jobs.UserEvent{Event: event, DeliveryID: "reconcile", ReceivedAt: w.o.Now(), User: user}
	_, err := waitingUpTo(ctx, p.inPlace(), func() (struct{}, error) { return struct{}{}, w.handleEvent(ctx, ev, owner, 0, ws) })
	if p.tooLong(err) {
		// The signup path queued the repair among the tasks waiting for the
		// budget; a paused pass is not one of them (it steps aside for them).
		if w.o.Backlog != nil {
			if derr := w.o.Backlog.Done(ctx, owner); derr != nil {
				log.Warn().Err(derr).Msg("budget backlog not updated: the paused repair leaves it when its turn passes")
			}
		}
		return err
	}
	after, gerr := w.o.Ledger.Get(ctx, ws, user.PersonID())
	if err != nil {
		log.Warn().Err(err).Msg("reconcile: signup path failed (recorded in the ledger)")
	}
	for _, act := range []string{reconcile.ActGrant, reconcile.ActRegrant} {
		setOutcome(rows, act, func(g string) string { return grantOutcome(after, g, errors.Join(err, gerr)) })
	}
	return nil
}

func setOutcome(rows []reconcile.Row, action string, outcome func(group string) string) {
	for i := range rows {
		if rows[i].Action == action && !strings.HasPrefix(rows[i].Outcome, "failed") {
			rows[i].Outcome = outcome(rows[i].Group)
		}
	}
}

// grantOutcome says what the signup path did about group, from the ledger.
func grantOutcome(e *ledger.Entry, g string, err error) string {
	switch {
	case e == nil && err != nil:
		return "failed: " + err.Error()
	case e == nil:
		return "nothing recorded"
	case g == "": // undecided until the signup path read the hidden email
		return "signup handled: " + string(e.Status)
	case slices.Contains(e.Granted, g):
		return "granted"
	case e.PendingInvitation(g) != nil:
		return "invited"
	case e.Batched[g] != time.Time{}:
		return "queued (batched call)"
	case slices.Contains(e.Waiting, g) && e.AnyPendingInvitation():
		return "invited (group on joining)"
	case e.Status == ledger.StatusWaitingForEmail:
		return "waiting for email"
	case e.Status == ledger.StatusSeatLimit:
		return "held (seat limit)"
	case e.Status == ledger.StatusExcluded:
		return "excluded"
	case e.Status == ledger.StatusFailed:
		return "failed: " + e.LastError
	case err != nil:
		return "failed: " + err.Error()
	}
	return "unchanged (" + string(e.Status) + ")"
}

// revokeOutcome says what the revocation did about group, from the ledger.
func revokeOutcome(e *ledger.Entry, g string, err error) string {
	switch {
	case e == nil:
		return "nothing recorded"
	case slices.Contains(e.HeldRemovals, g):
		return "held (removal limit reached)"
	case err != nil:
		return "failed: " + err.Error()
	case slices.Contains(e.Granted, g):
		return "unchanged (" + string(e.Status) + ")"
	}
	for _, inv := range e.Invitations {
		if inv.Group == g && inv.State == ledger.InvitationCancelled {
			if !slices.Contains(e.Granted, g) && e.Status == ledger.StatusCancelled {
				return "invitation cancelled"
			}
		}
	}
	return "revoked"
}

// reconcileRevoke runs the deactivation path for one person in one
// workspace (its revoke mode and removal breaker apply).
func (w *Worker) reconcileRevoke(ctx context.Context, ws, personID, owner, actor string) error {
	return w.withEntry(ctx, ledger.Ref{Workspace: ws, PersonID: personID}, owner, func(ctx context.Context, e *ledger.Entry) error {
		return w.revokeEntry(ctx, e, actor)
	})
}

// withEntry runs fn on the person's entry in a workspace under their lock
// (fn's ctx carries the lock for the writes); nothing when there is no entry.
func (w *Worker) withEntry(ctx context.Context, ref ledger.Ref, owner string, fn func(context.Context, *ledger.Entry) error) error {
	ctx, lock, e, err := w.lockEntry(ctx, ref, owner)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	if e == nil {
		return nil
	}
	return fn(ctx, e)
}

// lockEntry takes the person's lock and reads their entry in ref's workspace
// with it, in one round trip; the returned ctx carries the lock, which the
// caller must Unlock. The entry is nil when the person has none there.
func (w *Worker) lockEntry(ctx context.Context, ref ledger.Ref, owner string) (context.Context, *ledger.Lock, *ledger.Entry, error) {
	lock, entries, err := w.o.Ledger.LockAndGet(ctx, ref.PersonID, owner, w.o.LockLease, []string{ref.Workspace})
	if err != nil {
		return ctx, nil, nil, err
	}
	return lock.Context(ctx), lock, entries[ref.Workspace], nil
}

// forgetGrants takes groups removed by hand off the person's granted list,
// on record, so that the signup path grants them again (regrant_removed).
func (w *Worker) forgetGrants(ctx context.Context, ws, personID, owner, actor string, groups []string) error {
	return w.withEntry(ctx, ledger.Ref{Workspace: ws, PersonID: personID}, owner, func(ctx context.Context, e *ledger.Entry) error {
		now := w.o.Now()
		for _, g := range groups {
			e.Revoked(g)
			e.Record(now, actor, ledger.ActionReconcileRegrant, g, "removed by hand; regrant_removed: true gives it again")
		}
		e.UpdatedAt = now
		return w.o.Ledger.Put(ctx, e)
	})
}

// auditRows records drift in the audit trail (not in a dry run) and counts it.
func (w *Worker) auditRows(ctx context.Context, p *pass, rows []reconcile.Row) error {
	if p.o.DryRun {
		return nil
	}
	for _, r := range rows {
		outcome := ledger.OutcomeReported
		switch {
		case strings.HasPrefix(r.Outcome, "failed"):
			outcome = ledger.OutcomeFailed
		case strings.HasPrefix(r.Outcome, "held"):
			outcome = ledger.OutcomeHeld
		case r.Fixed():
			outcome = ledger.OutcomeOK
		}
		if p.o.Observer != nil {
			p.o.Observer.ReconcileDrift(r.Kind)
			if outcome == ledger.OutcomeOK {
				p.o.Observer.ReconcileFixed(r.Kind)
			}
		}
		if r.Kind == reconcile.KindNotCovered {
			continue // not autoinvite's: counted, and in the pass's summary
		}
		detail := r.Kind + ": " + r.Why
		if r.Outcome != "" {
			detail += " → " + r.Outcome
		}
		if err := w.o.Ledger.Audit(ctx, ledger.AuditRecord{
			Time: w.o.Now(), PersonID: r.PersonID, Email: r.Person, Workspace: r.Workspace, Group: r.Group,
			Actor: p.o.Actor, Action: ledger.ActionReconcileDrift, Outcome: outcome, Detail: detail,
		}); err != nil {
			return err
		}
	}
	return nil
}

// reportLeftovers reports the group members no Jira user explained: people
// the rules do not cover and autoinvite never granted (or granted to someone
// Jira no longer lists). Reported only.
func (w *Worker) reportLeftovers(ctx context.Context, p *pass) error {
	var rows []reconcile.Row
	for _, ws := range p.workspaces {
		groups := p.st.Actual[ws]
		for _, g := range slices.Sorted(maps.Keys(groups)) {
			for _, member := range slices.Sorted(maps.Keys(groups[g])) {
				row := reconcile.Row{Person: member, PersonID: member, Workspace: ws, Group: g, Kind: reconcile.KindNotCovered, Action: reconcile.ActReport,
					Why: "in the group, not granted by autoinvite, and no rule gives it"}
				if !strings.HasPrefix(member, "{") {
					row.PersonID = jobs.User{AccountID: member}.PersonID()
					e, err := w.o.Ledger.Get(ctx, ws, row.PersonID)
					if err != nil {
						return err
					}
					if e != nil && e.Email != "" {
						row.Person = e.Email
					}
					if e != nil && slices.Contains(e.Granted, g) {
						row.Kind, row.Why = reconcile.KindNoLongerCovered, "autoinvite granted it, but Jira does not list this person"
					}
				}
				rows = append(rows, row)
			}
		}
	}
	p.st.Rows = append(p.st.Rows, rows...)
	return w.auditRows(ctx, p, rows)
}
