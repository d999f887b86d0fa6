package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/autoinvite/autoinvite/app"
	"github.com/autoinvite/autoinvite/bench/floor"
	"github.com/autoinvite/autoinvite/intake"
	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
)

// pipelineRounds: the no-op limit and the pipeline alternate this many times;
// the figures are medians, the ratio the median of the rounds' ratios.
const pipelineRounds = 5

// limiterOn switches every Atlassian budget of the product on, as deployed,
// with budgets no run can reach: every call still pays the limiter's Redis
// round trip (its spend script), and none ever waits.
const limiterOn = `
rate_limits:
  bitbucket: {requests: 100000000, per: 1h}
  bitbucket_invitations: {requests: 100000000, per: 1h}
  jira: {requests: 100000000, per: 1h}
  atlassian_admin: {requests: 100000000, per: 1h}
`

// pipelineRules are benchRules' workspaces and rules with the limiter on.
var pipelineRules = limiterOn + strings.TrimPrefix(benchRules, noRateLimits)

// benchPipeline: signups from queued webhook to done (membership check, group
// adds or invitation, ledger) by the product as deployed, rate limiter on,
// against the in-process fake Atlassian, alternating with asynq running the
// same number of no-op tasks with the same concurrency.
func benchPipeline(ctx context.Context, env *benchEnv) error {
	n := env.o.signups
	hooks := signups(n, accountID)
	concurrency := 10
	if !strings.HasPrefix(benchRules, noRateLimits) {
		return errors.New("benchRules no longer starts with noRateLimits: update pipelineRules")
	}

	var noops, pipes, apiFloors, ledgerFloors []drain
	var ratios []float64
	var last pipelineRun
	for r := 0; r < pipelineRounds; r++ {
		// The limit: asynq and no-op handlers, same payloads, same concurrency.
		env.flush(ctx)
		noop, err := drainWith(ctx, env, hooks, concurrency, func(context.Context, *asynq.Task) error { return nil })
		if err != nil {
			return err
		}
		env.flush(ctx)
		run, err := runPipeline(ctx, env, hooks, concurrency)
		if err != nil {
			return err
		}
		// Two floors, each asynq plus one unavoidable part of a signup and
		// nothing else: no design of the pipeline can be faster than either.
		env.flush(ctx)
		apiFloor, err := drainWith(ctx, env, hooks, concurrency, atlassianCallsOnly(pipelineFake(n), env.rdb))
		if err != nil {
			return err
		}
		env.flush(ctx)
		ledgerFloor, err := drainWith(ctx, env, hooks, concurrency, ledgerOnly(ledger.New(env.rdb, keyPrefix, ledger.Options{})))
		if err != nil {
			return err
		}
		noops, pipes, apiFloors, ledgerFloors = append(noops, noop), append(pipes, run.drain), append(apiFloors, apiFloor), append(ledgerFloors, ledgerFloor)
		ratios = append(ratios, run.rate/noop.rate)
		last = run
	}

	fmt.Printf("%d signups (half workspace members, half invited), worker.concurrency %d, fake Atlassian in process (no socket), limiter on "+
		"(rate_limits at 100000000 requests per 1h: never reached, every call pays the limiter's Redis round trip); "+
		"%d interleaved rounds (no-op, autoinvite, floors), medians\n\n", n, concurrency, pipelineRounds)
	fmt.Println("| round | asynq no-op tasks/s | autoinvite signups/s | ratio |")
	fmt.Println("| ---: | ---: | ---: | ---: |")
	for i := range ratios {
		fmt.Printf("| %d | %.0f | %.0f | %.2f |\n", i+1, noops[i].rate, pipes[i].rate, ratios[i])
	}
	fmt.Println()
	fmt.Println("| run (median of the rounds) | signups/s | time | CPU per signup (this process) | CPU per signup (redis-server) | Atlassian calls |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: |")
	noop, pipe, apiFloor, ledgerFloor := medianDrain(noops), medianDrain(pipes), medianDrain(apiFloors), medianDrain(ledgerFloors)
	row := func(name string, d drain, calls string) {
		fmt.Printf("| %s | %.0f | %s | %s | %s | %s |\n", name, d.rate, d.took.Round(time.Millisecond), perOp(d.cpu, n), perOp(d.redisCPU, n), calls)
	}
	row("asynq no-op tasks (the limit)", noop, "0")
	row("floor: asynq + the unavoidable Atlassian calls alone (2 adds or 1 invitation; Bitbucket client with the limiter, fake in process; no ledger, no rules)", apiFloor, fmt.Sprint(n*3/2))
	row("floor: asynq + the ledger alone (lock and read, write with audit records, unlock; no Atlassian)", ledgerFloor, "0")
	row("autoinvite pipeline, limiter on", pipe, fmt.Sprint(last.calls))
	ratio := median(ratios)
	fmt.Printf("\nratio in process %.2f (median of %d interleaved rounds, %.2f–%.2f; goal >= 0.50): %s. CPU per signup %s (this process) + %s (redis-server); a no-op task %s + %s.\n",
		ratio, len(ratios), slices.Min(ratios), slices.Max(ratios), verdict(ratio >= 0.5), perOp(pipe.cpu, n), perOp(pipe.redisCPU, n), perOp(noop.cpu, n), perOp(noop.redisCPU, n))
	cpuRatios := make([]float64, len(pipes))
	for i := range pipes {
		cpuRatios[i] = float64(noops[i].cpu+noops[i].redisCPU) / float64(pipes[i].cpu+pipes[i].redisCPU)
	}
	fmt.Printf("CPU per task of this process and redis-server together, no-op over signup: %.2f (%.2f–%.2f), steadier than the rates' on a shared machine.\n",
		median(cpuRatios), slices.Min(cpuRatios), slices.Max(cpuRatios))
	fmt.Printf("The limiter spent %d requests for the %d Atlassian calls of the last round. The process CPU includes the fake Atlassian answering them.\n", last.spent, last.calls)
	fmt.Printf("Floors as a share of the limit: Atlassian calls alone %.2f, ledger alone %.2f; the pipeline pays both, so its ceiling is about 1/(1/%.2f + 1/%.2f - 1) = %.2f.\n",
		apiFloor.rate/noop.rate, ledgerFloor.rate/noop.rate, apiFloor.rate/noop.rate, ledgerFloor.rate/noop.rate, ceiling(noop.rate, apiFloor.rate, ledgerFloor.rate)/noop.rate)
	fmt.Printf("Redis commands per signup (last round; a script's own commands count too): %s.\n", perSignup(last.commands, n))
	if last.leftInRedis != "" {
		fmt.Println(last.leftInRedis)
	}
	return pipelineDeployed(ctx, env, hooks, concurrency)
}

// pipelineRun is one timed run of the product's worker.
type pipelineRun struct {
	drain
	calls, spent int
	commands     map[string]int // Redis commands of the run, by name
	leftInRedis  string
}

// runPipeline queues the webhooks through the product's intake, then times a
// worker process, wired as deployed (limiter on), draining them against a
// fresh fake Atlassian.
func runPipeline(ctx context.Context, env *benchEnv, hooks []webhook, concurrency int) (pipelineRun, error) {
	n := len(hooks)
	f := pipelineFake(n)
	fakeURL, stopFake, err := serveFake(f)
	if err != nil {
		return pipelineRun{}, err
	}
	defer stopFake()
	yaml := pipelineRules + fmt.Sprintf("worker: {concurrency: %d}\n", concurrency)
	if err := queueThroughIntake(env, fakeURL, yaml, hooks); err != nil {
		return pipelineRun{}, err
	}
	worker, err := env.newApp(fakeURL, yaml, app.Roles{Worker: true}, func(o *app.Options) { o.AtlassianTransport = f.RoundTripper() })
	if err != nil {
		return pipelineRun{}, err
	}
	defer worker.Close()
	env.rdb.ConfigResetStat(ctx)
	cpu0, rcpu0 := selfCPU(), env.redisCPU()
	if err := worker.StartWorkers(); err != nil {
		return pipelineRun{}, err
	}
	took, err := env.waitProcessed(ctx, worker.Queue(), n, 5*time.Minute)
	if err != nil {
		return pipelineRun{}, err
	}
	run := pipelineRun{drain: drain{took: took, rate: float64(n) / took.Seconds(), cpu: selfCPU() - cpu0, redisCPU: env.redisCPU() - rcpu0}}
	if run.commands, err = env.commandCounts(ctx); err != nil {
		return run, err
	}
	run.calls = len(f.Calls())
	// Proof that the worker's calls went through the limiter: each spend
	// records the call in its budget's window.
	if run.spent, err = limiterSpends(ctx, env); err != nil {
		return run, err
	}
	if run.spent < run.calls {
		return run, fmt.Errorf("the limiter recorded %d requests for %d Atlassian calls: the worker's calls do not all go through it", run.spent, run.calls)
	}

	// What the run left in Redis, for the capacity plan.
	auditKey := "{" + keyPrefix + "}:audit"
	records, _ := env.rdb.XLen(ctx, auditKey).Result()
	auditBytes, _ := env.rdb.MemoryUsage(ctx, auditKey, 0).Result()
	info, err := asynq.NewInspectorFromRedisClient(env.rdb).GetQueueInfo(worker.Queue())
	if err == nil && records > 0 && info.Completed > 0 {
		run.leftInRedis = fmt.Sprintf("Left in Redis: %d audit records, %d B each; %d finished signup tasks kept for intake.dedup_window, about %d B each (Asynq's sampled estimate).",
			records, auditBytes/records, info.Completed, info.MemoryUsage/int64(info.Completed))
	}
	return run, nil
}

// queueThroughIntake queues the webhooks through the product's intake.
func queueThroughIntake(env *benchEnv, fakeURL, yaml string, hooks []webhook) error {
	intakeOnly, err := env.newApp(fakeURL, yaml, app.Roles{Intake: true}, nil)
	if err != nil {
		return err
	}
	defer intakeOnly.Close()
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
	return nil
}

// limiterSpends counts the requests recorded in the limiter's "requests"
// budgets (every API and credential).
func limiterSpends(ctx context.Context, env *benchEnv) (int, error) {
	total := 0
	iter := env.rdb.Scan(ctx, 0, "{"+keyPrefix+":rl:*}:requests", 1000).Iterator()
	for iter.Next(ctx) {
		c, err := env.rdb.ZCard(ctx, iter.Val()).Result()
		if err != nil {
			return 0, err
		}
		total += int(c)
	}
	return total, iter.Err()
}

// medianDrain is the median of each figure of the runs.
func medianDrain(ds []drain) drain {
	pick := func(f func(drain) float64) float64 {
		v := make([]float64, len(ds))
		for i, d := range ds {
			v[i] = f(d)
		}
		return median(v)
	}
	return drain{
		took:     time.Duration(pick(func(d drain) float64 { return float64(d.took) })),
		rate:     pick(func(d drain) float64 { return d.rate }),
		cpu:      time.Duration(pick(func(d drain) float64 { return float64(d.cpu) })),
		redisCPU: time.Duration(pick(func(d drain) float64 { return float64(d.redisCPU) })),
	}
}

type drain struct {
	took          time.Duration
	rate          float64
	cpu, redisCPU time.Duration
}

// drainWith queues the webhooks' bodies as tasks and times asynq running
// handler on them with concurrency workers.
func drainWith(ctx context.Context, env *benchEnv, hooks []webhook, concurrency int, handler asynq.HandlerFunc) (drain, error) {
	queue := jobs.EventsQueue(keyPrefix)
	if err := queueRaw(ctx, env, queue, hooks); err != nil {
		return drain{}, err
	}
	srv := asynq.NewServerFromRedisClient(env.rdb, asynq.Config{Concurrency: concurrency, Queues: map[string]int{queue: 1}, LogLevel: asynq.ErrorLevel})
	mux := asynq.NewServeMux()
	mux.Handle(jobs.TypeUserEvent, handler)
	env.rdb.ConfigResetStat(ctx)
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

// queueRaw queues the webhooks' bodies as user-event tasks, as the intake
// would (delivery id as task id, kept for the dedup window).
func queueRaw(ctx context.Context, env *benchEnv, queue string, hooks []webhook) error {
	client := asynq.NewClientFromRedisClient(env.rdb)
	for _, h := range hooks {
		if _, err := client.EnqueueContext(ctx, asynq.NewTask(jobs.TypeUserEvent, h.body), asynq.TaskID(h.deliveryID),
			asynq.Queue(queue), asynq.Retention(24*time.Hour)); err != nil {
			return err
		}
	}
	return nil
}

// ceiling is the best rate of work made of two parts, each measured on top of
// the same fixed cost (the limit): per-task times add, the fixed cost once.
func ceiling(limit, a, b float64) float64 { return 1 / (1/a + 1/b - 1/limit) }

// pipelineFake is the fake Atlassian of the pipeline runs: half of the people
// are workspace members already (2 adds), half get an invitation; in a burst
// one member listing answers who is which.
func pipelineFake(n int) *fake.Fake {
	f := fake.New()
	f.AddWorkspace("acme", "developers", "readers")
	for i := range n {
		if floor.Member(accountID(i)) {
			f.AddMember("acme", accountID(i))
		}
	}
	return f
}

// atlassianCallsOnly makes a signup's unavoidable Bitbucket calls through
// the product's client and limiter (floor.UnavoidableCalls), and nothing else.
func atlassianCallsOnly(f *fake.Fake, rdb *redis.Client) asynq.HandlerFunc {
	calls := floor.UnavoidableCalls(rdb, keyPrefix, "http://fake", f.RoundTripper())
	return func(ctx context.Context, t *asynq.Task) error { return calls(ctx, t.Payload()) }
}

// ledgerOnly does a signup's ledger work and nothing else, in the fewest
// round trips the ledger offers: lock, read and record the event's
// watermark; write the entry with its audit records (3 for a member, 2 for
// an invitation, as the pipeline does) and unlock.
func ledgerOnly(store *ledger.Store) asynq.HandlerFunc {
	return func(ctx context.Context, t *asynq.Task) error {
		account, email, err := floor.SignupOf(t.Payload())
		if err != nil {
			return err
		}
		taskID, _ := asynq.GetTaskID(ctx)
		lock, entries, err := store.LockAndApply(ctx, account, taskID, 30*time.Second, []string{"acme"}, ledger.Watermark{At: time.Now().UnixMilli()})
		if err != nil {
			return err
		}
		defer lock.Unlock()
		ctx = lock.Context(ctx)
		now := time.Now()
		e := entries["acme"]
		if e == nil {
			e = &ledger.Entry{Workspace: "acme", PersonID: account, AccountID: account, Email: email, CreatedAt: now}
		}
		e.UpdatedAt = now
		e.Record(now, "webhook", ledger.ActionDecided, "", "developers<-bench readers<-bench")
		if floor.Member(account) { // as in pipelineFake
			e.Grant("developers")
			e.Grant("readers")
			e.Record(now, "webhook", ledger.ActionGroupAdded, "developers", "")
			e.Record(now, "webhook", ledger.ActionGroupAdded, "readers", "")
			e.Status = ledger.StatusGranted
		} else {
			e.Invitations = append(e.Invitations, ledger.Invitation{Group: "developers", SentAt: now, ExpiresAt: now.Add(7 * 24 * time.Hour), State: ledger.InvitationPending})
			e.Record(now, "webhook", ledger.ActionInvitationSent, "developers", "")
			e.Status = ledger.StatusInvited
		}
		return store.PutAndUnlock(ctx, e)
	}
}

func perOp(d time.Duration, n int) string {
	return fmt.Sprintf("%.0f µs", float64(d)/float64(n)/float64(time.Microsecond))
}
