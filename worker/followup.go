package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/autoinvite/autoinvite/integrations/ratelimit"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
)

// Outcome of one follow-up.
type Outcome string

// Follow-up outcomes.
const (
	OutcomeNothing  Outcome = "nothing"  // not due (already handled) or nothing pending
	OutcomeAccepted Outcome = "accepted" // the person joined: waiting groups granted
	OutcomeResent   Outcome = "resent"
	OutcomeExpired  Outcome = "expired" // given up after max_resends
	OutcomeChecked  Outcome = "checked" // not joined yet, not due
	OutcomeBusy     Outcome = "busy"    // another task holds the person
)

const actorSweep = "sweep"

// HandleFollowUp is the Asynq handler for jobs.TypeFollowUp.
func (w *Worker) HandleFollowUp(ctx context.Context, t *asynq.Task) error {
	var f jobs.FollowUp
	if err := json.Unmarshal(t.Payload(), &f); err != nil {
		return fmt.Errorf("decode follow-up: %w: %w", err, asynq.SkipRetry)
	}
	taskID, _ := asynq.GetTaskID(ctx)
	log := w.o.Logger.With().Str("task_id", taskID).Str("workspace", f.Workspace).Str("person", f.PersonID).Str("reason", f.Reason).Logger()
	if f.Reason == jobs.ReasonRecheckRemoval {
		err := w.RecheckRemoval(log.WithContext(ctx), ledger.Ref{Workspace: f.Workspace, PersonID: f.PersonID}, f.Groups, actorSweep)
		if err != nil && !errors.Is(err, ledger.ErrBusy) {
			return w.finish(log.WithContext(ctx), []error{err})
		}
		return err
	}
	if f.Reason == jobs.ReasonCheck {
		// A check the sweep's user search answered asks Bitbucket nothing.
		if f.Activity == nil && w.signupsWaiting(log.WithContext(ctx)) {
			log.Debug().Msg("early check deferred: signups wait for the Bitbucket budget and go first; the check stays due")
			return nil
		}
		// Early checks spend their own share of the budget (rate_limits.early_check_share).
		ctx = ratelimit.WithClass(ctx, ratelimit.ClassEarlyCheck)
	}
	ctx = withActivity(ctx, f.Activity)
	_, err := w.FollowUp(log.WithContext(ctx), ledger.Ref{Workspace: f.Workspace, PersonID: f.PersonID}, false, actorSweep)
	if wait, ok := ratelimit.AsWait(err); ok && f.Reason == jobs.ReasonCheck {
		// Nothing was written: the check stays due and a later sweep queues it again.
		log.Debug().Str("budget", wait.Budget).Msg("early check deferred: its share of the budget is spent")
		return nil
	}
	err = w.deadline(err)
	if errors.Is(err, ledger.ErrBusy) || errors.Is(err, ledger.ErrLockLost) {
		return err // retried shortly, not a failure
	}
	if err != nil {
		return w.finish(log.WithContext(ctx), []error{err})
	}
	return nil
}

// FollowUp looks after one person's pending invitations in one workspace: if
// they joined, it grants the waiting groups; invitations past their expiry are
// re-sent, up to max_resends, then given up. It works under the person's lock
// on a fresh read, so however many sweepers find the same invitation, it is
// re-sent once per expiry period. force re-sends pending invitations even if
// not expired (an admin's `invites resend`).
func (w *Worker) FollowUp(ctx context.Context, ref ledger.Ref, force bool, actor string) (Outcome, error) {
	lock, err := w.o.Ledger.Lock(ctx, ref.PersonID, "followup", w.o.LockLease)
	if err != nil {
		if errors.Is(err, ledger.ErrBusy) {
			return OutcomeBusy, err
		}
		return OutcomeNothing, err
	}
	defer lock.Unlock()
	ctx = lock.Context(ctx)
	return w.followUpLocked(ctx, ref, force, actor)
}

func (w *Worker) followUpLocked(ctx context.Context, ref ledger.Ref, force bool, actor string) (Outcome, error) {
	log := zerolog.Ctx(ctx).With().Str("workspace", ref.Workspace).Str("person", ref.PersonID).Logger()
	entry, err := w.o.Ledger.Get(ctx, ref.Workspace, ref.PersonID)
	if err != nil || entry == nil || !entry.AnyPendingInvitation() {
		return OutcomeNothing, err
	}
	now := w.o.Now()
	cfg := w.o.Rules().Config().Invitations
	if entry.AccountID != "" {
		var member bool
		act, due := carriedActivity(ctx), resendDue(entry, now, force)
		switch {
		case activityProves(act, entry):
			// The organization's user search saw them in the workspace's
			// Bitbucket since the invitation: they joined.
			member, entry.MemberSeenAt = true, now
			w.memberJoined(ctx, entry.Workspace, entry.AccountID)
		case due && (entry.MemberSeenAt.IsZero() || now.Sub(entry.MemberSeenAt) >= memberMemo):
			// A re-send goes only to someone asked about: a listing may
			// predate their joining.
			if member, _, err = w.checkOne(ctx, entry.Workspace, entry.PersonID, entry.AccountID); member {
				entry.MemberSeenAt = now
			}
		case act != nil && !due:
			// An early check the search answered: no activity yet (it may
			// lag by a day; the check before a re-send is exact).
			member = !entry.MemberSeenAt.IsZero() && now.Sub(entry.MemberSeenAt) < memberMemo
		default:
			member, _, err = w.isMember(ctx, entry)
		}
		if err != nil {
			return OutcomeNothing, w.failAs(ctx, entry, err, actor)
		}
		if member {
			log.Info().Msg("invited person has joined the workspace: granting the waiting groups")
			atl, err := w.atlassianAdministered(ctx, entry.Workspace)
			if err != nil {
				return OutcomeNothing, err
			}
			if atl {
				return OutcomeAccepted, w.acceptAtlassian(ctx, entry, actor)
			}
			groups := pending(entry, entry.PendingGroups())
			return OutcomeAccepted, w.grantAll(ctx, entry, groups, actor)
		}
		if cfg.EarlyCheckInterval > 0 {
			entry.NextCheckAt = now.Add(cfg.EarlyCheckInterval.D())
		}
	}
	outcome := OutcomeChecked
	var errs []error
	var orgGroups []string
	for i := range entry.Invitations {
		inv := &entry.Invitations[i]
		if inv.State != ledger.InvitationPending || (!force && inv.ExpiresAt.After(now)) {
			continue
		}
		if force && now.Sub(inv.SentAt) < resendGuard {
			continue // just sent: a repeated `invites resend` sends nothing more
		}
		if !force && inv.Resends >= cfg.MaxResends {
			inv.State = ledger.InvitationExpired
			entry.Record(now, actor, ledger.ActionInvitationExpired, inv.Group, fmt.Sprintf("given up after %d re-sends", inv.Resends))
			log.Warn().Str("group", inv.Group).Int("resends", inv.Resends).Str("email", entry.Email).Msg("invitation expired for good after max_resends")
			outcome = OutcomeExpired
			continue
		}
		already, viaOrg, err := w.sendInvitation(ctx, entry, inv.Group)
		if viaOrg {
			orgGroups = append(orgGroups, inv.Group) // one organization invitation re-sends them all
			continue
		}
		if err != nil {
			errs = append(errs, err)
			log.Error().Err(err).Str("group", inv.Group).Msg("re-send failed")
			continue
		}
		// Counted either way, so a Bitbucket that keeps answering 409 cannot
		// make the re-sends go on forever.
		inv.Resends++
		inv.SentAt, inv.ExpiresAt = now, now.Add(cfg.ExpireAfter.D())
		detail := fmt.Sprintf("re-send %d of %d", inv.Resends, cfg.MaxResends)
		if already {
			detail += ": Bitbucket still holds the previous invitation (409); invitations.expire_after may be shorter than Bitbucket's expiry"
		}
		entry.Record(now, actor, ledger.ActionInvitationResent, inv.Group, detail)
		log.Info().Str("group", inv.Group).Int("resends", inv.Resends).Str("email", entry.Email).Bool("bitbucket_still_pending", already).Msg("invitation re-sent")
		outcome = OutcomeResent
	}
	if len(orgGroups) > 0 {
		if err := w.queueOrgInvite(ctx, entry, orgGroups, actor); err != nil {
			errs = append(errs, err)
		}
		outcome = OutcomeResent
	}
	entry.UpdatedAt = now
	if !entry.AnyPendingInvitation() {
		entry.Status, entry.NextCheckAt = ledger.StatusExpired, time.Time{}
	}
	if len(errs) > 0 {
		return outcome, w.failAs(ctx, entry, errors.Join(errs...), actor)
	}
	if entry.Status == ledger.StatusFailed && entry.AnyPendingInvitation() {
		entry.Status, entry.LastError = ledger.StatusInvited, ""
	}
	return outcome, w.o.Ledger.Put(ctx, entry)
}

// resendDue reports whether a follow-up would re-send an invitation now.
func resendDue(e *ledger.Entry, now time.Time, force bool) bool {
	for _, inv := range e.Invitations {
		if inv.State == ledger.InvitationPending && (force || !inv.ExpiresAt.After(now)) {
			return true
		}
	}
	return false
}

// HandleSweep is the Asynq handler for jobs.TypeSweep: it queues a follow-up
// for every invitation due (and a bounded number of early checks).
func (w *Worker) HandleSweep(ctx context.Context, t *asynq.Task) error {
	var s jobs.Sweep
	if err := json.Unmarshal(t.Payload(), &s); err != nil {
		return fmt.Errorf("decode sweep: %w: %w", err, asynq.SkipRetry)
	}
	due, checks, err := w.QueueFollowUps(ctx, s.Tick)
	w.o.Logger.Info().Time("tick", s.Tick).Int("due", due).Int("early_checks", checks).Err(err).Msg("sweep queued follow-ups")
	return err
}

// QueueFollowUps finds what is due at tick and queues one follow-up each.
func (w *Worker) QueueFollowUps(ctx context.Context, tick time.Time) (due, checks int, err error) {
	if w.o.FollowUps == nil {
		return 0, 0, errors.New("sweep: no follow-up queue configured")
	}
	// Enqueueing is one round trip each: a few in flight at once keep a sweep
	// of ten thousand invitations well under a second.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(sweepEnqueuers)
	err = w.eachDue(ctx, tick, func(ref ledger.Ref, reason string, act *jobs.Activity) error {
		if reason == jobs.ReasonDue {
			due++
		} else {
			checks++
		}
		g.Go(func() error {
			return w.o.FollowUps.EnqueueFollowUp(gctx, jobs.FollowUp{Workspace: ref.Workspace, PersonID: ref.PersonID, Reason: reason, Tick: tick, Activity: act})
		})
		return gctx.Err()
	})
	return due, checks, errors.Join(err, g.Wait())
}

const sweepEnqueuers = 16

// SweepSummary counts what one inline sweep did.
type SweepSummary map[Outcome]int

// SweepOnce runs one sweep in this process (`autoinvite sweep --once`).
func (w *Worker) SweepOnce(ctx context.Context, actor string) (SweepSummary, error) {
	sum := SweepSummary{}
	var errs []error
	err := w.eachDue(ctx, w.o.Now(), func(ref ledger.Ref, _ string, act *jobs.Activity) error {
		out, err := w.FollowUp(withActivity(ctx, act), ref, false, actor)
		sum[out]++
		if err != nil && !errors.Is(err, ledger.ErrBusy) {
			errs = append(errs, err)
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return sum, errors.Join(errs...)
}

// eachDue calls fn for every expired invitation, then for the early checks due;
// an entry found by both is visited once. In Atlassian-administered
// workspaces one user search per organization answers the early checks
// (orgActivity): fn gets its answer, and a check whose search failed for
// now is left due.
func (w *Worker) eachDue(ctx context.Context, tick time.Time, fn func(ledger.Ref, string, *jobs.Activity) error) error {
	cfg := w.o.Rules().Config().Invitations
	due, err := w.o.Ledger.DueAt(ctx, w.o.Ledger.DueKey(), tick, int64(cfg.SweepBatch))
	if err != nil {
		return err
	}
	var checks []ledger.Ref
	if cfg.EarlyCheckInterval > 0 {
		// Early checks cost one membership call each unless a search
		// answers them: bound them per sweep so they stay a small share of
		// Bitbucket's hourly budget.
		found, err := w.o.Ledger.DueAt(ctx, w.o.Ledger.CheckKey(), tick, int64(maxEarlyChecksPerSweep))
		if err != nil {
			return err
		}
		seen := make(map[ledger.Ref]bool, len(due))
		for _, ref := range due {
			seen[ref] = true
		}
		for _, ref := range found {
			if !seen[ref] {
				checks = append(checks, ref)
			}
		}
	}
	answers, held := w.orgActivity(ctx, due, checks)
	for _, ref := range due {
		if err := fn(ref, jobs.ReasonDue, answers[ref]); err != nil {
			return err
		}
	}
	for _, ref := range checks {
		if held[ref] {
			continue
		}
		if err := fn(ref, jobs.ReasonCheck, answers[ref]); err != nil {
			return err
		}
	}
	return nil
}

const maxEarlyChecksPerSweep = 50

// signupsWaiting reports whether user events wait for the Bitbucket budget:
// early checks then yield it to them. An unreadable backlog counts as none.
func (w *Worker) signupsWaiting(ctx context.Context) bool {
	if w.o.Backlog == nil {
		return false
	}
	n, err := w.o.Backlog.Waiting(ctx, ratelimit.APIBitbucket)
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("budget backlog unreadable: early check goes ahead")
		return false
	}
	return n > 0
}

// resendGuard keeps an admin's repeated resend from mailing someone twice.
const resendGuard = time.Minute

// Resend re-sends a person's invitations in a workspace now, including those
// given up after max_resends. Idempotent: an invitation sent less than a minute
// ago is not sent again. It returns how many were sent.
func (w *Worker) Resend(ctx context.Context, ref ledger.Ref, actor string) (int, error) {
	ctx, lock, entry, err := w.lockEntry(ctx, ref, actor)
	if err != nil {
		return 0, err
	}
	defer lock.Unlock()
	if entry == nil {
		return 0, fmt.Errorf("%s has no ledger entry in %s", ref.PersonID, ref.Workspace)
	}
	if entry.Status == ledger.StatusUserMissing && w.dataCenter(entry.Workspace) != nil {
		// The account may exist by now: queue the group adds again.
		for _, g := range entry.Waiting {
			entry.Unbatch(g)
		}
		return len(entry.Waiting), w.queueDataCenter(ctx, entry, entry.Waiting, actor)
	}
	if entry.Status == ledger.StatusSeatLimit {
		// Held for seats: try the invitation now (the seat check runs again).
		sent := len(entry.Invitations)
		err := w.invite(ctx, entry, entry.Waiting, actor)
		return len(entry.Invitations) - sent, err
	}
	before := resendCount(entry)
	revived := false
	for i := range entry.Invitations {
		if entry.Invitations[i].State == ledger.InvitationExpired {
			entry.Invitations[i].State = ledger.InvitationPending
			revived = true
		}
	}
	if revived {
		entry.Status = ledger.StatusInvited
		entry.Record(w.o.Now(), actor, ledger.ActionInvitationRevived, "", "given-up invitations re-opened by an admin")
		if err := w.o.Ledger.Put(ctx, entry); err != nil {
			return 0, err
		}
	}
	if _, err := w.followUpLocked(ctx, ref, true, actor); err != nil {
		return 0, err
	}
	after, err := w.o.Ledger.Get(ctx, ref.Workspace, ref.PersonID)
	if err != nil {
		return 0, err
	}
	return resendCount(after) - before, nil
}

func resendCount(e *ledger.Entry) int {
	n := 0
	for _, inv := range e.Invitations {
		n += inv.Resends
	}
	return n
}

// Cancel stops a person's pending invitations in a workspace: no more re-sends.
// Bitbucket has no documented API to withdraw a 1.0 invitation, so an email
// already sent stays usable until Bitbucket itself expires it. Idempotent.
func (w *Worker) Cancel(ctx context.Context, ref ledger.Ref, actor string) (int, error) {
	ctx, lock, entry, err := w.lockEntry(ctx, ref, actor)
	if err != nil {
		return 0, err
	}
	defer lock.Unlock()
	if entry == nil {
		return 0, nil
	}
	groups := entry.PendingGroups()
	n := entry.SetPendingInvitations(ledger.InvitationCancelled)
	if n == 0 {
		return 0, nil
	}
	now := w.o.Now()
	entry.Status, entry.NextCheckAt, entry.UpdatedAt = ledger.StatusCancelled, time.Time{}, now
	entry.Record(now, actor, ledger.ActionInvitationsCancelled, "", strings.Join(groups, " "))
	return n, w.o.Ledger.Put(ctx, entry)
}
