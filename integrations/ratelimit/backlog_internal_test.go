package ratelimit

import (
	"context"
	"fmt"
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
	window := period + period/500
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
	frees := func(k int) time.Duration { return time.Minute + time.Duration(6*k)*time.Minute + period/500 }
	for place, want := range []time.Duration{
		0: time.Millisecond, 1: time.Millisecond, // the two requests the window does not hold
		2: frees(0), 3: frees(1), 9: frees(7),
		10: window, 11: window, 12: frees(0) + window, // a window later
	} {
		if want == 0 {
			continue
		}
		w := &WaitError{API: APIBitbucket, Budget: "requests", RetryAfter: frees(0), Requests: 10, Per: period, limiter: limiter}
		// Arrivals in place order: place is the number of older tasks.
		for i := 0; i < place; i++ {
			older := &WaitError{API: APIBitbucket, Budget: "requests", RetryAfter: frees(0), Requests: 10, Per: period, limiter: limiter}
			if err := b.Queue(ctx, fmt.Sprintf("older-%d-%d", place, i), now.Add(time.Duration(-1000+i)*time.Second), older); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Queue(ctx, fmt.Sprintf("task-%d", place), now, w); err != nil {
			t.Fatal(err)
		}
		if w.Position != place || w.RetryAfter > want || w.RetryAfter < want-time.Second {
			t.Errorf("place %d: place %d, retry after %s; want %s", place, w.Position, w.RetryAfter, want)
		}
		if err := rdb.Del(ctx, b.keys(limiter+":requests")...).Err(); err != nil {
			t.Fatal(err)
		}
	}
}
