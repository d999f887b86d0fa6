package worker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/autoinvite/autoinvite/integrations/jira"
	"github.com/autoinvite/autoinvite/integrations/ratelimit"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
	"github.com/autoinvite/autoinvite/rules"
)

// UserLister pages through Jira's existing users.
type UserLister interface {
	ListUsers(ctx context.Context, group string, startAt, maxResults int) (jira.Page, error)
}

// BackfillOptions configures a backfill.
type BackfillOptions struct {
	Workspace string // only this workspace ("" = all)
	JiraGroup string // only members of this Jira group ("" = every user)
	Limit     int    // stop after this many users (0 = all)
	PageSize  int
	// Progress is told the running counts after each user.
	Progress func(BackfillSummary)
}

// BackfillSummary counts what a backfill did.
type BackfillSummary struct {
	Seen        int // users listed
	Skipped     int // inactive, app or customer accounts
	AlreadyDone int // already in the ledger
	Matched     int // processed and matched by a rule
	Unmatched   int // processed, no rule matched
	Invited     int
	Granted     int
	Waiting     int // waiting for an email, or held (seats)
	Failed      int
	Total       int // users to go through when Jira says (0 = unknown)
	Resumed     int // startAt the run resumed from
}

// cursorKey names where a backfill over a group (or everyone) remembers the
// next page, so an interrupted run continues where it stopped.
func cursorKey(group string) string { return "backfill:" + group }

// Backfill runs every existing Jira user through the same rules and steps as
// a signup, skipping people the ledger already has, inside the shared rate
// budget (it waits when the budget is spent).
func (w *Worker) Backfill(ctx context.Context, lister UserLister, o BackfillOptions) (BackfillSummary, error) {
	if o.PageSize <= 0 {
		o.PageSize = 100
	}
	if o.Progress == nil {
		o.Progress = func(BackfillSummary) {}
	}
	var sum BackfillSummary
	startAt, err := w.o.Ledger.Cursor(ctx, cursorKey(o.JiraGroup))
	if err != nil {
		return sum, err
	}
	sum.Resumed = startAt
	for {
		page, err := withBudget(ctx, func() (jira.Page, error) { return lister.ListUsers(ctx, o.JiraGroup, startAt, o.PageSize) })
		if err != nil {
			return sum, err
		}
		if page.Total > 0 {
			sum.Total = page.Total
		}
		for _, u := range page.Users {
			if o.Limit > 0 && sum.Seen >= o.Limit {
				return sum, nil // the cursor stays at this page: the next run redoes it, skipping the done
			}
			sum.Seen++
			if err := w.backfillUser(ctx, u, o, &sum); err != nil {
				return sum, err
			}
			o.Progress(sum)
		}
		if err := w.o.Ledger.SetCursor(ctx, cursorKey(o.JiraGroup), page.Next); err != nil {
			return sum, err
		}
		if page.Done {
			return sum, w.o.Ledger.SetCursor(ctx, cursorKey(o.JiraGroup), 0)
		}
		startAt = page.Next
	}
}

func (w *Worker) backfillUser(ctx context.Context, u jira.User, o BackfillOptions, sum *BackfillSummary) error {
	user := jobs.User{AccountID: u.AccountID, AccountType: u.AccountType, Name: u.Name, Key: u.Key, Email: u.Email, DisplayName: u.DisplayName}
	if !u.Active || !rules.Eligible(u.AccountType) || user.PersonID() == "" {
		sum.Skipped++
		return nil
	}
	entries, err := w.o.Ledger.Person(ctx, user.PersonID())
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		sum.AlreadyDone++
		return nil
	}
	ev := jobs.UserEvent{Event: jobs.EventUserCreated, DeliveryID: "backfill", ReceivedAt: w.o.Now(), User: user}
	_, err = withBudget(ctx, func() (struct{}, error) {
		return struct{}{}, w.handleEvent(ctx, ev, "backfill", 0, o.Workspace)
	})
	entries, lerr := w.o.Ledger.Person(ctx, user.PersonID())
	if lerr != nil {
		return lerr
	}
	if len(entries) == 0 {
		sum.Unmatched++
	} else {
		sum.Matched++
	}
	for _, e := range entries {
		switch e.Status {
		case ledger.StatusGranted:
			sum.Granted++
		case ledger.StatusInvited:
			sum.Invited++
		case ledger.StatusWaitingForEmail, ledger.StatusSeatLimit:
			sum.Waiting++
		case ledger.StatusFailed:
			sum.Failed++
		}
	}
	if err != nil && len(entries) == 0 {
		sum.Failed++ // failed before anything was recorded (e.g. the Jira lookup)
	}
	return nil // one person's failure is in the ledger; the backfill goes on
}

// withBudget runs call, waiting out rate-limit waits and busy persons.
func withBudget[T any](ctx context.Context, call func() (T, error)) (T, error) {
	return waitingUpTo(ctx, time.Duration(math.MaxInt64), call)
}

// waitingUpTo is withBudget for waits up to most: a longer rate-limit wait
// is returned (the caller gives its worker slot back and comes back then).
func waitingUpTo[T any](ctx context.Context, most time.Duration, call func() (T, error)) (T, error) {
	for {
		v, err := call()
		wait := time.Duration(0)
		if w, ok := ratelimit.AsWait(err); ok {
			if w.RetryAfter > most {
				return v, err
			}
			wait = w.RetryAfter
		} else if errors.Is(err, ledger.ErrBusy) {
			wait = time.Second
		} else {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// FormatCount is n, or n/total when the total is known.
func (s BackfillSummary) FormatCount() string {
	if s.Total > 0 {
		return fmt.Sprintf("%d/%d", s.Seen+s.Resumed, s.Total)
	}
	return strconv.Itoa(s.Seen + s.Resumed)
}
