package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/integrations/dryrun"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
	"github.com/autoinvite/autoinvite/rules"
	"github.com/autoinvite/autoinvite/worker"
)

// benchSweep: time to find and queue the re-sends of the due invitations in a
// large ledger, and the Redis memory of a ledger entry. The same due count in
// a ledger ten times larger shows that the cost follows the due count.
func benchSweep(ctx context.Context, env *benchEnv) error {
	env.flush(ctx)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	cfg, _, err := env.appConfig("http://127.0.0.1:1", benchRules)
	if err != nil {
		return err
	}
	engine, err := rules.New(cfg)
	if err != nil {
		return err
	}
	store := ledger.New(env.rdb, keyPrefix, ledger.Options{AuditMaxLen: cfg.Audit.MaxEntries})
	client := asynq.NewClientFromRedisClient(env.rdb)
	enq := jobs.NewEnqueuer(client, jobs.EnqueueOptions{Queue: jobs.EventsQueue(keyPrefix), MaxRetry: 25, Timeout: time.Minute, Retention: time.Hour})
	w, err := worker.New(worker.Options{Jira: dryrun.Jira{}, Bitbucket: dryrun.Bitbucket{}, Ledger: store,
		Rules: func() *rules.Engine { return engine }, FollowUps: enq, Logger: zerolog.Nop(), Now: func() time.Time { return now }})
	if err != nil {
		return err
	}

	small := env.o.ledger / 10
	fmt.Printf("ledger entries: invited people with one pending invitation and an early-check time; %d of them due\n\n", env.o.due)
	fmt.Println("| ledger entries | due | sweep: find + queue re-sends (median of 3) | Redis used_memory | per entry |")
	fmt.Println("| ---: | ---: | ---: | ---: | ---: |")
	base := usedMemory(ctx, env)
	// The due ones first, so both ledger sizes hold the same due entries.
	if err := populate(ctx, env, 0, env.o.due, now, true); err != nil {
		return err
	}
	if err := populate(ctx, env, env.o.due, small, now, false); err != nil {
		return err
	}
	var memSmall int64
	for i, size := range []int{small, env.o.ledger} {
		if i == 1 {
			if err := populate(ctx, env, small, size, now, false); err != nil {
				return err
			}
		}
		mem := usedMemory(ctx, env) - base
		if i == 0 {
			memSmall = mem
		}
		took, err := sweepTime(ctx, env, w, now, env.o.due)
		if err != nil {
			return err
		}
		fmt.Printf("| %d | %d | %s | %.0f MB | %d B |\n", size, env.o.due, took.Round(time.Millisecond), float64(mem)/1e6, mem/int64(size))
	}
	personKey := fmt.Sprintf("{%s}:p:%s", keyPrefix, personID(1))
	one, _ := env.rdb.MemoryUsage(ctx, personKey).Result()
	fmt.Printf("\nMEMORY USAGE of one person's key: %d B; the rest of the per-entry cost is its index members (due and early-check sorted sets, workspace set, email hash). Growth from %d to %d entries: %.0f B per added entry.\n",
		one, small, env.o.ledger, float64(usedMemory(ctx, env)-base-memSmall)/float64(env.o.ledger-small))
	return nil
}

func personID(i int) string { return "acct:" + realAccountID(i) }

// realAccountID is an Atlassian account id of the real length (43
// characters: "557058:" and a UUID): memory per entry depends on it.
func realAccountID(i int) string {
	return fmt.Sprintf("557058:%08x-%04x-4%03x-8%03x-%012x", i, i&0xffff, i&0xfff, (i>>12)&0xfff, i)
}

// realEmail is an address of a typical length.
func realEmail(i int) string { return fmt.Sprintf("first.last%07d@acme-corp.com", i) }

// populate writes entries [from, to) as the worker would (their audit
// records go to a stream trimmed to a few nodes, deleted after); due ones
// expired an hour ago.
func populate(ctx context.Context, env *benchEnv, from, to int, now time.Time, due bool) error {
	seed := ledger.New(env.rdb, keyPrefix, ledger.Options{AuditMaxLen: 1})
	err := seedParallel(ctx, from, to, func(i int) error {
		e, story := newcomerEntry(i, now, due)
		for _, ev := range story {
			e.Record(ev.At, ev.Actor, ev.Action, ev.Group, ev.Detail)
		}
		return seed.PutUnlocked(ctx, e) // seeding: no worker runs yet
	})
	if err != nil {
		return err
	}
	return env.rdb.Del(ctx, seed.AuditKey()).Err()
}

// sweepTime runs the sweep three times (each a new tick, so a new set of
// follow-up task ids) and returns the median.
func sweepTime(ctx context.Context, env *benchEnv, w *worker.Worker, now time.Time, wantDue int) (time.Duration, error) {
	var times []float64
	for i := 0; i < 3; i++ {
		tick := now.Add(time.Duration(i) * time.Minute)
		start := time.Now()
		due, _, err := w.QueueFollowUps(ctx, tick)
		took := time.Since(start)
		if err != nil {
			return 0, err
		}
		if due != wantDue {
			return 0, fmt.Errorf("sweep found %d due, want %d", due, wantDue)
		}
		times = append(times, float64(took))
		// Forget the queued follow-ups so the queue does not grow between runs.
		if err := deleteByPattern(ctx, env, "asynq:{"+keyPrefix+":events}:*"); err != nil {
			return 0, err
		}
	}
	return time.Duration(median(times)), nil
}

func deleteByPattern(ctx context.Context, env *benchEnv, pattern string) error {
	iter := env.rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 1000 {
			env.rdb.Unlink(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		env.rdb.Unlink(ctx, batch...)
	}
	return iter.Err()
}

func usedMemory(ctx context.Context, env *benchEnv) int64 {
	info, _ := env.rdb.Info(ctx, "memory").Result()
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
