package ratelimit_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-resty/resty/v2"
	"github.com/redis/go-redis/v9"

	"github.com/autoinvite/autoinvite/integrations/ratelimit"
)

// spendCounter counts the limiter's round trips (its spend script runs).
type spendCounter struct{ n atomic.Int64 }

func (c *spendCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *spendCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name == "evalsha" || name == "eval" {
			c.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (c *spendCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// calls is how many calls the budget holds in its current window.
func calls(t *testing.T, rdb redis.UniversalClient, prefix, budget string) int64 {
	t.Helper()
	keys, err := rdb.Keys(context.Background(), "{"+prefix+":rl:*}:"+budget).Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("budget keys %v, %v", keys, err)
	}
	n, err := rdb.ZCard(context.Background(), keys[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

const addPath = "/1.0/groups/{workspace}/{group}/members/{member}"

// A member's three group adds spend the budget once; a phase that makes
// fewer calls than it announced gives the rest back.
func TestPhaseSpendsOnceForItsCalls(t *testing.T) {
	rdb, prefix := client(t)
	counter := &spendCounter{}
	rdb.AddHook(counter)
	l := ratelimit.New(rdb, ratelimit.Options{API: "bitbucket", Credential: "c", Prefix: prefix,
		Budgets: []ratelimit.Budget{{Name: "requests", Requests: 100, Per: time.Hour}}})
	if err := l.Take(context.Background(), "GET", "/2.0/workspaces/{workspace}/members/{member}"); err != nil {
		t.Fatal(err) // loads the script: its first run is two round trips
	}
	counter.n.Store(0)

	ctx, end := ratelimit.Phase(context.Background(), "bitbucket", 4)
	for i := range 3 {
		if err := l.Take(ctx, "PUT", addPath); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if got := counter.n.Load(); got != 1 {
		t.Fatalf("spend round trips = %d, want 1", got)
	}
	if got := calls(t, rdb, prefix, "requests"); got != 1+4 {
		t.Fatalf("budget holds %d calls during the phase, want 1+4 (spent ahead)", got)
	}
	end()
	if got := calls(t, rdb, prefix, "requests"); got != 1+3 {
		t.Fatalf("budget holds %d calls after the phase, want 1+the 3 made", got)
	}
	// Another API's phase does not cover this one's calls.
	jiraCtx, endJira := ratelimit.Phase(context.Background(), "jira", 5)
	defer endJira()
	if err := l.Take(jiraCtx, "PUT", addPath); err != nil {
		t.Fatal(err)
	}
	if got := calls(t, rdb, prefix, "requests"); got != 5 {
		t.Fatalf("budget holds %d calls, want 5", got)
	}
}

// A budget without room for the whole phase is spent call by call: the
// phase never lets more calls through than the budget allows.
func TestPhaseNeverExceedsTheBudget(t *testing.T) {
	rdb, prefix := client(t)
	l := ratelimit.New(rdb, ratelimit.Options{API: "bitbucket", Credential: "c", Prefix: prefix, MaxInPlaceWait: -1,
		Budgets: []ratelimit.Budget{{Name: "requests", Requests: 2, Per: time.Hour}}})
	ctx, end := ratelimit.Phase(context.Background(), "bitbucket", 3)
	defer end()
	for i := range 2 {
		if err := l.Take(ctx, "PUT", addPath); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	w, waiting := ratelimit.AsWait(l.Take(ctx, "PUT", addPath))
	if !waiting || w.Budget != "requests" {
		t.Fatalf("third call: %v, want a wait for the requests budget", w)
	}
	if got := calls(t, rdb, prefix, "requests"); got != 2 {
		t.Fatalf("budget holds %d calls, want 2", got)
	}
}

// After a 429 the calls spent ahead are given back and the phase's next
// call waits out the back-off like any other.
func TestPhaseYieldsToA429(t *testing.T) {
	rdb, prefix := client(t)
	l := ratelimit.New(rdb, ratelimit.Options{API: "bitbucket", Credential: "c", Prefix: prefix, MaxInPlaceWait: -1,
		Budgets: []ratelimit.Budget{{Name: "requests", Requests: 100, Per: time.Hour}}})
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if served.Add(1) == 2 {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	c := resty.New().SetBaseURL(srv.URL)
	l.Install(c)

	ctx, end := ratelimit.Phase(context.Background(), "bitbucket", 4)
	defer end()
	for i, want := range []int{http.StatusNoContent, http.StatusTooManyRequests} {
		resp, err := c.R().SetContext(ctx).Put("/1.0/groups/acme/g" + string(rune('a'+i)) + "/members/x")
		if err != nil || resp.StatusCode() != want {
			t.Fatalf("call %d: %v %v, want %d", i, resp.StatusCode(), err, want)
		}
	}
	if got := calls(t, rdb, prefix, "requests"); got != 2 {
		t.Fatalf("budget holds %d calls after the 429, want the 2 made", got)
	}
	_, err := c.R().SetContext(ctx).Put("/1.0/groups/acme/gc/members/x")
	if w, waiting := ratelimit.AsWait(err); !waiting || w.Budget != "429 back-off" {
		t.Fatalf("third call: %v, want the 429 back-off", err)
	}
	if served.Load() != 2 {
		t.Fatalf("server saw %d calls, want 2", served.Load())
	}
}
