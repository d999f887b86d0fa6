package ratelimit_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/autoinvite/autoinvite/integrations/ratelimit"
	"github.com/autoinvite/autoinvite/internal/redistest"
)

func client(t *testing.T) (redis.UniversalClient, string) {
	r := redistest.New(t) // its cleanup removes the limiter's keys too
	return r.Client(t), r.Prefix
}

// Three processes (limiters) on one credential spend one budget between them.
func TestThreeLimitersShareOneBudget(t *testing.T) {
	rdb, prefix := client(t)
	budget := []ratelimit.Budget{{Name: "requests", Requests: 10, Per: time.Hour}}
	var waits atomic.Int64
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		l := ratelimit.New(rdb, ratelimit.Options{API: "bitbucket", Credential: "bot@acme.com\x00token", Prefix: prefix, Budgets: budget,
			OnWait: func(string) { waits.Add(1) }})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				err := l.Take(context.Background(), "GET", "/2.0/workspaces/{workspace}/members/{member}")
				if w, ok := ratelimit.AsWait(err); ok {
					if w.RetryAfter <= 0 || w.RetryAfter > time.Hour+time.Hour/500+time.Millisecond { // until the first call leaves the window
						t.Errorf("retry after %s", w.RetryAfter)
					}
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				allowed.Add(1)
			}
		}()
	}
	wg.Wait()
	if allowed.Load() != 10 || waits.Load() != 20 {
		t.Fatalf("allowed %d, waits %d: want 10 and 20", allowed.Load(), waits.Load())
	}
	// Another credential has its own budget.
	other := ratelimit.New(rdb, ratelimit.Options{API: "bitbucket", Credential: "other", Prefix: prefix, Budgets: budget})
	if err := other.Take(context.Background(), "GET", "/x"); err != nil {
		t.Fatalf("other credential: %v", err)
	}
}

func TestInvitationBudgetCountsOnlyInvitations(t *testing.T) {
	rdb, prefix := client(t)
	l := ratelimit.New(rdb, ratelimit.Options{API: "bitbucket", Credential: "c", Prefix: prefix, Budgets: []ratelimit.Budget{
		{Name: "invitations", Requests: 1, Per: time.Minute, Match: func(m, p string) bool { return m == "PUT" && p == "/1.0/users/{workspace}/invitations" }},
	}})
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if err := l.Take(ctx, "GET", "/2.0/workspaces/{workspace}/members/{member}"); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Take(ctx, "PUT", "/1.0/users/{workspace}/invitations"); err != nil {
		t.Fatal(err)
	}
	if _, ok := ratelimit.AsWait(l.Take(ctx, "PUT", "/1.0/users/{workspace}/invitations")); !ok {
		t.Fatal("second invitation within the minute must wait")
	}
}

// The budget is a rolling window, as Atlassian counts it: once spent, the next
// call waits for the oldest to leave the window, not for a token to drip in.
func TestBudgetIsARollingWindow(t *testing.T) {
	rdb, prefix := client(t)
	l := ratelimit.New(rdb, ratelimit.Options{API: "bitbucket", Credential: "c", Prefix: prefix,
		Budgets: []ratelimit.Budget{{Name: "requests", Requests: 3, Per: 20 * time.Second}}})
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := l.Take(ctx, "GET", "/x"); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	w, ok := ratelimit.AsWait(l.Take(ctx, "GET", "/x"))
	// A token bucket refilling 3 per 20 s would answer about 6.7 s.
	if !ok || w.RetryAfter < 19*time.Second || w.RetryAfter > 20100*time.Millisecond { // the window plus its 0.2% margin
		t.Fatalf("4th call: %v, want a wait of about 20s (until the first call leaves the window)", w)
	}
}

// A short wait is slept through inside the call instead of failing it.
func TestShortWaitsAreWaitedInPlace(t *testing.T) {
	rdb, prefix := client(t)
	l := ratelimit.New(rdb, ratelimit.Options{API: "bitbucket", Credential: "c", Prefix: prefix, MaxInPlaceWait: time.Second,
		Budgets: []ratelimit.Budget{{Name: "requests", Requests: 2, Per: 300 * time.Millisecond}}})
	ctx := context.Background()
	start := time.Now()
	for i := 0; i < 4; i++ {
		if err := l.Take(ctx, "GET", "/x"); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	// Calls 3 and 4 had to wait for calls 1 and 2 to leave the window.
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("4 calls on a budget of 2 per 300ms took %s", took)
	}
}

func TestThrottledSlowsEveryoneDown(t *testing.T) {
	rdb, prefix := client(t)
	a := ratelimit.New(rdb, ratelimit.Options{API: "bitbucket", Credential: "c", Prefix: prefix})
	b := ratelimit.New(rdb, ratelimit.Options{API: "bitbucket", Credential: "c", Prefix: prefix})
	ctx := context.Background()
	if d := a.Throttled(ctx, 3*time.Second); d != 3*time.Second {
		t.Fatalf("Retry-After must be honoured: %s", d)
	}
	w, ok := ratelimit.AsWait(b.Take(ctx, "GET", "/x"))
	if !ok || w.Budget != "429 back-off" || w.RetryAfter <= 2*time.Second || w.RetryAfter > 3*time.Second {
		t.Fatalf("other process after a 429: %+v", w)
	}
	// Without Retry-After (Bitbucket Cloud), back-offs grow per 429 in a row.
	first := a.Throttled(ctx, 0)
	second := a.Throttled(ctx, 0)
	third := a.Throttled(ctx, 0)
	if !(first < second && second < third) || first < 900*time.Millisecond || first > 1100*time.Millisecond {
		t.Fatalf("back-offs %s %s %s", first, second, third)
	}
}

func TestBackoffIsCappedAndJittered(t *testing.T) {
	seen := map[time.Duration]bool{}
	for i := 0; i < 50; i++ {
		d := ratelimit.Backoff(40, time.Second, time.Minute)
		if d < 54*time.Second || d > 66*time.Second {
			t.Fatalf("backoff %s outside 60s ±10%%", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Fatal("no jitter")
	}
}

// A class budget is a share of the whole: calls of the class spend both
// (and wait when the share is spent), other calls only the whole budget.
func TestClassBudgetIsAShare(t *testing.T) {
	rdb, prefix := client(t)
	ctx := context.Background()
	l := ratelimit.New(rdb, ratelimit.Options{API: "bitbucket", Credential: "bot", Prefix: prefix, MaxInPlaceWait: -1,
		Budgets: []ratelimit.Budget{{Name: "requests", Requests: 10, Per: time.Hour},
			{Name: "early-checks", Requests: 2, Per: time.Hour, Class: ratelimit.ClassEarlyCheck}}})
	early := ratelimit.WithClass(ctx, ratelimit.ClassEarlyCheck)
	for i := 0; i < 2; i++ {
		if err := l.Take(early, "GET", "/x"); err != nil {
			t.Fatalf("early check %d: %v", i, err)
		}
	}
	if w, ok := ratelimit.AsWait(l.Take(early, "GET", "/x")); !ok || w.Budget != "early-checks" {
		t.Fatalf("third early check: %v, want a wait for the early-checks share", w)
	}
	for i := 0; i < 8; i++ {
		if err := l.Take(ctx, "GET", "/x"); err != nil {
			t.Fatalf("signup call %d: %v (the share is not theirs)", i, err)
		}
	}
	if w, ok := ratelimit.AsWait(l.Take(ctx, "GET", "/x")); !ok || w.Budget != "requests" {
		t.Fatalf("11th call: %v, want a wait for the whole budget", w)
	}
}

// Atlassian counts Basic-auth calls per user and Bearer calls per token: two
// API tokens of one account (a rotated one, or one per deployment) spend one
// budget, while two access tokens have one each.
func TestBudgetIsPerUserWithBasicAuthAndPerTokenWithBearer(t *testing.T) {
	rdb, prefix := client(t)
	ctx := context.Background()
	limiter := func(credential string) *ratelimit.Limiter {
		return ratelimit.New(rdb, ratelimit.Options{API: "bitbucket", Credential: credential, Prefix: prefix, MaxInPlaceWait: -1,
			Budgets: []ratelimit.Budget{{Name: "requests", Requests: 1, Per: time.Hour}}})
	}
	if err := limiter(ratelimit.CredentialOf("bot@acme.com", "")).Take(ctx, "GET", "/x"); err != nil {
		t.Fatal(err)
	}
	if _, ok := ratelimit.AsWait(limiter(ratelimit.CredentialOf(" Bot@ACME.com", "")).Take(ctx, "GET", "/x")); !ok {
		t.Fatal("another API token of the same account got a budget of its own")
	}
	if err := limiter(ratelimit.CredentialOf("", "access-token-1")).Take(ctx, "GET", "/x"); err != nil {
		t.Fatalf("first access token: %v", err)
	}
	if err := limiter(ratelimit.CredentialOf("", "access-token-2")).Take(ctx, "GET", "/x"); err != nil {
		t.Fatalf("second access token: %v; want a budget of its own", err)
	}
	if _, ok := ratelimit.AsWait(limiter(ratelimit.CredentialOf("", "access-token-1")).Take(ctx, "GET", "/x")); !ok {
		t.Fatal("the first access token spent its budget twice")
	}
}

// The limiter keeps call times in whole ms, rounded down: two calls 59.9 ms
// apart can be 60 ms apart on record. A budget of one call per 60 ms (a
// minute on a compressed clock, whose 0.2% margin is 0.12 ms) still refuses
// the second, and allows a call a window and its margins later.
func TestWindowHoldsWhenCallTimesAreRoundedToMilliseconds(t *testing.T) {
	r := redistest.New(t)
	if r.Mini == nil {
		t.Skip("sets the embedded Redis's clock")
	}
	l := ratelimit.New(r.Client(t), ratelimit.Options{API: "bitbucket", Credential: "c", Prefix: r.Prefix, MaxInPlaceWait: -1,
		Budgets: []ratelimit.Budget{{Name: "invitations", Requests: 1, Per: 60 * time.Millisecond}}})
	ctx := context.Background()
	first := time.UnixMilli(1_800_000_000_000).Add(999 * time.Microsecond) // on record: 1,800,000,000,000
	for _, step := range []struct {
		after   time.Duration
		allowed bool
	}{
		{0, true},
		{59900 * time.Microsecond, false}, // on record 60 ms later
		{62 * time.Millisecond, true},
	} {
		r.Mini.SetTime(first.Add(step.after))
		err := l.Take(ctx, "PUT", "/1.0/users/{workspace}/invitations")
		if _, waits := ratelimit.AsWait(err); (err == nil) != step.allowed || (err != nil && !waits) {
			t.Errorf("a call %s after the first: %v; want allowed %t", step.after, err, step.allowed)
		}
	}
}
