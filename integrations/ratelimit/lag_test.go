package ratelimit_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-resty/resty/v2"

	"github.com/autoinvite/autoinvite/integrations/ratelimit"
)

// Atlassian counts a call when it arrives, the limiter when it spends it: a
// call answered 300 ms after its spend may have arrived that late, so every
// process's window grows by that lag (here 1.3 s instead of 1.002 s), and
// no window at Atlassian sees more than the budget. Before any lag is seen
// the window is the period plus 0.2%.
func TestObservedLagWidensEveryProcessWindow(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay time.Duration
		min   time.Duration // least wait of the third call
		max   time.Duration
	}{
		{"fast answers", 0, 500 * time.Millisecond, 1010 * time.Millisecond},
		{"answers 300ms late", 300 * time.Millisecond, 950 * time.Millisecond, 1310 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb, prefix := client(t)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(tc.delay)
				w.WriteHeader(http.StatusNoContent)
			}))
			defer srv.Close()
			budget := []ratelimit.Budget{{Name: "requests", Requests: 2, Per: time.Second}}
			opts := ratelimit.Options{API: "bitbucket", Credential: "c", Prefix: prefix, Budgets: budget, MaxInPlaceWait: -1}
			a, b := ratelimit.New(rdb, opts), ratelimit.New(rdb, opts) // two processes
			c := resty.New().SetBaseURL(srv.URL)
			a.Install(c)
			if _, err := c.R().Get("/x"); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if err := b.Take(ctx, "GET", "/x"); err != nil {
				t.Fatal(err)
			}
			w, ok := ratelimit.AsWait(b.Take(ctx, "GET", "/x"))
			if !ok || w.RetryAfter < tc.min || w.RetryAfter > tc.max {
				t.Fatalf("third call: %v, want a wait in [%s, %s]", w, tc.min, tc.max)
			}
		})
	}
}
