package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/integrations/ratelimit"
	"github.com/autoinvite/autoinvite/internal/transient"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
)

// DataCenter is what the worker needs from a Bitbucket Data Center instance.
type DataCenter interface {
	AddUsers(ctx context.Context, group string, users []string) (missing []string, err error)
	RemoveFromGroup(ctx context.Context, group, user string) error
}

// BatchEnqueuer queues a person for a batched call.
type BatchEnqueuer interface {
	EnqueueBatchItem(ctx context.Context, it jobs.BatchItem) error
}

// batchStale is how long a queued batch item is trusted to still be on its way.
const batchStale = time.Hour

// dataCenter returns the workspace's Data Center client, or nil on Cloud.
func (w *Worker) dataCenter(workspace string) DataCenter {
	if w.o.DataCenter == nil {
		return nil
	}
	return w.o.DataCenter(workspace)
}

// organization returns the workspace's Admin API client, or nil.
func (w *Worker) organization(workspace string) OrgAdmin {
	if w.o.Organization == nil {
		return nil
	}
	return w.o.Organization(workspace)
}

// dataCenterUser is the Data Center username of a person, per the workspace's
// bitbucket.username setting.
func (w *Worker) dataCenterUser(e *ledger.Entry) (user, field string) {
	ws := w.o.Rules().Config().Workspace(e.Workspace)
	if ws != nil && ws.Bitbucket.Username == config.UsernameEmail {
		return e.Email, "email"
	}
	return e.JiraUser, "Jira username"
}

// queueDataCenter puts the person in the batched add-users call of each group.
func (w *Worker) queueDataCenter(ctx context.Context, entry *ledger.Entry, groups []string, actor string) error {
	who, field := w.dataCenterUser(entry)
	if who == "" {
		for _, g := range groups {
			entry.Wait(g)
		}
		entry.Status = ledger.StatusUserMissing
		entry.Record(w.o.Now(), actor, ledger.ActionUserMissing, "", "Jira gave no "+field+" to name the user in Bitbucket Data Center")
		zerolog.Ctx(ctx).Warn().Str("workspace", entry.Workspace).Msg("no " + field + " for Bitbucket Data Center: nothing granted")
		return w.o.Ledger.Put(ctx, entry)
	}
	var items []jobs.BatchItem
	for _, g := range groups {
		items = append(items, jobs.BatchItem{Kind: jobs.BatchDataCenterAdd, Workspace: entry.Workspace, Groups: []string{g}, PersonID: entry.PersonID, Who: who})
	}
	if err := w.queueBatch(ctx, entry, items, actor, "Bitbucket Data Center add-users, batched with others"); err != nil {
		return w.failAs(ctx, entry, err, actor)
	}
	return w.settle(ctx, entry, ledger.StatusBatched, nil, actor)
}

// queueBatch enqueues the items whose groups are not already on their way and
// records them on the entry (the caller saves it).
func (w *Worker) queueBatch(ctx context.Context, entry *ledger.Entry, items []jobs.BatchItem, actor, detail string) error {
	if w.o.Batches == nil {
		return errors.New("batched calls need a batch enqueuer")
	}
	now := w.o.Now()
	for _, it := range items {
		fresh := false
		for _, g := range it.Groups {
			if at, ok := entry.Batched[g]; !ok || now.Sub(at) >= batchStale {
				fresh = true
			}
		}
		if !fresh {
			continue // a replay: already on its way
		}
		it.QueuedAt = now
		if err := w.o.Batches.EnqueueBatchItem(ctx, it); err != nil {
			return err
		}
		for _, g := range it.Groups {
			entry.Wait(g)
			entry.MarkBatched(g, now)
		}
		entry.Record(now, actor, ledger.ActionQueuedForBatch, strings.Join(it.Groups, ","), detail)
		zerolog.Ctx(ctx).Info().Str("workspace", entry.Workspace).Str("kind", it.Kind).Strs("groups", it.Groups).Msg("queued for a batched call")
	}
	return nil
}

// sendInvitation invites by email into one group through Bitbucket's 1.0
// API. toOrg says the workspace is administered in Atlassian Administration
// (configured, learned, or just found out) and the Admin API must send it.
func (w *Worker) sendInvitation(ctx context.Context, entry *ledger.Entry, group string) (already, toOrg bool, err error) {
	atl, err := w.atlassianAdministered(ctx, entry.Workspace)
	if err != nil || atl {
		return false, atl, err
	}
	already, err = w.o.Bitbucket.Invite(ctx, entry.Workspace, entry.Email, group)
	if isRefusedWrite(err) {
		carryOn, rerr := w.refused(ctx, entry.Workspace, err)
		return false, carryOn, rerr
	}
	return already, false, err
}

// queueOrgInvite queues one organization invitation covering groups.
// A group with a pending invitation is re-sent.
func (w *Worker) queueOrgInvite(ctx context.Context, entry *ledger.Entry, groups []string, actor string) error {
	if _, _, err := w.orgOf(entry.Workspace); err != nil {
		return err
	}
	it := jobs.BatchItem{AccountID: entry.AccountID, Kind: jobs.BatchOrgInvite, Workspace: entry.Workspace, Groups: groups, PersonID: entry.PersonID, Who: entry.Email}
	return w.queueBatch(ctx, entry, []jobs.BatchItem{it}, actor, "Atlassian organization invitation, batched with others")
}

// HandleBatch is the Asynq handler for jobs.TypeBatch: one call for many people.
func (w *Worker) HandleBatch(ctx context.Context, t *asynq.Task) error {
	b, err := jobs.DecodeBatch(t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	taskID, _ := asynq.GetTaskID(ctx)
	return w.RunBatch(ctx, b, taskID)
}

// RunBatch carries out one batched call. taskID names the batch: the calls'
// outcomes are stored under it before anyone is settled, so a retry after a
// crash settles from them instead of calling Atlassian again.
func (w *Worker) RunBatch(ctx context.Context, b jobs.Batch, taskID string) error {
	first := b.Items[0]
	log := w.o.Logger.With().Str("task_id", taskID).Str("kind", first.Kind).Str("workspace", first.Workspace).
		Strs("groups", first.Groups).Int("people", len(b.Items)).Logger()
	ctx = log.WithContext(ctx)
	todo, err := w.notYetDone(ctx, b.Items)
	if err != nil || len(todo) == 0 {
		return err
	}
	switch first.Kind {
	case jobs.BatchDataCenterAdd:
		err = w.runDataCenterBatch(ctx, first, todo, taskID)
	case jobs.BatchOrgInvite:
		err = w.runOrgBatch(ctx, first, todo, taskID, true)
	case jobs.BatchOrgAdmin:
		err = w.runOrgBatch(ctx, first, todo, taskID, false)
	default:
		err = fmt.Errorf("unknown batch kind %q: %w", first.Kind, asynq.SkipRetry)
	}
	if err != nil {
		log.Error().Err(err).Msg("batched call failed")
	}
	return err
}

// notYetDone drops the items a previous run of the batch already settled, so a
// retried batch never invites anyone twice.
func (w *Worker) notYetDone(ctx context.Context, items []jobs.BatchItem) ([]jobs.BatchItem, error) {
	var out []jobs.BatchItem
	for _, it := range items {
		e, err := w.o.Ledger.Get(ctx, it.Workspace, it.PersonID)
		if err != nil {
			return nil, err
		}
		if e != nil && batchDone(e, it) {
			continue
		}
		if e != nil { // a retry: only the groups not settled yet
			it.Groups = slices.DeleteFunc(slices.Clone(it.Groups), func(g string) bool { _, waiting := e.Batched[g]; return !waiting })
		}
		out = append(out, it)
	}
	return out, nil
}

func batchDone(e *ledger.Entry, it jobs.BatchItem) bool {
	for _, g := range it.Groups {
		if _, waiting := e.Batched[g]; waiting {
			return false
		}
	}
	return true
}

// dcBatchOutcome is what a Data Center add-users batch did.
type dcBatchOutcome struct {
	Done    bool     `json:"done"`
	Missing []string `json:"missing,omitempty"`
}

func (w *Worker) runDataCenterBatch(ctx context.Context, first jobs.BatchItem, items []jobs.BatchItem, taskID string) error {
	dc := w.dataCenter(first.Workspace)
	if dc == nil {
		return fmt.Errorf("workspace %s is no longer on Bitbucket Data Center in the config: batch dropped: %w", first.Workspace, asynq.SkipRetry)
	}
	group := first.Groups[0]
	var users []string
	for _, it := range items {
		if !slices.Contains(users, it.Who) {
			users = append(users, it.Who)
		}
	}
	var done dcBatchOutcome
	if taskID != "" {
		if _, err := w.o.Ledger.BatchOutcome(ctx, taskID, &done); err != nil {
			return err
		}
	}
	missing := done.Missing
	if !done.Done {
		var err error
		if missing, err = dc.AddUsers(ctx, group, users); err != nil {
			return w.batchFailed(ctx, items, err, taskID)
		}
		if taskID != "" {
			if err := w.o.Ledger.SaveBatchOutcome(context.WithoutCancel(ctx), taskID, dcBatchOutcome{Done: true, Missing: missing}); err != nil {
				return err
			}
		}
	} else {
		zerolog.Ctx(ctx).Info().Msg("batch already called Data Center before a restart: settling from its stored outcome")
	}
	now := w.o.Now()
	detail := fmt.Sprintf("Data Center add-users, %d in one batch", len(users))
	zerolog.Ctx(ctx).Info().Int("added", len(users)-len(missing)).Strs("missing", missing).Msg("Data Center group adds done")
	return w.settleEach(ctx, items, taskID, func(e *ledger.Entry, it jobs.BatchItem) {
		e.Unbatch(group)
		if slices.Contains(missing, it.Who) {
			e.Wait(group)
			e.Status = ledger.StatusUserMissing
			e.Record(now, "batch", ledger.ActionUserMissing, group, fmt.Sprintf("Bitbucket Data Center has no user %q: create it (or connect the user directory), then `autoinvite invites resend`", it.Who))
			return
		}
		e.Grant(group)
		e.Record(now, "batch", ledger.ActionGroupAdded, group, detail)
		if len(e.Waiting) == 0 {
			e.Status, e.LastError = ledger.StatusGranted, ""
		}
	})
}

// batchFailed records a failed batched call on every person in it: a
// temporary failure keeps them queued for the retry, a permanent one ends it.
func (w *Worker) batchFailed(ctx context.Context, items []jobs.BatchItem, err error, taskID string) error {
	if _, waiting := ratelimit.AsWait(err); waiting {
		return err
	}
	temporary := transient.Is(err)
	now := w.o.Now()
	if serr := w.settleEach(ctx, items, taskID, func(e *ledger.Entry, it jobs.BatchItem) {
		e.LastError = err.Error()
		e.Record(now, "batch", ledger.ActionError, strings.Join(it.Groups, ","), err.Error())
		if !temporary {
			for _, g := range it.Groups {
				e.Unbatch(g)
			}
			e.Status = ledger.StatusFailed
		}
	}); serr != nil {
		return errors.Join(err, serr)
	}
	if temporary {
		return err
	}
	return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
}

// settleEach applies fn to each person's entry under their lock and saves it.
func (w *Worker) settleEach(ctx context.Context, items []jobs.BatchItem, taskID string, fn func(*ledger.Entry, jobs.BatchItem)) error {
	var errs []error
	for _, it := range items {
		if err := w.settleOne(ctx, it, taskID, fn); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (w *Worker) settleOne(ctx context.Context, it jobs.BatchItem, taskID string, fn func(*ledger.Entry, jobs.BatchItem)) error {
	lock, err := w.lockPatiently(ctx, it.PersonID, taskID)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	ctx = lock.Context(ctx)
	e, err := w.o.Ledger.Get(ctx, it.Workspace, it.PersonID)
	if err != nil {
		return err
	}
	if e == nil { // the signup's own save was lost: start the entry here
		e = &ledger.Entry{Workspace: it.Workspace, PersonID: it.PersonID, CreatedAt: w.o.Now()}
		if strings.Contains(it.Who, "@") {
			e.Email = it.Who
		} else {
			e.JiraUser = it.Who
		}
	}
	fn(e, it)
	e.UpdatedAt = w.o.Now()
	return w.o.Ledger.Put(ctx, e)
}

// lockPatiently waits a little for a person another task holds: the batch's
// call is already made, so giving up would only repeat it.
func (w *Worker) lockPatiently(ctx context.Context, personID, owner string) (*ledger.Lock, error) {
	for i := 0; ; i++ {
		lock, err := w.o.Ledger.Lock(ctx, personID, owner, w.o.LockLease)
		if !errors.Is(err, ledger.ErrBusy) || i == 20 {
			return lock, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
