package app_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/internal/redistest"
	"github.com/autoinvite/autoinvite/internal/testenv"
	"github.com/autoinvite/autoinvite/ledger"
	"github.com/autoinvite/autoinvite/worker"
)

// The whole lifecycle on a real three-node Redis Cluster: every multi-key
// operation (ledger MULTI, breaker and limiter scripts, Asynq) stays in one
// slot, or the cluster would answer CROSSSLOT.
func TestRedisClusterKeyLayout(t *testing.T) {
	addrs := redistest.StartCluster(t)
	clock := testenv.NewClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	e := testenv.New(t, testenv.WithRedisCluster(addrs), testenv.WithClock(clock))
	if _, ok := e.App.Redis().(*redis.ClusterClient); !ok {
		t.Fatalf("app uses %T, want a cluster client", e.App.Redis())
	}
	user := func(id, email string) map[string]any {
		return map[string]any{"accountId": id, "accountType": "atlassian", "emailAddress": email}
	}
	assertAccepted(t, e.Webhook("user_created", "c1", user(fake.DemoMemberAccountID, "mia@acme.com")), "accepted")
	assertAccepted(t, e.Webhook("user_created", "c2", user(fake.DemoNewcomerAccountID, "noah@acme.com")), "accepted")
	e.WaitIdle()
	clock.Advance(169 * time.Hour)
	sum, err := e.App.Worker().SweepOnce(context.Background(), "sweep")
	if err != nil || sum[worker.OutcomeResent] != 1 {
		t.Fatalf("sweep = %+v, %v; want one re-send", sum, err)
	}
	assertAccepted(t, e.Webhook("user_deleted", "c3", map[string]any{"accountId": fake.DemoMemberAccountID}), "accepted")
	e.WaitIdle()
	if got := e.Entry("acme", "acct:"+fake.DemoMemberAccountID); got.Status != ledger.StatusRevoked {
		t.Fatalf("member after deactivation = %+v", got)
	}
	if got := e.Entry("acme", "acct:"+fake.DemoNewcomerAccountID); got.Status != ledger.StatusInvited || got.Invitations[0].Resends != 1 {
		t.Fatalf("newcomer = %+v", got)
	}

	// Key layout: all ledger keys in one slot; each limiter's keys in one slot.
	cc := e.App.Redis().(*redis.ClusterClient)
	ctx := context.Background()
	slots := map[string]map[int64]bool{}
	var mu sync.Mutex // ForEachMaster visits the nodes concurrently
	err = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		iter := node.Scan(ctx, 0, "{"+e.Redis.Prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			key := iter.Val()
			group := "ledger"
			if strings.HasPrefix(key, "{"+e.Redis.Prefix+":rl:") {
				group = key[:strings.Index(key, "}")+1]
			}
			slot, err := node.ClusterKeySlot(ctx, key).Result()
			if err != nil {
				return err
			}
			mu.Lock()
			if slots[group] == nil {
				slots[group] = map[int64]bool{}
			}
			slots[group][slot] = true
			mu.Unlock()
		}
		return iter.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(slots["ledger"]) != 1 || len(slots) < 2 {
		t.Fatalf("slots by key group = %v: want the ledger in exactly one slot and limiter keys present", slots)
	}
	for group, s := range slots {
		if len(s) != 1 {
			t.Fatalf("%s spans %d slots", group, len(s))
		}
	}
}

// Through Redis Sentinel: the service finds the master by name, for the queue
// and the ledger alike.
func TestRedisSentinel(t *testing.T) {
	addr := redistest.StartSentinel(t, "autoinvite-master")
	e := testenv.New(t, testenv.WithRedisSentinel("autoinvite-master", addr))
	assertAccepted(t, e.Webhook("user_created", "s1", map[string]any{"accountId": fake.DemoMemberAccountID, "accountType": "atlassian", "emailAddress": "mia@acme.com"}), "accepted")
	e.WaitIdle()
	if got := e.Entry("acme", "acct:"+fake.DemoMemberAccountID); got == nil || got.Status != ledger.StatusGranted {
		t.Fatalf("ledger through Sentinel = %+v", got)
	}
}
