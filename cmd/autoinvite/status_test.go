package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/autoinvite/autoinvite/integrations/ratelimit"
)

// status shows the queue and, once tasks wait for a budget, how many, since
// when, the budget's use and when the last one's turn comes: five tasks
// behind a budget of 3 an hour, spent at once, go three at the refill (about
// 1h) and the last two when those three calls leave the window (about 2h).
func TestStatusCommand(t *testing.T) {
	c := newCLIEnv(t)
	c.e.App.StopWorkers()
	for i := 0; i < 2; i++ {
		c.e.Webhook("user_created", fmt.Sprintf("q%d", i), map[string]any{"accountId": fmt.Sprintf("5570:q%d", i), "accountType": "atlassian"})
	}
	before := c.ok("status")

	ctx := context.Background()
	opts, err := redis.ParseURL(c.e.Redis.URL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	l := ratelimit.New(rdb, ratelimit.Options{API: "bitbucket", Credential: "bot", Prefix: c.e.Redis.Prefix, MaxInPlaceWait: -1,
		Budgets: []ratelimit.Budget{{Name: "requests", Requests: 3, Per: time.Hour}}})
	for i := 0; i < 3; i++ {
		if err := l.Take(ctx, "GET", "/x"); err != nil {
			t.Fatal(err)
		}
	}
	spent, ok := ratelimit.AsWait(l.Take(ctx, "GET", "/x"))
	if !ok {
		t.Fatal("the budget is not spent")
	}
	b := ratelimit.NewBacklog(rdb, c.e.Redis.Prefix)
	for i := 0; i < 5; i++ {
		w := *spent
		if err := b.Queue(ctx, fmt.Sprintf("task-%d", i), t0cli.Add(time.Duration(i)*time.Minute), &w); err != nil {
			t.Fatal(err)
		}
	}
	out := strings.ReplaceAll(before+"\n"+c.ok("status"), c.e.Redis.Prefix, "PREFIX") // a prefix per test
	golden(t, "status", out)
}
