package worker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
)

// revoke handles a deactivation: in each workspace, per its revoke mode, it
// cancels pending invitations and removes the groups autoinvite granted (never
// those given by hand), within the workspace's hourly removal limit.
func (w *Worker) revoke(ctx context.Context, s *subject, owner string) []error {
	lock, err := w.o.Ledger.Lock(ctx, s.personID, owner, w.o.LockLease)
	if err != nil {
		return []error{err}
	}
	defer lock.Unlock()
	ctx = lock.Context(ctx)
	if fresh, err := w.inOrder(ctx, s, lock, true); err != nil {
		return []error{err}
	} else if !fresh {
		return nil
	}
	entries, err := w.o.Ledger.Person(ctx, s.personID)
	if err != nil {
		return []error{err}
	}
	if len(entries) == 0 {
		zerolog.Ctx(ctx).Info().Msg("deactivated user has nothing from autoinvite: nothing to revoke")
		return nil
	}
	var errs []error
	for _, e := range entries {
		if err := w.revokeEntry(ctx, e, actorWebhook); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func (w *Worker) revokeEntry(ctx context.Context, e *ledger.Entry, actor string) error {
	cfg := w.o.Rules().Config()
	mode := cfg.RevokeMode(e.Workspace)
	log := zerolog.Ctx(ctx).With().Str("workspace", e.Workspace).Str("revoke", mode).Logger()
	now := w.o.Now()
	pendingGroups := e.PendingGroups()
	switch mode {
	case config.RevokeOff:
		log.Info().Msg("deactivated: revocation is off in this workspace")
		return nil
	case config.RevokeReport:
		detail := fmt.Sprintf("would cancel invitations [%s] and remove groups [%s]", strings.Join(pendingGroups, " "), strings.Join(e.Granted, " "))
		e.Record(now, actor, ledger.ActionRevocationReported, "", detail)
		e.UpdatedAt = now
		log.Warn().Strs("would_cancel", pendingGroups).Strs("would_remove", e.Granted).Strs("kept_hand_given", e.HandGiven).Msg("deactivated (report mode): nothing changed")
		return w.o.Ledger.Put(ctx, e)
	}

	if n := e.SetPendingInvitations(ledger.InvitationCancelled); n > 0 {
		e.Record(now, actor, ledger.ActionInvitationsCancelled, "", strings.Join(pendingGroups, " "))
		log.Info().Strs("groups", pendingGroups).Msg("pending invitations cancelled: no more re-sends")
	}
	e.Waiting, e.NextCheckAt = nil, time.Time{}
	remove := append([]string(nil), e.Granted...)
	atl, err := w.atlassianAdministered(ctx, e.Workspace)
	if err != nil {
		return err
	}
	if atl {
		// An organization invitation put the invitee in its groups at once.
		for _, g := range pendingGroups {
			if !slices.Contains(remove, g) && !slices.Contains(e.HandGiven, g) {
				remove = append(remove, g)
			}
		}
	}
	// An add whose answer never came may still land, even after a retry
	// succeeded: remove it too, and once more later (removing a non-member
	// is harmless). Queued batch adds are called off.
	var doubtful []string
	for _, g := range slices.Sorted(maps.Keys(e.Intents)) {
		if !slices.Contains(e.HandGiven, g) {
			doubtful = append(doubtful, g)
		}
	}
	for g, at := range e.Doubts {
		if now.Sub(at) < doubtWindow && !slices.Contains(e.HandGiven, g) && !slices.Contains(doubtful, g) {
			doubtful = append(doubtful, g)
		}
	}
	slices.Sort(doubtful)
	for _, g := range doubtful {
		if !slices.Contains(remove, g) {
			remove = append(remove, g)
		}
	}
	e.Batched = nil
	var errs []error
	failed := map[string]bool{}
	for _, g := range remove {
		if err := w.removeGroup(ctx, e, g, actor); err != nil {
			errs = append(errs, err)
			failed[g] = true
		}
	}
	// A doubt is settled only by a removal that went through; one that
	// failed stays on record, so the task's retry removes that group again.
	doubtful = slices.DeleteFunc(doubtful, func(g string) bool { return failed[g] })
	if len(doubtful) > 0 {
		for _, g := range doubtful {
			delete(e.Intents, g)
			delete(e.Doubts, g)
		}
		if err := w.recheckLater(ctx, e, doubtful); err != nil {
			errs = append(errs, err)
		}
	}
	switch {
	case len(e.HeldRemovals) > 0:
		e.Status = ledger.StatusRevocationHeld
	case len(pendingGroups) > 0 && len(e.Granted) == 0 && e.Status == ledger.StatusInvited:
		e.Status = ledger.StatusCancelled
	default:
		e.Status = ledger.StatusRevoked
	}
	e.UpdatedAt = now
	if len(errs) > 0 {
		return w.failAs(ctx, e, errors.Join(errs...), actor)
	}
	if len(e.HandGiven) > 0 {
		log.Info().Strs("kept", e.HandGiven).Msg("groups given by hand are kept")
	}
	return w.o.Ledger.Put(ctx, e)
}

// removeGroup removes one granted group, or holds it when the breaker is open.
func (w *Worker) removeGroup(ctx context.Context, e *ledger.Entry, group, actor string) error {
	log := zerolog.Ctx(ctx).With().Str("workspace", e.Workspace).Str("group", group).Logger()
	now := w.o.Now()
	cfg := w.o.Rules().Config()
	allowed, err := w.o.Ledger.AllowRemoval(ctx, e.Workspace, cfg.RemovalLimit(e.Workspace), now)
	if err != nil {
		return err
	}
	if !allowed {
		if !slices.Contains(e.HeldRemovals, group) {
			e.HeldRemovals = append(e.HeldRemovals, group)
		}
		e.Record(now, actor, ledger.ActionRevocationHeld, group, "removal limit reached, waiting for `autoinvite revocations resume`")
		log.Error().Int("limit_per_hour", cfg.RemovalLimit(e.Workspace)).Msg("revocation circuit breaker open: removal held")
		return w.o.Ledger.Hold(ctx, e.Workspace, e.PersonID)
	}
	if err := w.removeFrom(ctx, e, group); err != nil {
		log.Error().Err(err).Msg("remove from group failed")
		return err
	}
	e.Revoked(group)
	e.HeldRemovals = without(e.HeldRemovals, group)
	e.Record(now, actor, ledger.ActionGroupRemoved, group, "")
	log.Info().Msg("removed from group")
	return nil
}

// ResumeRevocations closes a workspace's breaker and applies the held
// removals. A person leaves the held set only once their removals are done:
// one whose removal fails stays held for the next resume.
func (w *Worker) ResumeRevocations(ctx context.Context, workspace, actor string) (removed int, err error) {
	held, err := w.o.Ledger.Resume(ctx, workspace)
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, personID := range held {
		n, err := w.applyHeld(ctx, ledger.Ref{Workspace: workspace, PersonID: personID}, actor)
		removed += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

func (w *Worker) applyHeld(ctx context.Context, ref ledger.Ref, actor string) (int, error) {
	ctx, lock, e, err := w.lockEntry(ctx, ref, actor)
	if err != nil {
		return 0, err
	}
	defer lock.Unlock()
	if e == nil || len(e.HeldRemovals) == 0 {
		// Nothing held any more (reactivated meanwhile, or done by an
		// earlier resume whose release was lost).
		return 0, w.o.Ledger.Unhold(ctx, ref.Workspace, ref.PersonID)
	}
	removed := 0
	var errs []error
	for _, g := range append([]string(nil), e.HeldRemovals...) {
		before := len(e.Granted)
		if err := w.removeGroup(ctx, e, g, actor); err != nil {
			errs = append(errs, err)
		}
		if len(e.Granted) < before {
			removed++
		}
	}
	if len(e.HeldRemovals) == 0 {
		e.Status = ledger.StatusRevoked
	}
	e.UpdatedAt = w.o.Now()
	if len(errs) > 0 {
		return removed, w.failAs(ctx, e, errors.Join(errs...), actor)
	}
	if err := w.o.Ledger.Put(ctx, e); err != nil {
		return removed, err
	}
	if len(e.HeldRemovals) > 0 {
		return removed, nil // held again: the breaker tripped anew
	}
	return removed, w.o.Ledger.Unhold(ctx, ref.Workspace, ref.PersonID)
}

// removeFrom removes the person from one group on the workspace's Bitbucket:
// Data Center, the Admin API, or the 1.0 API (switching to the Admin API
// when Bitbucket refuses the write).
func (w *Worker) removeFrom(ctx context.Context, e *ledger.Entry, group string) error {
	if dc := w.dataCenter(e.Workspace); dc != nil {
		user, _ := w.dataCenterUser(e)
		return dc.RemoveFromGroup(ctx, group, user)
	}
	atl, err := w.atlassianAdministered(ctx, e.Workspace)
	if err != nil {
		return err
	}
	if atl {
		return w.removeThroughOrg(ctx, e, group)
	}
	err = w.o.Bitbucket.RemoveFromGroup(ctx, e.Workspace, group, e.AccountID)
	if !isRefusedWrite(err) {
		return err
	}
	carryOn, err := w.refused(ctx, e.Workspace, err)
	if !carryOn {
		return err
	}
	return w.removeThroughOrg(ctx, e, group)
}

// doubtWindow is how long an unanswered add is suspected of landing late.
const doubtWindow = time.Hour

// recheckLater queues a second removal of groups whose add was in doubt, a
// few client timeouts from now, when a late add has landed if it ever will.
func (w *Worker) recheckLater(ctx context.Context, e *ledger.Entry, groups []string) error {
	if w.o.FollowUps == nil {
		return nil
	}
	now := w.o.Now()
	delay := 3 * w.o.Rules().Config().Bitbucket.Timeout.D()
	e.Record(now, actorWebhook, ledger.ActionRemovalRecheck, strings.Join(groups, ","), fmt.Sprintf("an add was in doubt: removing again after %s", delay))
	return w.o.FollowUps.EnqueueFollowUp(ctx, jobs.FollowUp{
		Workspace: e.Workspace, PersonID: e.PersonID, Reason: jobs.ReasonRecheckRemoval, Groups: groups, Tick: now, NotBefore: time.Now().Add(delay),
	})
}

// activeAgain reports whether the person was reactivated since the
// deactivation: Jira's newest event says so; without event timestamps, the
// entry's status (a revocation that failed is still a revocation).
func (w *Worker) activeAgain(ctx context.Context, e *ledger.Entry) (bool, error) {
	wm, err := w.o.Ledger.GetWatermark(ctx, e.PersonID)
	if err != nil {
		return false, err
	}
	if wm.At != 0 {
		return !wm.Deleted, nil
	}
	switch e.Status {
	case ledger.StatusRevoked, ledger.StatusCancelled, ledger.StatusRevocationHeld, ledger.StatusFailed:
		return false, nil
	}
	return true, nil
}

// RecheckRemoval removes again groups whose add was in doubt at revocation,
// unless the person has been given access again since.
func (w *Worker) RecheckRemoval(ctx context.Context, ref ledger.Ref, groups []string, actor string) error {
	return w.withEntry(ctx, ref, actor, func(ctx context.Context, e *ledger.Entry) error {
		return w.recheckRemoval(ctx, e, groups, actor)
	})
}

func (w *Worker) recheckRemoval(ctx context.Context, e *ledger.Entry, groups []string, actor string) error {
	if active, err := w.activeAgain(ctx, e); err != nil || active {
		return err // access may have been given again meanwhile
	}
	var errs []error
	for _, g := range groups {
		if e.HasGranted(g) {
			continue
		}
		if err := w.removeFrom(ctx, e, g); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	e.Record(w.o.Now(), actor, ledger.ActionRemovalRecheck, strings.Join(groups, ","), "removed again")
	e.UpdatedAt = w.o.Now()
	return w.o.Ledger.Put(ctx, e)
}
