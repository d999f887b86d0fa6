// Package worker applies the rules to Jira user events: it adds workspace
// members to Bitbucket groups, invites everyone else, and records it all in
// the ledger so that replays (retries, crashes, duplicate webhooks) do nothing twice.
package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/integrations/atlassian"
	"github.com/autoinvite/autoinvite/integrations/bitbucket"
	"github.com/autoinvite/autoinvite/integrations/jira"
	"github.com/autoinvite/autoinvite/integrations/ratelimit"
	"github.com/autoinvite/autoinvite/internal/transient"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
	"github.com/autoinvite/autoinvite/membership"
	"github.com/autoinvite/autoinvite/outcome"
	"github.com/autoinvite/autoinvite/rules"
)

// Bitbucket is what the worker needs from Bitbucket Cloud.
type Bitbucket interface {
	IsMember(ctx context.Context, workspace, member string) (bool, error)
	AddToGroup(ctx context.Context, workspace, group, member string) (alreadyMember bool, err error)
	RemoveFromGroup(ctx context.Context, workspace, group, member string) error
	Invite(ctx context.Context, workspace, email, group string) (alreadyInvited bool, err error)
	CountMembers(ctx context.Context, workspace string) (int, error)
	ListInvitations(ctx context.Context, workspace string) ([]bitbucket.Invitation, error)
}

// FollowUpEnqueuer queues follow-up tasks found by the sweep.
type FollowUpEnqueuer interface {
	EnqueueFollowUp(ctx context.Context, f jobs.FollowUp) error
}

// Jira is what the worker needs from Jira.
type Jira interface {
	GetUser(ctx context.Context, ref jira.Ref) (jira.User, error)
}

// Options configures a Worker.
type Options struct {
	Jira      Jira
	Bitbucket Bitbucket
	Ledger    *ledger.Store
	// Rules returns the rules in force, with the settings that go with them;
	// called once per task, so a task is decided under one consistent config
	// even if it is reloaded meanwhile.
	Rules func() *rules.Engine
	// FollowUps receives the sweep's follow-up tasks (nil: the sweep runs inline only).
	FollowUps FollowUpEnqueuer
	Logger    zerolog.Logger
	Now       func() time.Time
	// LockLease bounds how long a crashed worker can block a person.
	LockLease time.Duration
	// SignupDone is told when a user event's task finished, with the time its
	// webhook arrived (metrics).
	SignupDone func(receivedAt time.Time)
	// Batches queues people for batched calls (Data Center, organization).
	Batches BatchEnqueuer
	// DataCenter returns the client of a workspace on Bitbucket Data Center
	// (nil: the workspace is on Cloud).
	DataCenter func(workspace string) DataCenter
	// Organization returns the Admin API client of a workspace's
	// organization (nil: none configured).
	Organization func(workspace string) OrgAdmin
	// Backlog orders the user events waiting for a budget by arrival (nil:
	// they retry when the budget refills, in no particular order).
	Backlog *ratelimit.Backlog
	// Members caches the workspaces' member sets (nil: every signup checks
	// its own membership).
	Members *membership.Cache
	// Queued counts the user events queued and not yet started (nil: not
	// counted). In a burst they are membership questions still to come:
	// with them, one member listing can answer a backlog that has not
	// reached a worker yet.
	Queued func(ctx context.Context) (int, error)
}

// Validate reports missing dependencies.
func (o *Options) Validate() error {
	var missing []string
	if o.Jira == nil {
		missing = append(missing, "Jira")
	}
	if o.Bitbucket == nil {
		missing = append(missing, "Bitbucket")
	}
	if o.Ledger == nil {
		missing = append(missing, "Ledger")
	}
	if o.Rules == nil {
		missing = append(missing, "Rules")
	}
	if len(missing) > 0 {
		return fmt.Errorf("worker options: missing %s", strings.Join(missing, ", "))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LockLease <= 0 {
		o.LockLease = 30 * time.Second
	}
	if o.SignupDone == nil {
		o.SignupDone = func(time.Time) {}
	}
	return nil
}

// Worker handles user events.
type Worker struct {
	o Options
	// adminSeen memoizes which workspaces are administered in Atlassian
	// Administration (adminMemo by workspace); Redis is the shared truth.
	adminSeen sync.Map
	orgs      orgCache
	queued    queuedCount
}

// New returns a worker.
func New(o Options) (*Worker, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return &Worker{o: o, orgs: orgCache{groups: map[string]cachedGroup{}, resources: map[string]cachedValue{}, dirs: map[string]cachedValue{}}}, nil
}

// Register installs the worker's handlers on an Asynq mux.
func (w *Worker) Register(mux *asynq.ServeMux) {
	mux.HandleFunc(jobs.TypeUserEvent, w.HandleUserEvent)
	mux.HandleFunc(jobs.TypeFollowUp, w.HandleFollowUp)
	mux.HandleFunc(jobs.TypeSweep, w.HandleSweep)
	mux.HandleFunc(jobs.TypeBatch, w.HandleBatch)
}

const actorWebhook = "webhook"

// subject is the person a task is about, completed from Jira when needed.
type subject struct {
	ev       jobs.UserEvent
	user     jobs.User
	groups   []string
	looked   bool
	lookErr  error
	personID string
	// onlyWorkspace limits the work to one workspace ("" = all).
	onlyWorkspace string
	// reactivate: the event may start over what was cancelled, revoked or
	// given up (a newer signup, or an inactive person active again).
	reactivate bool
	// prefetched are entries read with the lock, each used once.
	prefetched map[string]*ledger.Entry
}

// entry returns the person's ledger entry in a workspace: the one read with
// the lock the first time, else a fresh read.
func (w *Worker) entry(ctx context.Context, s *subject, workspace string) (*ledger.Entry, error) {
	if e, ok := s.prefetched[workspace]; ok {
		delete(s.prefetched, workspace)
		return e, nil
	}
	return w.o.Ledger.Get(ctx, workspace, s.personID)
}

// HandleUserEvent is the Asynq handler for jobs.TypeUserEvent.
func (w *Worker) HandleUserEvent(ctx context.Context, t *asynq.Task) error {
	ev, err := jobs.DecodeUserEvent(t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	return w.ProcessUserEvent(ctx, ev)
}

// ProcessUserEvent is HandleUserEvent for a payload already decoded (the app
// decodes it once to pick the config it arrived under).
func (w *Worker) ProcessUserEvent(ctx context.Context, ev jobs.UserEvent) error {
	taskID, _ := asynq.GetTaskID(ctx)
	retry, _ := asynq.GetRetryCount(ctx)
	return w.handleEvent(ctx, ev, taskID, retry, "")
}

// handleEvent applies one user event; onlyWorkspace ("" = all) limits it to
// one workspace (backfill --workspace).
func (w *Worker) handleEvent(ctx context.Context, ev jobs.UserEvent, taskID string, retry int, onlyWorkspace string) error {
	s := &subject{ev: ev, user: ev.User, personID: ev.User.PersonID(), onlyWorkspace: onlyWorkspace}
	log := w.o.Logger.With().Str("task_id", taskID).Str("request_id", ev.RequestID).
		Str("delivery_id", ev.DeliveryID).Str("event", ev.Event).Str("person", s.personID).
		Int("retry", retry).Logger()
	ctx = log.WithContext(ctx)

	if s.personID == "" {
		log.Error().Msg("event names no user: dropped")
		err := fmt.Errorf("event %s (%s) names no user: no accountId, name or key in its user object", ev.DeliveryID, ev.Event)
		return errors.Join(fmt.Errorf("%w: %w", err, asynq.SkipRetry), w.o.Ledger.Audit(ctx, ledger.AuditRecord{
			Time: w.o.Now(), Actor: actorWebhook, Action: ledger.ActionError, Detail: err.Error(),
		}))
	}
	var err error
	if ev.Deactivated() {
		err = w.finish(ctx, w.revoke(ctx, s, taskID))
	} else if err = w.signup(ctx, s, taskID); err == nil {
		w.o.SignupDone(ev.ReceivedAt)
	}
	return w.deadline(w.queue(ctx, err, taskID, ev.ReceivedAt))
}

// queue gives a task waiting for a budget its turn among the waiting, oldest
// first (the wait's RetryAfter); any other outcome takes it out of the queue.
func (w *Worker) queue(ctx context.Context, err error, taskID string, arrived time.Time) error {
	if w.o.Backlog == nil {
		return err
	}
	wait, ok := ratelimit.AsWait(err)
	if !ok {
		if derr := w.o.Backlog.Done(ctx, taskID); derr != nil {
			zerolog.Ctx(ctx).Warn().Err(derr).Msg("budget backlog not updated: the task leaves it when its turn passes")
		}
		return err
	}
	if arrived.IsZero() {
		arrived = w.o.Now()
	}
	if qerr := w.o.Backlog.Queue(ctx, taskID, arrived, wait); qerr != nil {
		zerolog.Ctx(ctx).Warn().Err(qerr).Msg("budget backlog not updated: retrying when the budget refills")
	}
	return err
}

// deadline fails a call that cannot be made at all: Atlassian has answered
// 429 for longer than rate_limits.max_wait. Waiting behind other tasks for a
// budget is never a failure, however long the queue: the budget serves
// everyone in turn, and a budget of one request or more always admits a call
// (each call needs one).
func (w *Worker) deadline(err error) error {
	wait, ok := ratelimit.AsWait(err)
	maxWait := w.o.Rules().Config().RateLimits.MaxWait.D()
	if !ok || wait.ThrottledFor <= maxWait {
		return err
	}
	// %v, not %w: the result must no longer look like a wait.
	return fmt.Errorf("gave up: %s has answered 429 (too many requests) for %s without a success, longer than rate_limits.max_wait (%s): %v",
		wait.API, wait.ThrottledFor.Round(time.Second), maxWait, err)
}

// signup applies the rules to an active user.
func (w *Worker) signup(ctx context.Context, s *subject, taskID string) error {
	log := zerolog.Ctx(ctx)
	if !rules.Eligible(s.user.AccountType) {
		return w.ignore(ctx, s)
	}
	engine := w.o.Rules()
	if reason := w.deploymentMismatch(s.user); reason != "" {
		return w.finish(ctx, []error{w.undecidable(ctx, s, taskID, errors.New(reason))})
	}
	if err := w.complete(ctx, s, engine); err != nil {
		return w.finish(ctx, []error{w.undecidable(ctx, s, taskID, err)})
	}
	if !rules.Eligible(s.user.AccountType) {
		return w.ignore(ctx, s)
	}

	decisions := engine.Evaluate(rules.Person{AccountType: s.user.AccountType, Email: s.user.Email, JiraGroups: s.groups})
	var workspaces []string
	for _, d := range decisions {
		workspaces = append(workspaces, d.Workspace)
	}
	// The lock, the person's entries and the event's watermark in one round trip.
	// The member cache's answers come along in the same round trip.
	along, members := w.prefetchMembers(ctx, s.personID, s.user.AccountID, workspaces)
	lock, entries, err := w.o.Ledger.LockAndApply(ctx, s.personID, taskID, w.o.LockLease, workspaces, ledger.Watermark{At: s.ev.Timestamp}, along...)
	if err != nil {
		log.Debug().Err(err).Msg("person busy: retrying shortly")
		return err
	}
	defer lock.Unlock()
	ctx = withPrefetched(ctx, s.user.AccountID, members)
	// Cancelled if the lock is lost; the ledger writes under it.
	ctx = lock.Context(ctx)
	s.prefetched = entries
	if fresh, err := w.inOrder(ctx, s, lock, false); err != nil || !fresh {
		return err
	}

	if len(decisions) == 0 {
		log.Info().Str("email", s.user.Email).Msg("no rule matches: nothing to do")
		return w.o.Ledger.Audit(ctx, ledger.AuditRecord{
			Time: w.o.Now(), PersonID: s.personID, Email: s.user.Email, Actor: actorWebhook, Action: ledger.ActionNoRuleMatches,
		})
	}
	last := -1
	for i, d := range decisions {
		if s.onlyWorkspace == "" || d.Workspace == s.onlyWorkspace {
			last = i
		}
	}
	var errs []error
	for i, d := range decisions {
		if s.onlyWorkspace != "" && d.Workspace != s.onlyWorkspace {
			continue
		}
		dctx := ctx
		if i == last {
			dctx = context.WithValue(ctx, lastWriteKey{}, true)
		}
		if err := w.applyWorkspace(dctx, s, d); err != nil {
			errs = append(errs, err)
		}
	}
	return w.finish(ctx, errs)
}

// lastWriteKey marks the context of a task's last workspace: its settling
// write releases the person's lock in the same round trip.
type lastWriteKey struct{}

// inOrder applies Jira's ordering of one person's events, under their lock:
// an event older than the newest applied is recorded as stale and changes
// nothing (a retried update after a deletion, a signed replay under a new
// delivery id); a deletion is a tombstone that only a newer event lifts.
func (w *Worker) inOrder(ctx context.Context, s *subject, lock *ledger.Lock, deactivation bool) (bool, error) {
	ts := s.ev.Timestamp
	if ts == 0 { // no timestamp to order by: only a signup starts over
		s.reactivate = s.ev.Event == jobs.EventUserCreated
		return true, nil
	}
	wm, read := lock.Watermark()
	if !read {
		var err error
		if wm, err = w.o.Ledger.GetWatermark(ctx, s.personID); err != nil {
			return false, err
		}
	}
	event := ledger.Watermark{At: ts, Deleted: deactivation}
	if wm.Older(event) {
		detail := fmt.Sprintf("%s of %s is older than the newest event applied (%s%s): ignored",
			s.ev.Event, time.UnixMilli(ts).UTC().Format(time.RFC3339Nano), time.UnixMilli(wm.At).UTC().Format(time.RFC3339Nano), map[bool]string{true: ", a deletion"}[wm.Deleted])
		zerolog.Ctx(ctx).Info().Int64("event_timestamp", ts).Int64("newest_applied", wm.At).Msg("stale event: " + detail)
		return false, w.o.Ledger.Audit(ctx, ledger.AuditRecord{
			Time: w.o.Now(), PersonID: s.personID, Email: s.user.Email, Actor: actorWebhook, Action: ledger.ActionStaleEvent, Detail: detail,
		})
	}
	s.reactivate = (s.ev.Event == jobs.EventUserCreated && ts > wm.At) || (wm.Deleted && !deactivation)
	if wm != event && !lock.Applied() {
		if err := w.o.Ledger.SetWatermark(ctx, s.personID, event); err != nil {
			return false, err
		}
	}
	return true, nil
}

// deploymentMismatch explains a payload from the other kind of Jira than the
// config says: its person cannot be looked up, so nothing can be decided.
func (w *Worker) deploymentMismatch(u jobs.User) string {
	dc := w.o.Rules().Config().Jira.Deployment == config.DeploymentDataCenter
	switch {
	case !dc && u.AccountID == "" && (u.Name != "" || u.Key != ""):
		return "jira.deployment is cloud but the payload is a Jira Data Center user (name/key, no accountId): set jira.deployment: datacenter, or send this site's webhooks to its own autoinvite"
	case dc && u.AccountID != "" && u.Name == "" && u.Key == "":
		return "jira.deployment is datacenter but the payload is a Jira Cloud user (accountId, no name/key): set jira.deployment: cloud, or send this site's webhooks to its own autoinvite"
	}
	return ""
}

// undecidable records a signup that cannot be decided for good (Jira does not
// know the person, the payload is from another kind of Jira): an entry in
// every workspace it might concern and an audit record, each with a reason a
// person can act on. A temporary failure is only returned: the retry decides.
func (w *Worker) undecidable(ctx context.Context, s *subject, taskID string, err error) error {
	if isTemporaryOrWait(err) {
		return err
	}
	if atlassian.StatusOf(err) == http.StatusNotFound {
		err = fmt.Errorf("Jira does not know this user: the webhook came from another Jira site than jira.base_url, or the user was deleted before autoinvite looked: %w", err)
	}
	lock, lerr := w.o.Ledger.Lock(ctx, s.personID, taskID, w.o.LockLease)
	if lerr != nil {
		return lerr
	}
	defer lock.Unlock()
	ctx = lock.Context(ctx)
	now := w.o.Now()
	var errs []error
	for _, ws := range w.o.Rules().Config().Workspaces {
		e, gerr := w.o.Ledger.Get(ctx, ws.Workspace, s.personID)
		if gerr != nil {
			errs = append(errs, gerr)
			continue
		}
		if e == nil {
			e = &ledger.Entry{Workspace: ws.Workspace, PersonID: s.personID, AccountID: s.user.AccountID, JiraUser: s.user.Name, Email: strings.ToLower(s.user.Email), CreatedAt: now}
		} else if len(e.Granted) > 0 || e.AnyPendingInvitation() {
			continue // what was granted stands; the audit record tells
		}
		e.UpdatedAt = now
		errs = append(errs, w.failAs(ctx, e, err, actorWebhook))
	}
	for _, e := range errs {
		if e != nil && !errors.Is(e, err) {
			return errors.Join(err, e)
		}
	}
	return err
}

// ignore records that an app or customer account was left alone.
func (w *Worker) ignore(ctx context.Context, s *subject) error {
	zerolog.Ctx(ctx).Info().Str("account_type", s.user.AccountType).Msg("ignored: app and customer accounts never get Bitbucket access")
	return w.o.Ledger.Audit(ctx, ledger.AuditRecord{
		Time: w.o.Now(), PersonID: s.personID, Email: s.user.Email, Actor: actorWebhook,
		Action: ledger.ActionIgnored, Detail: "account type " + s.user.AccountType,
	})
}

// finish turns the per-workspace errors into the task's outcome: retry when any
// is temporary (the ledger makes the retry skip what was done), archive otherwise.
func (w *Worker) finish(ctx context.Context, errs []error) error {
	err := errors.Join(errs...)
	log := zerolog.Ctx(ctx)
	switch outcome.Of(err) {
	case outcome.Done:
		log.Info().Msg("signup processed")
	case outcome.Yield:
		log.Debug().Err(err).Msg("person busy or taken over by another task: retrying shortly")
	case outcome.Wait:
		wait, _ := ratelimit.AsWait(err)
		log.Debug().Str("budget", wait.Budget).Dur("retry_after", wait.RetryAfter).Msg("waiting for the Atlassian rate budget")
	case outcome.Retry:
		log.Warn().Err(err).Msg("temporary failure: task will be retried")
	case outcome.GiveUp:
		log.Error().Err(err).Msg("permanent failure: task archived, see the ledger")
	}
	return outcome.Asynq(err)
}

// complete fetches from Jira what the webhook lacks and the rules need.
func (w *Worker) complete(ctx context.Context, s *subject, engine *rules.Engine) error {
	if engine.NeedsJiraGroups() || (s.user.Email == "" && engine.NeedsEmail()) {
		return w.lookup(ctx, s)
	}
	return nil
}

// lookup calls Jira at most once per task: one call returns email and groups.
func (w *Worker) lookup(ctx context.Context, s *subject) error {
	if s.looked {
		return s.lookErr
	}
	s.looked = true
	u, err := w.o.Jira.GetUser(ctx, jira.Ref{AccountID: s.user.AccountID, Name: s.user.Name, Key: s.user.Key})
	if err != nil {
		s.lookErr = fmt.Errorf("complete %s from Jira: %w", s.personID, err)
		return s.lookErr
	}
	if s.user.Email == "" {
		s.user.Email = u.Email
	}
	if s.user.AccountType == "" {
		s.user.AccountType = u.AccountType
	}
	if s.user.DisplayName == "" {
		s.user.DisplayName = u.DisplayName
	}
	s.groups = u.Groups
	zerolog.Ctx(ctx).Debug().Bool("email_known", s.user.Email != "").Strs("jira_groups", u.Groups).Msg("completed user from Jira")
	return nil
}

// applyWorkspace grants or invites in one workspace and records the outcome.
func (w *Worker) applyWorkspace(ctx context.Context, s *subject, d rules.Decision) error {
	log := zerolog.Ctx(ctx).With().Str("workspace", d.Workspace).Logger()
	now := w.o.Now()
	entry, err := w.entry(ctx, s, d.Workspace)
	if err != nil {
		return err
	}
	if entry == nil {
		entry = &ledger.Entry{Workspace: d.Workspace, PersonID: s.personID, CreatedAt: now, RulesByGroup: map[string][]string{}}
	}
	entry.AccountID, entry.DisplayName = s.user.AccountID, s.user.DisplayName
	if s.user.Name != "" {
		entry.JiraUser = s.user.Name
	}
	if s.user.Email != "" {
		entry.Email = strings.ToLower(s.user.Email)
	}
	entry.UpdatedAt = now
	switch entry.Status {
	case ledger.StatusExpired:
		if !s.reactivate || s.ev.Event != jobs.EventUserCreated {
			log.Info().Msg("invitation expired for good after max_resends: a new signup or `autoinvite invites resend` starts again")
			return nil
		}
		entry.Status = ""
		entry.Record(now, actorWebhook, ledger.ActionReset, "", "signed up again after the invitation expired")
	case ledger.StatusCancelled, ledger.StatusRevoked, ledger.StatusRevocationHeld:
		if !s.reactivate {
			// An admin's cancel or a revocation stands until a newer signup
			// or a reactivation: a profile edit is neither.
			log.Info().Str("status", string(entry.Status)).Msg("cancelled or revoked: only a newer signup or a reactivation starts over")
			return nil
		}
		// No longer terminal: a retry of this task must carry on with it.
		entry.HeldRemovals, entry.Status = nil, ""
		entry.Record(now, actorWebhook, ledger.ActionReactivated, "", "starting over")
	}

	if d.Excluded {
		log.Info().Str("email", entry.Email).Msg("excluded by the workspace's exclusions: nothing granted")
		entry.Status = ledger.StatusExcluded
		entry.Record(now, actorWebhook, ledger.ActionExcluded, "", "")
		return w.o.Ledger.Put(ctx, entry)
	}
	if d.EmailUnknown && entry.Email == "" {
		if err := w.lookup(ctx, s); err != nil {
			return w.fail(ctx, entry, err)
		}
		if s.user.Email != "" { // the rules depend on the address: decide again with it
			entry.Email = strings.ToLower(s.user.Email)
			return w.putAndRedecide(ctx, s, entry, d.Workspace)
		}
	}
	if entry.RulesByGroup == nil {
		entry.RulesByGroup = map[string][]string{}
	}
	for g, names := range d.RulesByGroup {
		entry.RulesByGroup[g] = names
	}
	want := pending(entry, d.Groups)
	// Held: exclusions cannot be checked. Otherwise, only rules that need the
	// hidden email could have matched: wait for it.
	if d.Held || (len(d.Groups) == 0 && d.EmailUnknown && len(entry.Granted) == 0) {
		if entry.Status == ledger.StatusWaitingForEmail && len(pending(entry, nil)) == len(want) {
			return nil // a replay: already recorded
		}
		for _, g := range want {
			entry.Wait(g)
		}
		entry.Status = ledger.StatusWaitingForEmail
		entry.Record(now, actorWebhook, ledger.ActionWaitingForEmail, "", "Jira hides the email and the workspace's rules or exclusions depend on it")
		log.Warn().Strs("groups", want).Msg("email hidden by Jira and the rules depend on it: waiting for the email")
		return w.o.Ledger.Put(ctx, entry)
	}
	if len(want) == 0 {
		log.Info().Strs("granted", entry.Granted).Msg("already done: nothing to change")
		return nil
	}
	if !entry.DecidedAlready(describe(d)) {
		entry.Record(now, actorWebhook, ledger.ActionDecided, "", describe(d))
	}
	if w.dataCenter(d.Workspace) != nil {
		return w.queueDataCenter(ctx, entry, want, actorWebhook)
	}
	atl, err := w.atlassianAdministered(ctx, d.Workspace)
	if err != nil {
		return w.fail(ctx, entry, err)
	}
	if atl {
		if len(entry.Granted) == 0 {
			if held, err := w.seatLimitReached(ctx, entry, want, actorWebhook); held || err != nil {
				return err
			}
		}
		return w.queueAtlassian(ctx, entry, want, actorWebhook)
	}

	member, listed := false, false
	if s.user.AccountID != "" {
		if member, listed, err = w.isMember(ctx, entry); err != nil {
			return w.fail(ctx, entry, err)
		}
	}
	if listed {
		ctx = context.WithValue(ctx, listedKey{}, true)
	}
	if member {
		return w.grantAll(ctx, entry, want, actorWebhook)
	}
	if entry.Email == "" {
		if err := w.lookup(ctx, s); err != nil {
			return w.fail(ctx, entry, err)
		}
		entry.Email = strings.ToLower(s.user.Email)
	}
	if entry.Email == "" {
		for _, g := range want {
			entry.Wait(g)
		}
		entry.Status = ledger.StatusWaitingForEmail
		entry.Record(now, actorWebhook, ledger.ActionWaitingForEmail, "", "not a workspace member and Jira hides the email")
		log.Warn().Strs("groups", want).Msg("not a workspace member and no email: recorded as waiting for an email")
		return w.o.Ledger.Put(ctx, entry)
	}
	return w.invite(ctx, entry, want, actorWebhook)
}

// putAndRedecide saves the email just learned and evaluates the workspace again.
func (w *Worker) putAndRedecide(ctx context.Context, s *subject, entry *ledger.Entry, workspace string) error {
	if err := w.o.Ledger.Put(ctx, entry); err != nil {
		return err
	}
	for _, d := range w.o.Rules().Evaluate(rules.Person{AccountType: s.user.AccountType, Email: s.user.Email, JiraGroups: s.groups}) {
		if d.Workspace == workspace {
			return w.applyWorkspace(ctx, s, d)
		}
	}
	return nil
}

// pending is the decision's groups plus those still waiting, minus the granted.
func pending(e *ledger.Entry, groups []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, g := range append(append([]string{}, groups...), e.Waiting...) {
		if !seen[g] && !e.HasGranted(g) {
			seen[g] = true
			out = append(out, g)
		}
	}
	return out
}

// grantAll adds a workspace member to each group; one failing group never
// stops the others. Pending invitations are accepted: the person has joined.
func (w *Worker) grantAll(ctx context.Context, entry *ledger.Entry, groups []string, actor string) error {
	log := zerolog.Ctx(ctx).With().Str("workspace", entry.Workspace).Logger()
	now := w.o.Now()
	for _, g := range entry.PendingGroups() {
		entry.Record(now, actor, ledger.ActionInvitationAccepted, g, "")
	}
	entry.SetPendingInvitations(ledger.InvitationAccepted)
	entry.NextCheckAt = time.Time{}
	// The intent goes on record before the writes: a retry after a timeout or
	// a crash that finds the person already in a group knows the add was ours.
	ours := map[string]bool{}
	fresh := false
	for _, g := range groups {
		ours[g] = entry.Intended(g) || entry.Invited(g)
		fresh = fresh || !entry.Intended(g)
		entry.Intend(g, now)
	}
	if fresh {
		if err := w.putBookkeeping(ctx, entry); err != nil {
			return err
		}
	}
	// One budget spend for the adds, not one per group.
	ctx, endPhase := ratelimit.Phase(ctx, ratelimit.APIBitbucket, len(groups))
	defer endPhase()
	var errs []error
	for i, g := range groups {
		already, err := w.o.Bitbucket.AddToGroup(ctx, entry.Workspace, g, entry.AccountID)
		if isRefusedWrite(err) {
			carryOn, rerr := w.refused(ctx, entry.Workspace, err)
			if carryOn {
				return w.queueAtlassian(ctx, entry, groups[i:], actor)
			}
			for _, rest := range groups[i:] {
				entry.Wait(rest)
			}
			errs = append(errs, rerr)
			log.Error().Err(rerr).Msg("add to group refused")
			break
		}
		if _, waiting := ratelimit.AsWait(err); waiting {
			// Nothing was sent: the intent stands and the retry goes on
			// from here (it changes nothing, so nothing is written).
			entry.Wait(g)
			errs = append(errs, err)
			continue
		}
		if err != nil {
			entry.Wait(g)
			if !transient.Is(err) {
				delete(entry.Intents, g) // refused: nothing was added
				if fromListing(ctx) {
					w.memberDoubted(ctx, entry.Workspace, entry.AccountID) // the retry asks about them
				}
			} else {
				entry.Doubt(g, now) // no answer: it may still land
			}
			errs = append(errs, err)
			log.Error().Err(err).Str("group", g).Strs("rules", entry.RulesByGroup[g]).Msg("add to group failed")
			continue
		}
		if already && !ours[g] {
			// An admin put them there: revocation must leave it alone.
			entry.GrantedByHand(g)
			entry.Record(now, actor, ledger.ActionGroupAlreadyGiven, g, "")
			log.Info().Str("group", g).Msg("already in group (given by hand): recorded, never revoked")
			continue
		}
		entry.Grant(g)
		entry.Record(now, actor, ledger.ActionGroupAdded, g, "")
		log.Info().Str("group", g).Strs("rules", entry.RulesByGroup[g]).Msg("added to group")
	}
	return w.settle(ctx, entry, ledger.StatusGranted, errs, actor)
}

// invite sends invitations. With a known account id one email suffices: invite
// into the first group and grant the rest once they join. Without one (Data
// Center) Bitbucket needs one invitation per group.
func (w *Worker) invite(ctx context.Context, entry *ledger.Entry, groups []string, actor string) error {
	log := zerolog.Ctx(ctx).With().Str("workspace", entry.Workspace).Str("email", entry.Email).Logger()
	now := w.o.Now()
	inv := w.o.Rules().Config().Invitations
	toInvite := groups
	if entry.AccountID != "" {
		toInvite = nil
		if !entry.AnyPendingInvitation() {
			toInvite = groups[:1]
		}
		for _, g := range groups {
			if entry.PendingInvitation(g) == nil && (len(toInvite) == 0 || g != toInvite[0]) {
				entry.Wait(g)
			}
		}
		if inv.EarlyCheckInterval > 0 && entry.NextCheckAt.IsZero() {
			entry.NextCheckAt = now.Add(inv.EarlyCheckInterval.D())
		}
	}
	reserved := false
	if len(toInvite) > 0 && !entry.AnyPendingInvitation() {
		if held, err := w.seatLimitReached(ctx, entry, toInvite, actor); held || err != nil {
			return err
		}
		reserved = true
	}
	var errs []error
	toOrg := false
	for _, g := range toInvite {
		if entry.PendingInvitation(g) != nil {
			continue
		}
		already, viaOrg, err := w.sendInvitation(ctx, entry, g)
		if viaOrg {
			toOrg = true
			break
		}
		if fromListing(ctx) && (already || (err != nil && !isTemporaryOrWait(err))) {
			// The contract does not say how Bitbucket answers an invitation
			// for a member: a listing's "not a member" is checked again.
			if member, _, cerr := w.checkOne(ctx, entry.Workspace, entry.PersonID, entry.AccountID); cerr == nil && member {
				log.Info().Str("group", g).Msg("a member after all (joined since the listing): adding to the groups instead")
				if reserved {
					w.settleSeat(ctx, entry.Workspace, entry.PersonID, false)
				}
				entry.MemberSeenAt = now
				return w.grantAll(context.WithValue(ctx, listedKey{}, false), entry, groups, actor)
			}
		}
		if err != nil {
			entry.Wait(g)
			errs = append(errs, err)
			log.Error().Err(err).Str("group", g).Msg("invitation failed")
			continue
		}
		entry.Waiting = without(entry.Waiting, g)
		entry.Invitations = append(entry.Invitations, ledger.Invitation{
			Group: g, SentAt: now, ExpiresAt: now.Add(inv.ExpireAfter.D()), State: ledger.InvitationPending,
		})
		detail := ""
		if already {
			detail = "Bitbucket already had one"
		}
		entry.Record(now, actor, ledger.ActionInvitationSent, g, detail)
		log.Info().Str("group", g).Strs("rules", entry.RulesByGroup[g]).Bool("already_invited", already).Msg("invitation sent")
	}
	if toOrg {
		// The workspace turned out to be administered in Atlassian
		// Administration: the Admin API takes over every group at once.
		var orgGroups []string
		for _, g := range groups {
			if entry.PendingInvitation(g) == nil {
				orgGroups = append(orgGroups, g)
			}
		}
		return w.queueAtlassian(ctx, entry, orgGroups, actor) // the seat stays reserved for the batch
	}
	if reserved {
		w.settleSeat(ctx, entry.Workspace, entry.PersonID, entry.AnyPendingInvitation())
	}
	return w.settle(ctx, entry, ledger.StatusInvited, errs, actor)
}

// seatLimitReached holds the invitation when members plus pending invitations
// already fill the workspace's max_members: seats cost money. Otherwise it
// reserves the seat in Redis, so workers counting at the same time cannot
// both take the last one; the caller settles it (settleSeat) once the
// invitation is sent or failed.
func (w *Worker) seatLimitReached(ctx context.Context, entry *ledger.Entry, groups []string, actor string) (bool, error) {
	ws := w.o.Rules().Config().Workspace(entry.Workspace)
	if ws == nil || ws.MaxMembers <= 0 {
		return false, nil
	}
	atl, err := w.atlassianAdministered(ctx, entry.Workspace)
	if err != nil {
		return false, w.failAs(ctx, entry, err, actor)
	}
	count, members, invitations, cached := w.cachedSeats(ctx, entry.Workspace, atl)
	if !cached {
		if count, members, invitations, err = w.countSeats(ctx, entry.Workspace, atl); err != nil {
			return false, w.failAs(ctx, entry, err, actor)
		}
	}
	seats := members + invitations
	admitted, reserved, err := w.o.Ledger.ReserveSeat(ctx, entry.Workspace, entry.PersonID, count, seats, ws.MaxMembers)
	if err != nil {
		return false, w.failAs(ctx, entry, err, actor)
	}
	if admitted {
		return false, nil
	}
	detail := fmt.Sprintf("%d members + %d pending invitations reach max_members %d", members, invitations, ws.MaxMembers)
	if reserved > 0 {
		detail = fmt.Sprintf("%d members + %d pending invitations + %d being sent reach max_members %d", members, invitations, reserved, ws.MaxMembers)
	}
	for _, g := range groups {
		entry.Wait(g)
	}
	entry.Status = ledger.StatusSeatLimit
	entry.Record(w.o.Now(), actor, ledger.ActionSeatLimit, "", detail)
	zerolog.Ctx(ctx).Warn().Str("workspace", entry.Workspace).Str("email", entry.Email).Int("seats", seats+reserved).Int("max_members", ws.MaxMembers).
		Msg("seat limit reached: invitation held, not sent; raise max_members or free seats, then `autoinvite invites resend`")
	return true, w.o.Ledger.Put(ctx, entry)
}

// countSeats asks Bitbucket: the members and, administered in Bitbucket,
// the pending invitations (Atlassian Administration has no invitation list).
func (w *Worker) countSeats(ctx context.Context, ws string, atl bool) (count ledger.SeatCount, members, invitations int, err error) {
	if atl {
		count, members, err = w.orgSeatCount(ctx, ws)
		return count, members, 0, err
	}
	if count, err = w.o.Ledger.BeginSeatCount(ctx); err != nil {
		return count, 0, 0, err
	}
	if members, err = w.o.Bitbucket.CountMembers(ctx, ws); err != nil || atl {
		return count, members, 0, err
	}
	pending, err := w.o.Bitbucket.ListInvitations(ctx, ws)
	return count, members, distinctEmails(pending), err
}

// settleSeat ends a seat reservation: used when the invitation went out.
// A failure only logs: the reservation expires by itself.
func (w *Worker) settleSeat(ctx context.Context, workspace, personID string, used bool) {
	if ws := w.o.Rules().Config().Workspace(workspace); ws == nil || ws.MaxMembers <= 0 {
		return
	}
	if err := w.o.Ledger.SettleSeat(ctx, workspace, personID, used); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Str("workspace", workspace).Msg("seat reservation not settled: it expires by itself")
	}
}

// without returns groups less g.
func without(groups []string, g string) []string {
	out := groups[:0]
	for _, x := range groups {
		if x != g {
			out = append(out, x)
		}
	}
	return out
}

// settle records the status after a round of calls and saves the entry.
func (w *Worker) settle(ctx context.Context, entry *ledger.Entry, ok ledger.Status, errs []error, actor string) error {
	if len(errs) == 0 {
		entry.Status, entry.LastError = ok, ""
		if last, _ := ctx.Value(lastWriteKey{}).(bool); last {
			return w.bookkeep(ctx, entry, w.o.Ledger.PutAndUnlock)
		}
		return w.putBookkeeping(ctx, entry)
	}
	return w.failAs(ctx, entry, errors.Join(errs...), actor)
}

// fail records the error in the ledger and returns it.
func (w *Worker) fail(ctx context.Context, entry *ledger.Entry, err error) error {
	return w.failAs(ctx, entry, err, actorWebhook)
}

func (w *Worker) failAs(ctx context.Context, entry *ledger.Entry, err error, actor string) error {
	if _, waiting := ratelimit.AsWait(err); waiting {
		// Not an error: the task comes back when the budget refills. What
		// succeeded so far is saved so the retry does not repeat it; a wait
		// alone writes nothing (a backlog retries each task many times).
		if w.unchanged(ctx, entry) {
			return err
		}
		return errors.Join(err, w.putBookkeeping(ctx, entry))
	}
	entry.LastError = err.Error()
	// A temporary error keeps the status: the retry will finish the job.
	if !transient.Is(err) || entry.Status == "" {
		entry.Status = ledger.StatusFailed
	}
	entry.Record(w.o.Now(), actor, ledger.ActionError, "", err.Error())
	if perr := w.putBookkeeping(ctx, entry); perr != nil {
		return errors.Join(err, perr)
	}
	return err
}

// unchanged reports whether entry is what the ledger holds, but for its
// update time. Read again rather than kept from the start: only waits pay.
func (w *Worker) unchanged(ctx context.Context, entry *ledger.Entry) bool {
	stored, err := w.o.Ledger.Get(ctx, entry.Workspace, entry.PersonID)
	if err != nil || stored == nil {
		return false
	}
	a, b := *entry, *stored
	a.UpdatedAt, b.UpdatedAt = time.Time{}, time.Time{}
	x, errA := json.Marshal(&a)
	y, errB := json.Marshal(&b)
	return errA == nil && errB == nil && bytes.Equal(x, y)
}

// bookkeepingTimeout bounds a ledger write that outlives its task.
const bookkeepingTimeout = 10 * time.Second

// putBookkeeping saves an entry after Atlassian calls even when the task's
// own context has just timed out or been cancelled: what Atlassian applied
// must be on record. The write is still fenced by the person's lock.
func (w *Worker) putBookkeeping(ctx context.Context, entry *ledger.Entry) error {
	return w.bookkeep(ctx, entry, w.o.Ledger.Put)
}

// bookkeep is putBookkeeping with the write to make: Put, or PutAndUnlock
// for a task's last write.
func (w *Worker) bookkeep(ctx context.Context, entry *ledger.Entry, put func(context.Context, *ledger.Entry) error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
	defer cancel()
	return put(ctx, entry)
}

// isTemporaryOrWait reports an error that a later try may not have: a
// transport error, a 429 or 5xx, or a wait for the rate budget.
func isTemporaryOrWait(err error) bool {
	_, waiting := ratelimit.AsWait(err)
	return waiting || transient.Is(err)
}

func describe(d rules.Decision) string {
	parts := make([]string, 0, len(d.Groups))
	for _, g := range d.Groups {
		parts = append(parts, g+"<-"+strings.Join(d.RulesByGroup[g], ","))
	}
	return strings.Join(parts, " ")
}
