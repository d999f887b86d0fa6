package worker_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/integrations/fake/faketest"
	"github.com/autoinvite/autoinvite/integrations/ratelimit"
	"github.com/autoinvite/autoinvite/worker"
)

// waitingBitbucket answers "budget spent" to the first calls it is told to.
type waitingBitbucket struct {
	worker.Bitbucket
	memberWaits, addWaits int // how many IsMember / AddToGroup(readers) calls wait
	waits                 int
	next                  *ratelimit.WaitError // the wait to answer (nil: a plain one)
}

func (b *waitingBitbucket) wait() error {
	b.waits++
	if b.next != nil {
		return b.next
	}
	return &ratelimit.WaitError{API: "bitbucket", Budget: "requests", RetryAfter: time.Minute, Position: -1}
}

func (b *waitingBitbucket) IsMember(ctx context.Context, ws, member string) (bool, error) {
	if b.memberWaits > 0 {
		b.memberWaits--
		return false, b.wait()
	}
	return b.Bitbucket.IsMember(ctx, ws, member)
}

func (b *waitingBitbucket) AddToGroup(ctx context.Context, ws, group, member string) (bool, error) {
	if group == "readers" && b.addWaits > 0 {
		b.addWaits--
		return false, b.wait()
	}
	return b.Bitbucket.AddToGroup(ctx, ws, group, member)
}

// A signup that waits for the budget again and again (before any call, and
// between its group adds) leaves the records of one decision and its
// outcome, and a retry that only waited writes nothing at all.
func TestWaitingForBudgetWritesNothing(t *testing.T) {
	bb := &waitingBitbucket{memberWaits: 3, addWaits: 4}
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	h := newHarness(t, `
workspaces:
  - workspace: acme
    rules:
      - {name: everyone, match: {}, groups: [developers, readers, leads]}
`, 5*time.Second, func(o *worker.Options, _ *faketest.Server) {
		bb.Bitbucket = o.Bitbucket
		o.Bitbucket = bb
		o.Now = func() time.Time { return now }
	})
	ctx := context.Background()
	mia := fake.DemoMemberAccountID
	var stored []time.Time // the entry's update time after each try
	for try := 1; ; try++ {
		now = now.Add(time.Minute)
		err := h.w.ProcessUserEvent(ctx, signup(mia, "mia@acme.com"))
		e, gerr := h.ledger.Get(ctx, "acme", "acct:"+mia)
		if gerr != nil || e == nil {
			t.Fatalf("try %d: entry %v, %v", try, e, gerr)
		}
		stored = append(stored, e.UpdatedAt)
		if err == nil {
			break
		}
		if _, ok := ratelimit.AsWait(err); !ok || try > 20 {
			t.Fatalf("try %d: %v, want a wait for the budget", try, err)
		}
	}
	if bb.waits != 7 {
		t.Fatalf("waited %d times, want 7", bb.waits)
	}
	// Tries 1-3 wait before any call: only the first writes (the decision).
	// Try 4 adds developers and leads, readers waits: written. Tries 5-7
	// only wait: nothing written. Try 8 adds readers.
	t0 := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	at := func(try int) time.Time { return t0.Add(time.Duration(try) * time.Minute) }
	want := []time.Time{at(1), at(1), at(1), at(4), at(4), at(4), at(4), at(8)}
	if !slices.EqualFunc(stored, want, time.Time.Equal) {
		t.Fatalf("entry written at %v, want %v", stored, want)
	}

	story, err := h.ledger.History(ctx, "acme", "acct:"+mia, 100)
	if err != nil {
		t.Fatal(err)
	}
	var history []string
	for _, ev := range story {
		history = append(history, strings.TrimSpace(ev.Action+" "+ev.Group))
	}
	wantHistory := []string{"decided", "group-added developers", "group-added leads", "group-added readers"}
	if !slices.Equal(history, wantHistory) {
		t.Fatalf("history %q, want %q", history, wantHistory)
	}
	recs, err := h.ledger.ReadAudit(ctx, time.Time{}, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	var audit []string
	for _, r := range recs {
		audit = append(audit, strings.TrimSpace(r.Action+" "+r.Group))
	}
	if !slices.Equal(audit, wantHistory) {
		t.Fatalf("audit %q, want %q", audit, wantHistory)
	}
}

// Waiting behind other tasks for a budget is never a failure, however long
// after the signup: only a back-off from 429s that outlasts
// rate_limits.max_wait is.
func TestOnlyAnEndless429BackOffIsAFailure(t *testing.T) {
	bb := &waitingBitbucket{}
	h := newHarness(t, "rate_limits: {max_wait: 1h}\n"+inviteRules, 5*time.Second, func(o *worker.Options, _ *faketest.Server) {
		bb.Bitbucket = o.Bitbucket
		o.Bitbucket = bb
	})
	ev := signup(fake.DemoMemberAccountID, "mia@acme.com")
	ev.ReceivedAt = time.Now().Add(-30 * 24 * time.Hour) // a month in the backlog
	for _, c := range []struct {
		wait *ratelimit.WaitError
		fail string
	}{
		{&ratelimit.WaitError{API: "bitbucket", Budget: "requests", RetryAfter: time.Minute, Requests: 1000, Per: time.Hour, Position: -1}, ""},
		{&ratelimit.WaitError{API: "bitbucket", Budget: "429 back-off", RetryAfter: time.Minute, ThrottledFor: 59 * time.Minute, Position: -1}, ""},
		{&ratelimit.WaitError{API: "bitbucket", Budget: "429 back-off", RetryAfter: time.Minute, ThrottledFor: 61 * time.Minute, Position: -1},
			"gave up: bitbucket has answered 429 (too many requests) for 1h1m0s without a success, longer than rate_limits.max_wait (1h0m0s)"},
	} {
		bb.memberWaits, bb.next = 1, c.wait
		err := h.w.ProcessUserEvent(context.Background(), ev)
		_, waiting := ratelimit.AsWait(err)
		if c.fail == "" && !waiting {
			t.Errorf("%s for %s: %v, want a wait", c.wait.Budget, c.wait.ThrottledFor, err)
		}
		if c.fail != "" && (waiting || err == nil || !strings.HasPrefix(err.Error(), c.fail)) {
			t.Errorf("%s for %s: %v, want %q", c.wait.Budget, c.wait.ThrottledFor, err, c.fail)
		}
	}
}
