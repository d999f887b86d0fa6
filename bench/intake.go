package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hibiken/asynq"

	"github.com/autoinvite/autoinvite/app"
	"github.com/autoinvite/autoinvite/jobs"
)

const senders = 64

// benchIntake: signed webhooks per second and latency through autoinvite's
// intake, against the limit: a handler that only reads the body and enqueues.
func benchIntake(ctx context.Context, env *benchEnv) error {
	hooks := signups(env.o.requests, accountID)
	queue := jobs.EventsQueue(keyPrefix)

	// The limit uses asynq's client as a minimal service would: default options.
	opt, err := asynq.ParseRedisURI(env.redisURL)
	if err != nil {
		return err
	}
	client := asynq.NewClient(opt)
	defer client.Close()
	minimal := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err == nil {
			_, err = client.EnqueueContext(r.Context(), asynq.NewTask(jobs.TypeUserEvent, body),
				asynq.TaskID(r.Header.Get("X-Atlassian-Webhook-Identifier")), asynq.Queue(queue))
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	minURL, stopMin, err := serve(minimal)
	if err != nil {
		return err
	}
	defer stopMin()

	a, err := env.newApp("http://127.0.0.1:1", benchRules, app.Roles{Intake: true}, nil)
	if err != nil {
		return err
	}
	defer a.Close()
	aiURL, stopAI, err := serve(a.Handler())
	if err != nil {
		return err
	}
	defer stopAI()

	// Warm both up (connections, JIT-free but caches and pools), then
	// alternate three rounds each so drift hits both alike.
	env.flush(ctx)
	load(minURL+"/", hooks[:min(2000, len(hooks))], senders)
	env.flush(ctx)
	load(aiURL+"/webhooks/jira", hooks[:min(2000, len(hooks))], senders)
	var minRates, aiRates, minP50, aiP50, minP99, aiP99 []float64
	for round := 0; round < 3; round++ {
		env.flush(ctx)
		m := load(minURL+"/", hooks, senders)
		env.flush(ctx)
		r := load(aiURL+"/webhooks/jira", hooks, senders)
		if m.errors+r.errors > 0 {
			return fmt.Errorf("round %d: %d minimal and %d autoinvite requests failed", round, m.errors, r.errors)
		}
		minRates, aiRates = append(minRates, m.rate()), append(aiRates, r.rate())
		minP50, aiP50 = append(minP50, float64(m.p50)), append(aiP50, float64(r.p50))
		minP99, aiP99 = append(minP99, float64(m.p99)), append(aiP99, float64(r.p99))
	}
	env.flush(ctx)
	bare := bareEnqueue(ctx, client, queue, len(hooks))
	env.flush(ctx)

	mr, ar := median(minRates), median(aiRates)
	mp99, ap99 := median(minP99), median(aiP99)
	fmt.Printf("%d signed webhooks per run, %d concurrent senders over loopback, median of 3 rounds\n\n", len(hooks), senders)
	fmt.Println("| handler | webhooks/s | p50 | p99 |")
	fmt.Println("| --- | ---: | ---: | ---: |")
	fmt.Printf("| minimal net/http + Enqueue (the limit) | %.0f | %s | %s |\n", mr, ms(time.Duration(median(minP50))), ms(time.Duration(mp99)))
	fmt.Printf("| autoinvite intake | %.0f | %s | %s |\n", ar, ms(time.Duration(median(aiP50))), ms(time.Duration(ap99)))
	fmt.Printf("| bare asynq Enqueue, %d goroutines, no HTTP | %.0f | | |\n", senders, bare)
	fmt.Printf("\nrate ratio %.2f (goal >= 0.80), p99 ratio %.2f (goal <= 1.50): %s\n", ar/mr, ap99/mp99, verdict(ar/mr >= 0.8 && ap99/mp99 <= 1.5))
	return nil
}

// bareEnqueue is the enqueue rate with no HTTP at all.
func bareEnqueue(ctx context.Context, client *asynq.Client, queue string, n int) float64 {
	payload := signups(1, accountID)[0].body
	start := time.Now()
	fanOut(n, senders, func(_, i int) {
		client.EnqueueContext(ctx, asynq.NewTask(jobs.TypeUserEvent, payload), asynq.TaskID(fmt.Sprintf("bare-%d", i)), asynq.Queue(queue))
	})
	return float64(n) / time.Since(start).Seconds()
}

func verdict(ok bool) string {
	if ok {
		return "MET"
	}
	return "NOT MET"
}

// noRateLimits turns the Atlassian budgets off: the benchmarks measure autoinvite.
const noRateLimits = `
rate_limits:
  bitbucket: {requests: 0}
  bitbucket_invitations: {requests: 0}
  jira: {requests: 0}
`

// benchRules: everyone at acme.com gets developers; everyone gets readers.
const benchRules = noRateLimits + `
workspaces:
  - workspace: acme
    rules:
      - name: staff
        match: {email_domains: [acme.com]}
        groups: [developers]
      - name: everyone
        match: {}
        groups: [readers]
`
