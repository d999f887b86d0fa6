package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/integrations/ratelimit"
)

// Tasks waiting for a spent budget get their turns by arrival, whatever the
// order they came to wait in: when the budget frees the request their place
// comes to (one request a task until tasks have been served, then the budget
// over the tasks served in the last window, at most four). The two calls of
// a budget of 2 were made together, so both of its requests free at the
// refill: places 0 and 1 come back then, 2 and 3 a window later, 4 two.
func TestBacklogServesOldestFirst(t *testing.T) {
	rdb, prefix := client(t)
	ctx := context.Background()
	l := ratelimit.New(rdb, ratelimit.Options{API: "bitbucket", Credential: "bot", Prefix: prefix, MaxInPlaceWait: -1,
		Budgets: []ratelimit.Budget{{Name: "requests", Requests: 2, Per: time.Hour}}})
	for i := 0; i < 2; i++ {
		if err := l.Take(ctx, "GET", "/x"); err != nil {
			t.Fatal(err)
		}
	}
	spentAt := time.Now()
	spent, ok := ratelimit.AsWait(l.Take(ctx, "GET", "/x"))
	if !ok || spent.Position != -1 || spent.Requests != 2 || spent.Per != time.Hour {
		t.Fatalf("wait = %+v", spent)
	}
	// The window is the period and the limiter's least margin (0.2%), and a
	// millisecond for the rounding of call times.
	const window = time.Hour + 7201*time.Millisecond
	if spent.RetryAfter > window || spent.RetryAfter < window-time.Second {
		t.Fatalf("retry after %s; want the window, %s", spent.RetryAfter, window)
	}
	b := ratelimit.NewBacklog(rdb, prefix)
	if n, err := b.Waiting(ctx, "bitbucket"); err != nil || n != 0 {
		t.Fatalf("waiting before any = %d, %v", n, err)
	}
	arrival := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	queue := func(i int) *ratelimit.WaitError {
		t.Helper()
		w := *spent
		if err := b.Queue(ctx, string(rune('a'+i)), arrival.Add(time.Duration(i)*time.Minute), &w); err != nil {
			t.Fatal(err)
		}
		return &w
	}
	// turn checks a wait against the refill plus windows, give or take the
	// time since the budget was found spent (and a millisecond of rounding).
	turn := func(w *ratelimit.WaitError, windows int) bool {
		want := spent.RetryAfter + time.Duration(windows)*window
		return w.RetryAfter <= want+time.Millisecond && w.RetryAfter >= want-time.Since(spentAt)-time.Millisecond
	}
	order := []int{3, 1, 4, 0, 2}
	for _, i := range order {
		queue(i)
	}
	for _, i := range order { // again: each comes back and waits once more
		if w := queue(i); w.Position != i || !turn(w, i/2) {
			t.Errorf("task %d: place %d, retry after %s; want %d, %s", i, w.Position, w.RetryAfter, i, spent.RetryAfter+time.Duration(i/2)*window)
		}
	}
	if n, err := b.Waiting(ctx, "bitbucket"); err != nil || n != 5 {
		t.Fatalf("waiting for bitbucket = %d, %v; want 5", n, err)
	}
	if n, err := b.Waiting(ctx, "jira"); err != nil || n != 0 {
		t.Fatalf("waiting for jira = %d, %v; want 0", n, err)
	}
	st, err := b.Status(ctx)
	if err != nil || len(st) != 1 {
		t.Fatalf("status %+v, %v", st, err)
	}
	if q := st[0]; q.API != "bitbucket" || q.Budget != "requests" || q.Waiting != 5 || q.Used != 2 || !q.Oldest.Equal(arrival) ||
		q.ETA < spent.RetryAfter+2*window-time.Since(spentAt)-time.Millisecond || q.ETA > spent.RetryAfter+2*window {
		t.Fatalf("status %+v; want the ETA two windows after the refill", q)
	}

	if err := b.Done(ctx, "a"); err != nil { // the oldest is served
		t.Fatal(err)
	}
	// One task served, but the window's two calls were made before anyone
	// waited, by tasks the backlog never counted: a task is still taken to
	// need one request, so place 1 comes to the second request, which the
	// refill frees (counting those calls made it a window later).
	if w := queue(2); w.Position != 1 || !turn(w, 0) {
		t.Errorf("after one was served: place %d, retry after %s; want 1, %s", w.Position, w.RetryAfter, spent.RetryAfter)
	}
	// The ETA is the last one's turn as it would be given now: place 3 comes
	// to the 4th request, a window after the refill.
	st, err = b.Status(ctx)
	if err != nil || len(st) != 1 || st[0].Waiting != 4 || !st[0].Oldest.Equal(arrival.Add(time.Minute)) {
		t.Fatalf("after one was served: %+v, %v", st, err)
	}
	if got, want := st[0].ETA, spent.RetryAfter+window; got > want || got < want-time.Since(spentAt)-time.Millisecond {
		t.Fatalf("ETA %s; want %s", got, want)
	}
}

// A 429 back-off says how long Atlassian has been refusing, from the first
// 429 of the run: the one wait that can be a failure (rate_limits.max_wait).
func TestBackOffTellsHowLongAtlassianHasRefused(t *testing.T) {
	rdb, prefix := client(t)
	ctx := context.Background()
	l := ratelimit.New(rdb, ratelimit.Options{API: "bitbucket", Credential: "bot", Prefix: prefix, MaxInPlaceWait: -1})
	l.Throttled(ctx, time.Minute)
	time.Sleep(200 * time.Millisecond)
	l.Throttled(ctx, time.Minute) // a second 429 of the same run
	w, ok := ratelimit.AsWait(l.Take(ctx, "GET", "/x"))
	if !ok || w.Budget != "429 back-off" || w.ThrottledFor < 200*time.Millisecond || w.ThrottledFor > 2*time.Second {
		t.Fatalf("wait = %+v", w)
	}
	l.Recovered(ctx) // a success ends the run
	l.Throttled(ctx, time.Minute)
	if w, ok := ratelimit.AsWait(l.Take(ctx, "GET", "/x")); !ok || w.ThrottledFor >= 200*time.Millisecond {
		t.Fatalf("after a success, wait = %+v", w)
	}
}

// A task queued by one process and served by another (a fresh worker after a
// restart or a scale-up, which never queued anything) leaves the backlog: the
// count, the ETA and reconciliation's "signups first" must not wait on ghosts
// for the hour it takes them to go stale.
func TestTaskServedByAnotherProcessLeavesTheBacklog(t *testing.T) {
	rdb, prefix := client(t)
	ctx := context.Background()
	l := ratelimit.New(rdb, ratelimit.Options{API: "bitbucket", Credential: "bot", Prefix: prefix, MaxInPlaceWait: -1,
		Budgets: []ratelimit.Budget{{Name: "requests", Requests: 1, Per: time.Hour}}})
	if err := l.Take(ctx, "GET", "/x"); err != nil {
		t.Fatal(err)
	}
	spent, ok := ratelimit.AsWait(l.Take(ctx, "GET", "/x"))
	if !ok {
		t.Fatal("the budget of 1 was not spent")
	}
	queuedBy := ratelimit.NewBacklog(rdb, prefix)
	for i, id := range []string{"a", "b"} {
		w := *spent
		if err := queuedBy.Queue(ctx, id, time.Now().Add(time.Duration(i)*time.Second), &w); err != nil {
			t.Fatal(err)
		}
	}
	if err := ratelimit.NewBacklog(rdb, prefix).Done(ctx, "a"); err != nil { // another process serves "a"
		t.Fatal(err)
	}
	if n, err := queuedBy.Waiting(ctx, "bitbucket"); err != nil || n != 1 {
		t.Fatalf("waiting after another process served one = %d, %v; want 1", n, err)
	}
	st, err := ratelimit.NewBacklog(rdb, prefix).Status(ctx)
	if err != nil || len(st) != 1 || st[0].Waiting != 1 {
		t.Fatalf("status %+v, %v; want 1 waiting", st, err)
	}
}
