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

	"github.com/autoinvite/autoinvite/internal/redistest"

	"github.com/autoinvite/autoinvite/integrations/ratelimit"
)

// Atlassian counts a call when it arrives, the limiter when it spends it: a
// call answered 300 ms after its spend may have arrived that late, so every
// process's window grows by that lag (here 40.3 s instead of 40.08 s, the
// period plus 0.2%), and no window at Atlassian sees more than the budget.
// The widening is at most 1% of the period. The lag runs from before the
// spend's round trip: Redis counts the call somewhere in it, so a spend
// whose reply comes back late (a loaded machine) widens the windows too.
func TestObservedLagWidensEveryProcessWindow(t *testing.T) {
	const delay = 300 * time.Millisecond
	for _, tc := range []struct {
		name   string
		per    time.Duration
		late   bool          // the server answers delay late (else the client waits as long)
		spend  bool          // the first spend's reply comes back delay late
		silent bool          // the server never answers: the client gives up after delay
		window time.Duration // the window the third call's wait implies, for a lag of delay (none for fast answers)
	}{
		{"fast answers", 40 * time.Second, false, false, false, 40080 * time.Millisecond},
		{"answers 300ms late", 40 * time.Second, true, false, false, 40300 * time.Millisecond},
		{"lag over 1% of the period", 10 * time.Second, true, false, false, 10100 * time.Millisecond},
		{"spend answered 300ms late", 40 * time.Second, false, true, false, 40300 * time.Millisecond},
		{"no answer within a 300ms timeout", 40 * time.Second, false, false, true, 40300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := redistest.New(t)
			rdb, prefix := r.Client(t), r.Prefix
			slow := r.Client(t) // the first process's connection, whose first reply is late
			if tc.spend {
				slow.AddHook(&lateReply{delay: delay})
			}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.late {
					time.Sleep(delay)
				}
				if tc.silent {
					<-r.Context().Done()
					return
				}
				w.WriteHeader(http.StatusNoContent)
			}))
			defer srv.Close()
			budget := []ratelimit.Budget{{Name: "requests", Requests: 2, Per: tc.per}}
			opts := ratelimit.Options{API: "bitbucket", Credential: "c", Prefix: prefix, Budgets: budget, MaxInPlaceWait: -1}
			a, b := ratelimit.New(slow, opts), ratelimit.New(rdb, opts) // two processes
			c := resty.New().SetBaseURL(srv.URL)
			if tc.silent {
				c.SetTimeout(delay)
			}
			a.Install(c)
			start := time.Now()
			if _, err := c.R().Get("/x"); (err != nil) != tc.silent {
				t.Fatalf("first call: %v", err)
			}
			firstCall := time.Since(start) // the most its lag can be
			if !tc.late && !tc.spend && !tc.silent {
				time.Sleep(delay)
			}
			ctx := context.Background()
			if err := b.Take(ctx, "GET", "/x"); err != nil {
				t.Fatal(err)
			}
			w, ok := ratelimit.AsWait(b.Take(ctx, "GET", "/x"))
			elapsed := time.Since(start)
			if !ok {
				t.Fatal("third call within the window must wait")
			}
			// The wait is the window less the time between the first and
			// the third spend, which is at least delay and at most elapsed.
			// The lag learnt is at least delay (but for fast answers) and at
			// most the whole first call, Redis's round trips included, which
			// a loaded machine stretches.
			windowOf := func(lag time.Duration) time.Duration {
				return min(max(tc.per+lag, tc.per+tc.per/500), tc.per+tc.per/100)
			}
			least := delay
			if !tc.late && !tc.spend && !tc.silent {
				least = 0
			}
			if windowOf(least) != tc.window {
				t.Fatalf("the table's window %s is not the window of a %s lag, %s", tc.window, least, windowOf(least))
			}
			low, high := w.RetryAfter+delay, w.RetryAfter+elapsed
			if low > windowOf(firstCall)+2*time.Millisecond || high < tc.window-2*time.Millisecond {
				t.Fatalf("third call waits %s: the window is in [%s, %s], want %s to %s", w.RetryAfter, low, high, tc.window, windowOf(firstCall))
			}
		})
	}
}

// lateReply delays the first script that ran (the first spend), as a
// loaded machine does: Redis ran it, the caller learns of it late.
type lateReply struct {
	delay time.Duration
	done  atomic.Bool
}

func (h *lateReply) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *lateReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err == nil && (cmd.Name() == "evalsha" || cmd.Name() == "eval") && h.done.CompareAndSwap(false, true) {
			time.Sleep(h.delay)
		}
		return err
	}
}

func (h *lateReply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
