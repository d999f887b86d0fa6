package main

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/autoinvite/autoinvite/app"
	"github.com/autoinvite/autoinvite/integrations/fake"
)

// compression is how much faster than real time the budget runs: Bitbucket's
// 1,000 requests per rolling hour become 1,000 per 3.6 s.
const compression = 1000

// benchBudget: 5,000 signups against the real Bitbucket budget on a fast
// clock. The budget must be used (>= 95%) and never exceeded in any window.
func benchBudget(ctx context.Context, env *benchEnv) error {
	env.flush(ctx)
	const people = 5000
	window := time.Hour / compression
	f := fake.New()
	f.AddWorkspace("acme", "developers", "readers")
	for i := 0; i < people; i++ {
		f.AddMember("acme", accountID(i))
	}
	fakeURL, stop, err := serveFake(f)
	if err != nil {
		return err
	}
	defer stop()
	rules := fmt.Sprintf(`
rate_limits:
  bitbucket: {requests: 1000, per: %s}
  bitbucket_invitations: {requests: 100, per: %s}
  jira: {requests: 0}
workspaces:
  - workspace: acme
    rules:
      - {name: staff, match: {email_domains: [acme.com]}, groups: [developers]}
      - {name: everyone, match: {}, groups: [readers]}
`, window, time.Minute/compression)
	a, err := env.newApp(fakeURL, rules, app.AllRoles, func(o *app.Options) {
		o.AtlassianTransport = f.RoundTripper()
		o.PollInterval = 50 * time.Millisecond
		o.RetryDelay = app.DefaultRetryDelay // the service's, unchanged
	})
	if err != nil {
		return err
	}
	defer a.Close()
	hooks := signups(people, accountID)
	took, err := env.queueThenDrain(a, people, func(i int) string { return hooks[i].deliveryID }, 10*time.Minute)
	if err != nil {
		return err
	}
	var at []time.Time
	for _, c := range f.Calls() {
		at = append(at, c.At)
	}
	most := mostInWindow(at, window)
	span := at[len(at)-1].Sub(at[0])
	// The k-th thousand calls cannot start before the (k-1)-th has left the
	// window: the least span these calls can take.
	least := time.Duration(math.Ceil(float64(len(at))/1000)-1) * window
	used := float64(least) / float64(span)
	fmt.Printf("%d signups (workspace members, 2 groups: 2 adds each; their membership from one listing of the %d members), Bitbucket budget 1,000 requests per rolling hour on a clock %d× faster (1,000 per %s)\n\n", people, people, compression, window)
	fmt.Println("| calls | span | most calls in any rolling window | budget used | time |")
	fmt.Println("| ---: | ---: | ---: | ---: | ---: |")
	fmt.Printf("| %d | %s | %d of 1000 | %.1f%% | %s |\n", len(at), span.Round(time.Millisecond), most, 100*used, took.Round(time.Millisecond))
	fmt.Printf("\nbudget used >= 95%% and never exceeded: %s (budget used = the least span the budget allows for these calls, (⌈calls / 1000⌉ − 1) × window = %s, over the span)\n",
		verdict(used >= 0.95 && most <= 1000), least)
	return nil
}
