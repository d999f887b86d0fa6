package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/autoinvite/autoinvite/bench/floor"
	"github.com/autoinvite/autoinvite/jobs"
)

// deployedRun is one timed drain by a process of its own.
type deployedRun struct {
	tasks         int // processed while timed
	took          time.Duration
	cpu, redisCPU time.Duration
	benchCPU      time.Duration // this process: polling, and the fake Atlassian answering
	logBytes      int64
}

func (r deployedRun) rate() float64 { return float64(r.tasks) / r.took.Seconds() }

// pipelineDeployed times the pipeline as it is deployed: the real binary,
// `autoinvite serve --role worker` (logs on at info, to a file; limiter on;
// the fake Atlassian over loopback HTTP, in this process), alternating with
// the limit deployed the same way: bench/minimal-worker, Asynq with no-op
// handlers that log a line per task. Rounds interleave; CPU from /proc.
func pipelineDeployed(ctx context.Context, env *benchEnv, hooks []webhook, concurrency int) error {
	dir, err := os.MkdirTemp("", "autoinvite-pipeline")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := buildBinaries(dir, "./cmd/autoinvite", "./bench/minimal-worker", "./bench/calls-worker"); err != nil {
		return err
	}
	n := len(hooks)
	queue := jobs.EventsQueue(keyPrefix)
	var limits, pipes, floors, alone []deployedRun
	var ratios, floorRatios, bounds []float64
	for r := 0; r < pipelineRounds; r++ {
		env.flush(ctx)
		if err := queueRaw(ctx, env, queue, hooks); err != nil {
			return err
		}
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		limit, err := drainByProcess(ctx, env, queue, n, concurrency, func() (*intakeProcess, error) {
			return startProcess("minimal-worker", filepath.Join(dir, "minimal-worker"), addr, "/", "", nil,
				"MINIMAL_LISTEN="+addr, "MINIMAL_REDIS_URL="+env.redisURL, "MINIMAL_QUEUE="+queue, "MINIMAL_CONCURRENCY="+strconv.Itoa(concurrency))
		})
		if err != nil {
			return err
		}

		env.flush(ctx)
		f := pipelineFake(n)
		fakeURL, stopFake, err := serveFake(f)
		if err != nil {
			return err
		}
		yaml := pipelineRules + fmt.Sprintf("worker: {concurrency: %d}\n", concurrency)
		if err := queueThroughIntake(env, fakeURL, yaml, hooks); err != nil {
			stopFake()
			return err
		}
		cfg := filepath.Join(dir, "autoinvite.yaml")
		if err := os.WriteFile(cfg, []byte("redis: {key_prefix: "+keyPrefix+"}\n"+yaml), 0o600); err != nil {
			stopFake()
			return err
		}
		if addr, err = freeAddr(); err != nil {
			stopFake()
			return err
		}
		pipe, err := drainByProcess(ctx, env, queue, n, concurrency, func() (*intakeProcess, error) {
			return startProcess("autoinvite", filepath.Join(dir, "autoinvite"), addr, "/", "/readyz",
				[]string{"serve", "--config", cfg, "--role", "worker", "--log-level", "info"},
				"AUTOINVITE_LISTEN="+addr, "AUTOINVITE_REDIS_URL="+env.redisURL,
				"AUTOINVITE_JIRA_BASE_URL="+fakeURL, "AUTOINVITE_BITBUCKET_BASE_URL="+fakeURL,
				"AUTOINVITE_JIRA_EMAIL=bot@acme.com", "AUTOINVITE_JIRA_API_TOKEN=t", "AUTOINVITE_BITBUCKET_ACCESS_TOKEN=t")
		})
		stopFake()
		if err != nil {
			return err
		}
		spent, err := limiterSpends(ctx, env)
		if err != nil {
			return err
		}
		if calls := len(f.Calls()); spent < calls {
			return fmt.Errorf("as deployed, the limiter recorded %d requests for %d Atlassian calls: the worker's calls do not all go through it", spent, calls)
		}
		perTask, err := callsWorker(ctx, env, dir, queue, hooks, concurrency)
		if err != nil {
			return err
		}
		env.flush(ctx)
		calls, err := callsAlone(ctx, env, hooks, concurrency)
		if err != nil {
			return err
		}
		limits, pipes, floors, alone = append(limits, limit), append(pipes, pipe), append(floors, perTask), append(alone, calls)
		ratios, bounds = append(ratios, pipe.rate()/limit.rate()), append(bounds, calls.rate()/limit.rate())
		floorRatios = append(floorRatios, perTask.rate()/limit.rate())
	}

	fmt.Printf("\nAs deployed: `autoinvite serve --role worker` (the real binary, logs at info to a file, limiter on, worker.concurrency %d) "+
		"against the fake Atlassian over loopback HTTP, and the limit: bench/minimal-worker (Asynq, no-op handlers logging a line per task, "+
		"same concurrency), each its own process; %d interleaved rounds, timed from the first task processed to the last\n\n", concurrency, pipelineRounds)
	fmt.Println("| round | minimal worker tasks/s | autoinvite worker signups/s | ratio | minimal worker + the unavoidable calls, signups/s | its ratio | the calls alone, signups/s | their ratio |")
	fmt.Println("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for i := range ratios {
		fmt.Printf("| %d | %.0f | %.0f | %.2f | %.0f | %.2f | %.0f | %.2f |\n", i+1, limits[i].rate(), pipes[i].rate(), ratios[i],
			floors[i].rate(), floorRatios[i], alone[i].rate(), bounds[i])
	}
	per := func(runs []deployedRun, f func(deployedRun) float64) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = f(r)
		}
		return median(v)
	}
	cpu := func(r deployedRun) float64 { return float64(r.cpu.Microseconds()) / float64(r.tasks) }
	redisCPU := func(r deployedRun) float64 { return float64(r.redisCPU.Microseconds()) / float64(r.tasks) }
	logB := func(r deployedRun) float64 { return float64(r.logBytes) / float64(r.tasks) }
	benchCPU := func(r deployedRun) float64 { return float64(r.benchCPU.Microseconds()) / float64(r.tasks) }
	fmt.Println()
	fmt.Println("| process (median of the rounds) | per second | CPU µs per task (the process) | CPU µs per task (redis-server) | CPU µs per task (the benchmark: polling, fake Atlassian) | log B per task |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: |")
	fmt.Printf("| minimal worker (the limit) | %.0f | %.0f | %.0f | %.0f | %.0f |\n", per(limits, deployedRun.rate), per(limits, cpu), per(limits, redisCPU), per(limits, benchCPU), per(limits, logB))
	fmt.Printf("| autoinvite serve --role worker | %.0f | %.0f | %.0f | %.0f | %.0f |\n", per(pipes, deployedRun.rate), per(pipes, cpu), per(pipes, redisCPU), per(pipes, benchCPU), per(pipes, logB))
	fmt.Printf("| bench/calls-worker: the minimal worker + the unavoidable calls | %.0f | %.0f | %.0f | %.0f | %.0f |\n", per(floors, deployedRun.rate), per(floors, cpu), per(floors, redisCPU), per(floors, benchCPU), per(floors, logB))
	fmt.Printf("| the unavoidable calls alone (in the benchmark's process, with the fake) | %.0f | | %.0f | %.0f | |\n", per(alone, deployedRun.rate), per(alone, redisCPU), per(alone, benchCPU))
	ratio := median(ratios)
	fmt.Printf("\nratio as deployed %.2f (median of %d interleaved rounds, %.2f–%.2f; goal >= 0.50): %s. The fake Atlassian runs in the benchmark's process, on the same cores (its column).\n",
		ratio, len(ratios), slices.Min(ratios), slices.Max(ratios), verdict(ratio >= 0.5))
	// On two cores the processes share, throughput follows the CPU all of
	// them spend per task, which moves less between rounds than the rates.
	total := func(r deployedRun) float64 { return cpu(r) + redisCPU(r) + benchCPU(r) }
	cpuRatios := make([]float64, len(pipes))
	for i := range pipes {
		cpuRatios[i] = total(limits[i]) / total(pipes[i])
	}
	fmt.Printf("CPU of all the processes per task (the worker, redis-server, the benchmark with the fake): the limit %.0f µs, autoinvite %.0f µs; "+
		"their ratio %.2f (%.2f–%.2f), steadier than the rates' on a shared machine.\n",
		per(limits, total), per(pipes, total), median(cpuRatios), slices.Min(cpuRatios), slices.Max(cpuRatios))
	fmt.Printf("Floors as deployed: the minimal worker making each signup's unavoidable Bitbucket calls (2 adds or 1 invitation, through autoinvite's client and limiter, over loopback HTTP; no ledger, no rules) runs at %.2f of the limit (%.2f–%.2f): "+
		"no design that runs one task per signup can do better on this machine. "+
		"The calls alone (%d goroutines, no queue, no ledger, no logs) run at %.2f (%.2f–%.2f): no design that makes these calls, batching signups into tasks or not, can do better.\n",
		median(floorRatios), slices.Min(floorRatios), slices.Max(floorRatios), concurrency, median(bounds), slices.Min(bounds), slices.Max(bounds))
	return nil
}

// callsWorker times bench/calls-worker, the minimal worker making each
// signup's unavoidable calls, as its own process, on the queued signups.
func callsWorker(ctx context.Context, env *benchEnv, dir, queue string, hooks []webhook, concurrency int) (deployedRun, error) {
	env.flush(ctx)
	if err := queueRaw(ctx, env, queue, hooks); err != nil {
		return deployedRun{}, err
	}
	f := pipelineFake(len(hooks))
	fakeURL, stopFake, err := serveFake(f)
	if err != nil {
		return deployedRun{}, err
	}
	defer stopFake()
	addr, err := freeAddr()
	if err != nil {
		return deployedRun{}, err
	}
	run, err := drainByProcess(ctx, env, queue, len(hooks), concurrency, func() (*intakeProcess, error) {
		return startProcess("calls-worker", filepath.Join(dir, "calls-worker"), addr, "/", "", nil,
			"MINIMAL_LISTEN="+addr, "MINIMAL_REDIS_URL="+env.redisURL, "MINIMAL_QUEUE="+queue, "MINIMAL_CONCURRENCY="+strconv.Itoa(concurrency),
			"MINIMAL_FAKE_URL="+fakeURL, "MINIMAL_KEY_PREFIX="+keyPrefix)
	})
	if err != nil {
		return run, err
	}
	if want := len(hooks) * 3 / 2; len(f.Calls()) < want {
		return run, fmt.Errorf("calls-worker made %d calls, want %d", len(f.Calls()), want)
	}
	return run, nil
}

// callsAlone times the signups' unavoidable Bitbucket calls and nothing else:
// concurrency goroutines make them through the product's client and limiter
// against the fake Atlassian over loopback HTTP, both in this process.
func callsAlone(ctx context.Context, env *benchEnv, hooks []webhook, concurrency int) (deployedRun, error) {
	f := pipelineFake(len(hooks))
	fakeURL, stopFake, err := serveFake(f)
	if err != nil {
		return deployedRun{}, err
	}
	defer stopFake()
	calls := floor.UnavoidableCalls(env.rdb, keyPrefix, fakeURL, nil)
	firstErrs := make([]error, concurrency) // each worker's first
	rcpu0, self0, start := env.redisCPU(), selfCPU(), time.Now()
	fanOut(len(hooks), concurrency, func(w, i int) {
		if err := calls(ctx, hooks[i].body); err != nil && firstErrs[w] == nil {
			firstErrs[w] = err
		}
	})
	run := deployedRun{tasks: len(hooks), took: time.Since(start), redisCPU: env.redisCPU() - rcpu0, benchCPU: selfCPU() - self0}
	if err := errors.Join(firstErrs...); err != nil {
		return run, fmt.Errorf("the unavoidable calls alone: %w", err)
	}
	if want := len(hooks) * 3 / 2; len(f.Calls()) < want {
		return run, fmt.Errorf("the unavoidable calls alone made %d calls, want %d", len(f.Calls()), want)
	}
	return run, nil
}

// drainByProcess starts a worker process on a queue holding n tasks and times
// it from its first processed task to the last, then stops it. Every timed
// task must have left at least one line in the process's log (but the
// inFlight that were running as the clock started may have logged before).
func drainByProcess(ctx context.Context, env *benchEnv, queue string, n, inFlight int, start func() (*intakeProcess, error)) (deployedRun, error) {
	p, err := start()
	if err != nil {
		return deployedRun{}, err
	}
	defer p.stop()
	processed := "asynq:{" + queue + "}:processed"
	count := func() int { c, _ := env.rdb.Get(ctx, processed).Int(); return c }
	// The clock starts at the first task: the process's start-up is not the pipeline.
	deadline := time.Now().Add(5 * time.Minute)
	for count() == 0 {
		if time.Now().After(deadline) {
			return deployedRun{}, fmt.Errorf("%s processed nothing in 5 minutes; its log: %s", p.name, p.logPath)
		}
		time.Sleep(time.Millisecond)
	}
	// Lines are counted from here; a task in flight now may have logged its
	// line already and be counted done only later: up to inFlight of them.
	if _, _, err := p.newLogLines(); err != nil {
		return deployedRun{}, err
	}
	c0, cpu0, rcpu0, self0 := count(), processCPU(p.cmd.Process.Pid), env.redisCPU(), selfCPU()
	took, err := env.waitProcessed(ctx, queue, n, 5*time.Minute)
	if err != nil {
		return deployedRun{}, fmt.Errorf("%s: %w (its log: %s)", p.name, err, p.logPath)
	}
	run := deployedRun{tasks: n - c0, took: took, redisCPU: env.redisCPU() - rcpu0, benchCPU: selfCPU() - self0}
	lines, size, err := p.awaitLogLines(run.tasks - inFlight)
	run.logBytes = size
	if err != nil {
		return run, err
	}
	run.cpu = processCPU(p.cmd.Process.Pid) - cpu0 // its log writes included
	if lines < run.tasks-inFlight {
		return run, fmt.Errorf("%s logged %d lines for %d tasks: logs must be on", p.name, lines, run.tasks)
	}
	if run.tasks < n/2 {
		return run, fmt.Errorf("%s processed %d of %d tasks before the clock started: too few to time", p.name, c0, n)
	}
	return run, nil
}
