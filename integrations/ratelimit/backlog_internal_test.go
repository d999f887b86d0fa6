package ratelimit

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/autoinvite/autoinvite/internal/redistest"
)

// A task deleted while it waited (from the dashboard, say) never comes back
// to leave the queue: once its turn passed staleAfter ago it no longer
// counts, for reconciliation's "signups first" and the backlog metric, though
// only the next Queue prunes it.
func TestStaleTaskNoLongerCountsAsWaiting(t *testing.T) {
	r := redistest.New(t)
	rdb, ctx := r.Client(t), context.Background()
	b := NewBacklog(rdb, r.Prefix)
	for _, id := range []string{"deleted", "waiting"} {
		w := &WaitError{API: APIBitbucket, Budget: "requests", RetryAfter: time.Minute, Requests: 1000, Per: time.Hour, limiter: "bot"}
		if err := b.Queue(ctx, id, time.Now(), w); err != nil {
			t.Fatal(err)
		}
	}
	// The deleted task's turn came an hour and a minute ago.
	due := b.keys("bot:requests")[2]
	if err := rdb.ZAdd(ctx, due, redis.Z{Score: float64(time.Now().Add(-61 * time.Minute).UnixMilli()), Member: "deleted"}).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Waiting(ctx, APIBitbucket); err != nil || n != 1 {
		t.Fatalf("waiting = %d, %v; want 1 (the deleted task is stale)", n, err)
	}
	if st, err := b.Status(ctx); err != nil || len(st) != 1 || st[0].Waiting != 1 {
		t.Fatalf("status = %+v, %v; want 1 waiting", st, err)
	}
}

// A budget whose calls were spread over its window frees its requests one by
// one as they leave: a waiting task comes back when the request its place
// comes to frees, not at the refill nor at an even share of the window, and
// a budget's worth of places further comes back a window later. Requests the
// window does not hold are free now.
func TestBacklogTurnIsWhenTheRequestFrees(t *testing.T) {
	r := redistest.New(t)
	rdb, ctx := r.Client(t), context.Background()
	const limiter, period = "bitbucket:0123456789ab", time.Hour
	window := time.Duration(leastWindowMs(period)) * time.Millisecond
	log := limiterKey(r.Prefix, limiter) + ":requests"
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// 8 calls of a budget of 10, made 59, 53, ... 17 minutes ago: the k-th
	// leaves the window 1 + 6k minutes from now (plus the least margin).
	for k := 0; k < 8; k++ {
		at := now.Add(-period + time.Minute + time.Duration(6*k)*time.Minute)
		if err := rdb.ZAdd(ctx, log, redis.Z{Score: float64(at.UnixMilli()), Member: k}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	b := NewBacklog(rdb, r.Prefix)
	frees := func(k int) time.Duration { return time.Minute + time.Duration(6*k)*time.Minute + window - period }
	for place, want := range []time.Duration{
		0: time.Millisecond, 1: time.Millisecond, // the two requests the window does not hold
		2: frees(0), 3: frees(1), 9: frees(7),
		10: window, 11: window, 12: frees(0) + window, // a window later
	} {
		if want == 0 {
			continue
		}
		if w := queueBehind(t, rdb, b, limiter, 10, period, place, now); w.Position != place || w.RetryAfter > want || w.RetryAfter < want-time.Second {
			t.Errorf("place %d: place %d, retry after %s; want %s", place, w.Position, w.RetryAfter, want)
		}
	}
}

// Read in the middle of a burst, a window holds calls about to leave and
// calls just made, which leave a window later: the turn of a place near that
// step is exact, not smeared between the two.
func TestBacklogTurnIsExactAcrossABurst(t *testing.T) {
	r := redistest.New(t)
	rdb, ctx := r.Client(t), context.Background()
	const limiter, period, limit = "bitbucket:0123456789ab", time.Hour, 1000
	window := time.Duration(leastWindowMs(period)) * time.Millisecond
	log := limiterKey(r.Prefix, limiter) + ":requests"
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// 500 calls made a window ago, leaving 1 minute from now, and 500 made a
	// second ago, leaving a window from now.
	addAt(t, rdb, log, "leaving", limit/2, now.Add(-period+time.Minute))
	addAt(t, rdb, log, "just-made", limit/2, now.Add(-time.Second))
	b := NewBacklog(rdb, r.Prefix)
	for place, want := range map[int]time.Duration{
		499:  time.Minute + window - period,   // the last of the calls about to leave
		500:  window - time.Second,            // the first of those just made
		1499: time.Minute + 2*window - period, // a window later
	} {
		if w := queueBehind(t, rdb, b, limiter, limit, period, place, now); w.Position != place || w.RetryAfter > want || w.RetryAfter < want-time.Second {
			t.Errorf("place %d: place %d, retry after %s; want %s", place, w.Position, w.RetryAfter, want)
		}
	}
}

// queueBehind queues a task for the requests budget of limiter behind place
// older ones (written straight into the waiting set) and returns its wait;
// the queue is emptied afterwards.
func queueBehind(t *testing.T, rdb redis.UniversalClient, b *Backlog, limiter string, requests int, per time.Duration, place int, now time.Time) *WaitError {
	t.Helper()
	ctx := context.Background()
	keys := b.keys(limiter + ":requests")
	defer func() {
		if err := rdb.Del(ctx, keys...).Err(); err != nil {
			t.Fatal(err)
		}
	}()
	for i := 0; i < place; i++ {
		older := redis.Z{Score: float64(now.Add(time.Duration(i-place) * time.Millisecond).UnixMilli()), Member: fmt.Sprintf("older-%d", i)}
		if err := rdb.ZAdd(ctx, keys[1], older).Err(); err != nil {
			t.Fatal(err)
		}
	}
	w := &WaitError{API: APIBitbucket, Budget: "requests", RetryAfter: time.Minute, Requests: requests, Per: per, limiter: limiter}
	if err := b.Queue(ctx, fmt.Sprintf("task-%d", place), now, w); err != nil {
		t.Fatal(err)
	}
	return w
}

// A burst spends the budget before anyone waits, and the tasks it served
// were never counted (Done costs no round trip while nobody waits): their
// calls do not make the few served after the queue began look like tasks of
// many requests. Before, 1,000 such calls over 5 tasks served took every task
// for four requests, and the last of a burst waited four times too long.
func TestBacklogCountsOnlyCallsSinceTheQueueBegan(t *testing.T) {
	r := redistest.New(t)
	rdb := r.Client(t)
	const limiter, period, limit = "bitbucket:0123456789ab", time.Hour, 1000
	window := time.Duration(leastWindowMs(period)) * time.Millisecond
	now := burstBefore(t, rdb, r.Prefix, limiter, limit, 10*time.Minute)
	b := NewBacklog(rdb, r.Prefix)
	keys := b.keys(limiter + ":requests")
	addAt(t, rdb, keys[3], "served", 5, now.Add(-30*time.Second))
	// One request a task: place 3,000 comes to the first request three
	// budgets on, three windows after the oldest call leaves.
	want := 4*window - 10*time.Minute
	if w := queueBehind(t, rdb, b, limiter, limit, period, 3000, now); w.RetryAfter > want || w.RetryAfter < want-time.Second {
		t.Errorf("retry after %s; want %s", w.RetryAfter, want)
	}
}

// Right after a refill, the tasks that came back have made their calls but
// are not served yet: the calls of the last second are not counted, nor
// the budget's old calls from before the queue began.
func TestBacklogLeavesOutCallsStillUnderWay(t *testing.T) {
	r := redistest.New(t)
	rdb, ctx := r.Client(t), context.Background()
	const limiter, period, limit = "bitbucket:0123456789ab", time.Hour, 1000
	window := time.Duration(leastWindowMs(period)) * time.Millisecond
	b := NewBacklog(rdb, r.Prefix)
	keys := b.keys(limiter + ":requests")
	// The queue began ten minutes ago.
	w := &WaitError{API: APIBitbucket, Budget: "requests", RetryAfter: time.Minute, Requests: limit, Per: period, limiter: limiter}
	if err := b.Queue(ctx, "first", time.Now(), w); err != nil {
		t.Fatal(err)
	}
	now := burstBefore(t, rdb, r.Prefix, limiter, 300, 100*time.Millisecond)
	if err := rdb.ZRem(ctx, keys[1], "first").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, keys[5], limiter+":requests", now.Add(-10*time.Minute).UnixMilli()).Err(); err != nil {
		t.Fatal(err)
	}
	// 100 tasks served 4 minutes ago made 200 calls 5 minutes ago.
	addAt(t, rdb, limiterKey(r.Prefix, limiter)+":requests", "settled", 200, now.Add(-5*time.Minute))
	addAt(t, rdb, keys[3], "served", 100, now.Add(-4*time.Minute))
	// (200 + 20) / (100 + 20) requests a task: place 600 comes to the 1,100th
	// request, the 101st of the next budget, which the window does not
	// hold. Counting the 300 calls under way (4 requests a task, the cap)
	// made it two windows.
	if w := queueBehind(t, rdb, b, limiter, limit, period, 600, now); w.RetryAfter > window || w.RetryAfter < window-time.Second {
		t.Errorf("retry after %s; want %s", w.RetryAfter, window)
	}
}

// burstBefore writes n calls made ago into the limiter's requests window and
// returns Redis's time.
func burstBefore(t *testing.T, rdb redis.UniversalClient, prefix, limiter string, n int, ago time.Duration) time.Time {
	t.Helper()
	now, err := rdb.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	addAt(t, rdb, limiterKey(prefix, limiter)+":requests", "burst", n, now.Add(-ago))
	return now
}

// addAt adds n members named name-0, name-1, … scored at a time to a sorted
// set: calls to a budget's window, tasks to a queue's done set.
func addAt(t *testing.T, rdb redis.UniversalClient, key, name string, n int, at time.Time) {
	t.Helper()
	members := make([]redis.Z, n)
	for k := range members {
		members[k] = redis.Z{Score: float64(at.UnixMilli()), Member: fmt.Sprintf("%s-%d", name, k)}
	}
	if err := rdb.ZAdd(context.Background(), key, members...).Err(); err != nil {
		t.Fatal(err)
	}
}

// A task served without waiting spent what the waiting tasks wait for, or
// nothing: every queue counts it as served, for the requests a task takes.
// While no queue exists it costs no write at all.
func TestTaskServedWithoutWaitingCountsInEveryQueue(t *testing.T) {
	r := redistest.New(t)
	rdb, ctx := r.Client(t), context.Background()
	b := NewBacklog(rdb, r.Prefix)
	if err := b.Done(ctx, "before-any-queue"); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Exists(ctx, b.keys("bot:requests")[3], b.keys("bot:invitations")[3]).Result(); err != nil || n != 0 {
		t.Fatalf("done sets before any queue: %d, %v; want none", n, err)
	}
	for _, budget := range []string{"requests", "invitations"} {
		w := &WaitError{API: APIBitbucket, Budget: budget, RetryAfter: time.Minute, Requests: 10, Per: time.Hour, limiter: "bot"}
		if err := b.Queue(ctx, "waits-for-"+budget, time.Now(), w); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Done(ctx, "never-waited"); err != nil {
		t.Fatal(err)
	}
	if err := b.Done(ctx, "waits-for-requests"); err != nil {
		t.Fatal(err)
	}
	for budget, want := range map[string][]string{
		"requests":    {"never-waited", "waits-for-requests"},
		"invitations": {"never-waited"},
	} {
		if got, err := rdb.ZRange(ctx, b.keys("bot:" + budget)[3], 0, -1).Result(); err != nil || !slices.Equal(sorted(got), want) {
			t.Errorf("served in the %s queue: %v, %v; want %v", budget, got, err, want)
		}
	}
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

// Right after a refill the window holds the new burst, still settling, and
// the few calls made since the last one: 15 calls over 7 tasks, which the
// prior of one-request tasks outweighs (1.3 requests a task). Status takes
// instead the last measure a Queue kept while no burst was settling (2.5
// requests a task here: a task's calls settle before the task is served,
// so a measure taken mid-burst runs high), and the ETA of 1,000 waiting
// tasks stays three windows, not two.
func TestStatusRightAfterARefillKeepsTheLastGoodMeasure(t *testing.T) {
	r := redistest.New(t)
	rdb, ctx := r.Client(t), context.Background()
	const limiter, period, limit = "bitbucket:0123456789ab", time.Hour, 1000
	const name = limiter + ":requests"
	window := time.Duration(leastWindowMs(period)) * time.Millisecond
	b := NewBacklog(rdb, r.Prefix)
	keys := b.keys(name)
	calls := limiterKey(r.Prefix, limiter) + ":requests"
	queue := func(id string) {
		t.Helper()
		w := &WaitError{API: APIBitbucket, Budget: "requests", RetryAfter: time.Minute, Requests: limit, Per: period, limiter: limiter}
		if err := b.Queue(ctx, id, time.Now(), w); err != nil {
			t.Fatal(err)
		}
	}
	kept := func(want string) {
		t.Helper()
		if got, err := rdb.HGet(ctx, keys[5], measureField(name)).Result(); err != nil || got != want {
			t.Fatalf("measure kept = %q, %v; want %s (thousandths of a request per task)", got, err, want)
		}
	}
	queue("first")
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, keys[5], name, now.Add(-3*time.Hour).UnixMilli()).Err(); err != nil {
		t.Fatal(err)
	}
	// Half an hour ago 200 tasks made 500 calls: a Queue keeps that measure.
	addAt(t, rdb, calls, "earlier", 500, now.Add(-30*time.Minute))
	addAt(t, rdb, keys[3], "earlier", 200, now.Add(-29*time.Minute))
	queue("second")
	kept("2500")
	// Mid-burst: 100 calls have settled but 10 of their tasks are served,
	// and 300 calls are under way. Nothing is kept.
	addAt(t, rdb, calls, "settling", 100, now.Add(-2*time.Second))
	addAt(t, rdb, keys[3], "settling", 10, now.Add(-2*time.Second))
	addAt(t, rdb, calls, "under-way", 300, now.Add(-200*time.Millisecond))
	queue("third")
	kept("2500")
	// The refill: all of that left the window; 15 calls of 7 tasks since,
	// and a burst half a second ago fills the window again. 1,000 wait.
	if err := rdb.Del(ctx, calls, keys[3]).Err(); err != nil {
		t.Fatal(err)
	}
	addAt(t, rdb, calls, "since", 15, now.Add(-20*time.Minute))
	addAt(t, rdb, keys[3], "since", 7, now.Add(-19*time.Minute))
	addAt(t, rdb, calls, "burst", limit-15, now.Add(-500*time.Millisecond))
	addAt(t, rdb, keys[2], "waiting", limit-3, now.Add(time.Minute))
	st, err := b.Status(ctx)
	if err != nil || len(st) != 1 || st[0].Waiting != limit {
		t.Fatalf("status = %+v, %v; want %d waiting", st, err, limit)
	}
	// 2.5 requests a task: the last of 1,000 comes to the 2,498th request
	// ahead, two budgets on, which a call of the burst frees (a window from
	// half a second ago), then two windows.
	want := 3*window - 500*time.Millisecond
	if eta := st[0].ETA; eta > want+time.Second || eta < want-time.Second {
		t.Errorf("ETA %s; want %s (with one request a task for a prior: %s)", eta, want, 2*window-500*time.Millisecond)
	}
}

// A read keeps a good measure too (the metric is read every scrape, and
// tasks mostly queue while a burst settles), but not one taken mid-burst,
// and mid-burst the ETA takes the kept measure alone.
func TestStatusKeepsAGoodMeasure(t *testing.T) {
	r := redistest.New(t)
	rdb, ctx := r.Client(t), context.Background()
	const limiter, period, limit = "bitbucket:0123456789ab", time.Hour, 1000
	const name = limiter + ":requests"
	b := NewBacklog(rdb, r.Prefix)
	keys := b.keys(name)
	calls := limiterKey(r.Prefix, limiter) + ":requests"
	w := &WaitError{API: APIBitbucket, Budget: "requests", RetryAfter: time.Minute, Requests: limit, Per: period, limiter: limiter}
	if err := b.Queue(ctx, "waiting", time.Now(), w); err != nil {
		t.Fatal(err)
	}
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, keys[5], name, now.Add(-3*time.Hour).UnixMilli()).Err(); err != nil {
		t.Fatal(err)
	}
	read := func(want string) time.Duration {
		t.Helper()
		st, err := b.Status(ctx)
		if err != nil || len(st) != 1 {
			t.Fatalf("status = %+v, %v", st, err)
		}
		if got, _ := rdb.HGet(ctx, keys[5], measureField(name)).Result(); got != want {
			t.Fatalf("measure kept = %q; want %q", got, want)
		}
		return st[0].ETA
	}
	read("") // nothing served yet
	addAt(t, rdb, calls, "earlier", 600, now.Add(-30*time.Minute))
	addAt(t, rdb, keys[3], "earlier", 200, now.Add(-29*time.Minute))
	read("3000")
	addAt(t, rdb, calls, "settling", 100, now.Add(-2*time.Second))
	addAt(t, rdb, calls, "under-way", 300, now.Add(-200*time.Millisecond))
	// 667 wait: at 3 requests a task the last comes to the 1,999th request
	// ahead, a window after a call under way leaves; blending in the calls
	// whose tasks are not served yet, (700 + 20 × 3) / (200 + 20) ≈ 3.45,
	// would make it the 2,300th, three windows after the earlier calls.
	addAt(t, rdb, keys[2], "more", 666, now.Add(time.Minute))
	window := time.Duration(leastWindowMs(period)) * time.Millisecond
	want := 2*window - 200*time.Millisecond
	if eta := read("3000"); eta > want+time.Second || eta < want-time.Second { // (600 + 100) / 200 would run high
		t.Errorf("ETA mid-burst %s; want %s", eta, want)
	}
}
