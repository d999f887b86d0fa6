package ratelimit

import (
	"context"
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
