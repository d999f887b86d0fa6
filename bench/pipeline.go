package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/hibiken/asynq"

	"github.com/autoinvite/autoinvite/app"
	"github.com/autoinvite/autoinvite/intake"
	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/jobs"
)

// benchPipeline: signups from queued webhook to done (membership check, group
// adds or invitation, ledger) against the in-process fake Atlassian with no
// rate limit, against asynq running the same number of no-op tasks with the
// same concurrency.
func benchPipeline(ctx context.Context, env *benchEnv) error {
	n := env.o.signups
	f := fake.New()
	f.AddWorkspace("acme", "developers", "readers")
	for i := 0; i < n; i += 2 { // half are members already: check + 2 adds; half get an invitation: check + invite
		f.AddMember("acme", accountID(i))
	}
	fakeURL, stopFake, err := serveFake(f)
	if err != nil {
		return err
	}
	defer stopFake()
	hooks := signups(n, accountID)

	// The limit: asynq and no-op handlers, same payloads, same concurrency.
	env.flush(ctx)
	concurrency := 10
	noop, err := noopDrain(ctx, env, hooks, concurrency)
	if err != nil {
		return err
	}

	env.flush(ctx)
	intakeOnly, err := env.newApp(fakeURL, benchRules, app.Roles{Intake: true}, nil)
	if err != nil {
		return err
	}
	for _, h := range hooks {
		req := httptest.NewRequest(http.MethodPost, "/webhooks/jira", bytes.NewReader(h.body))
		req.Header.Set(intake.HeaderSignature, h.signature)
		req.Header.Set(intake.HeaderDeliveryID, h.deliveryID)
		rec := httptest.NewRecorder()
		intakeOnly.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			return fmt.Errorf("intake answered %d: %s", rec.Code, rec.Body)
		}
	}
	intakeOnly.Close()
	worker, err := env.newApp(fakeURL, benchRules, app.Roles{Worker: true}, func(o *app.Options) { o.AtlassianTransport = f.RoundTripper() })
	if err != nil {
		return err
	}
	defer worker.Close()
	cpu0, rcpu0 := selfCPU(), env.redisCPU()
	if err := worker.StartWorkers(); err != nil {
		return err
	}
	took, err := env.waitProcessed(ctx, worker.Queue(), n, 5*time.Minute)
	if err != nil {
		return err
	}
	cpu, rcpu := selfCPU()-cpu0, env.redisCPU()-rcpu0
	calls := len(f.Calls())
	rate := float64(n) / took.Seconds()
	fmt.Printf("%d signups (half workspace members, half invited), worker.concurrency %d, fake Atlassian in process (no socket), no rate limit\n\n", n, concurrency)
	fmt.Println("| run | signups/s | time | CPU per signup (this process) | CPU per signup (redis-server) | Atlassian calls |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: |")
	fmt.Printf("| asynq no-op tasks (the limit) | %.0f | %s | %s | %s | 0 |\n", noop.rate, noop.took.Round(time.Millisecond), perOp(noop.cpu, n), perOp(noop.redisCPU, n))
	fmt.Printf("| autoinvite pipeline | %.0f | %s | %s | %s | %d |\n", rate, took.Round(time.Millisecond), perOp(cpu, n), perOp(rcpu, n), calls)
	fmt.Printf("\nratio %.2f (goal >= 0.50): %s. The process CPU includes the fake Atlassian answering %d calls.\n", rate/noop.rate, verdict(rate/noop.rate >= 0.5), calls)

	// What the run left in Redis, for the capacity plan.
	auditKey := "{" + keyPrefix + "}:audit"
	records, _ := env.rdb.XLen(ctx, auditKey).Result()
	auditBytes, _ := env.rdb.MemoryUsage(ctx, auditKey, 0).Result()
	info, err := asynq.NewInspectorFromRedisClient(env.rdb).GetQueueInfo(worker.Queue())
	if err == nil && records > 0 && info.Completed > 0 {
		fmt.Printf("Left in Redis: %d audit records, %d B each; %d finished signup tasks kept for intake.dedup_window, about %d B each (Asynq's sampled estimate).\n",
			records, auditBytes/records, info.Completed, info.MemoryUsage/int64(info.Completed))
	}
	return nil
}

type drain struct {
	took          time.Duration
	rate          float64
	cpu, redisCPU time.Duration
}

func noopDrain(ctx context.Context, env *benchEnv, hooks []webhook, concurrency int) (drain, error) {
	queue := jobs.EventsQueue(keyPrefix)
	client := asynq.NewClientFromRedisClient(env.rdb)
	for _, h := range hooks {
		if _, err := client.EnqueueContext(ctx, asynq.NewTask(jobs.TypeUserEvent, h.body), asynq.TaskID(h.deliveryID),
			asynq.Queue(queue), asynq.Retention(24*time.Hour)); err != nil {
			return drain{}, err
		}
	}
	srv := asynq.NewServerFromRedisClient(env.rdb, asynq.Config{Concurrency: concurrency, Queues: map[string]int{queue: 1}, LogLevel: asynq.ErrorLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc(jobs.TypeUserEvent, func(context.Context, *asynq.Task) error { return nil })
	cpu0, rcpu0 := selfCPU(), env.redisCPU()
	if err := srv.Start(mux); err != nil {
		return drain{}, err
	}
	defer srv.Shutdown()
	took, err := env.waitProcessed(ctx, queue, len(hooks), 5*time.Minute)
	if err != nil {
		return drain{}, err
	}
	return drain{took: took, rate: float64(len(hooks)) / took.Seconds(), cpu: selfCPU() - cpu0, redisCPU: env.redisCPU() - rcpu0}, nil
}

func perOp(d time.Duration, n int) string {
	return fmt.Sprintf("%.0f µs", float64(d)/float64(n)/float64(time.Microsecond))
}
