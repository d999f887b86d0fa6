package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/robfig/cron/v3"

	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/integrations/ratelimit"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/metrics"
	"github.com/autoinvite/autoinvite/outcome"
	"github.com/autoinvite/autoinvite/reconcile"
	"github.com/autoinvite/autoinvite/worker"
)

// Queue weights: reconciliation runs below signups (Asynq picks the events
// queue nine times out of ten when both have work); both share the budget.
const (
	eventsWeight    = 9
	reconcileWeight = 1
)

// queueWeights are the queues this process's workers serve.
func (a *App) queueWeights() map[string]int {
	return map[string]int{a.queue: eventsWeight, jobs.ReconcileQueue(a.cfg.Redis.KeyPrefix): reconcileWeight}
}

// registerReconcile installs the reconciliation pass's handler and metrics.
func (a *App) registerReconcile() {
	m := metrics.NewReconcile(a.metrics.Registry)
	a.mux.HandleFunc(jobs.TypeReconcile, func(ctx context.Context, t *asynq.Task) error {
		return a.handleReconcile(ctx, t, m)
	})
}

// handleReconcile runs one pass with the config in force and writes its
// report as the task's result (a failure included: the CLI prints it, and
// the next pass resumes from the stored cursor).
func (a *App) handleReconcile(ctx context.Context, t *asynq.Task, m worker.ReconcileObserver) error {
	p, err := jobs.DecodeReconcilePass(t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	rt := a.current.Load()
	rep, err := rt.worker.Reconcile(ctx, rt.jira, worker.ReconcileOptions{Workspace: p.Workspace, DryRun: p.DryRun, Actor: p.Actor, Observer: m})
	if err != nil {
		if ctx.Err() != nil {
			return err // shut down or timed out: the state is kept for the next pass
		}
		if outcome.Of(err) == outcome.Wait {
			// Its worker slot goes back; Asynq brings the task back when the
			// budget allows and the pass resumes from its cursor.
			w, _ := ratelimit.AsWait(err)
			a.log.Info().Str("actor", p.Actor).Str("workspace", p.Workspace).Dur("retry_after", w.RetryAfter).Str("budget", w.API+" "+w.Budget).
				Msg("reconciliation pass paused for the budget: it resumes where it stopped")
			return err
		}
		rep.Error = err.Error()
		a.log.Error().Err(err).Str("actor", p.Actor).Msg("reconciliation pass failed: the next pass resumes where it stopped")
	}
	out, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("encode the reconciliation report: %w", err)
	}
	if _, err := t.ResultWriter().Write(out); err != nil {
		return fmt.Errorf("write the reconciliation report: %w", err)
	}
	return nil
}

// scheduleReconcile queues a pass on reconcile.schedule; the tick-stamped
// task id lets one through however many schedulers fire.
func (a *App) scheduleReconcile(c *cron.Cron) error {
	spec := a.cfg.Reconcile.Schedule
	if spec == config.ReconcileOff || spec == "" {
		return nil
	}
	sched, err := config.CronParser.Parse(spec)
	if err != nil {
		return fmt.Errorf("reconcile.schedule: %w", err)
	}
	queue := jobs.ReconcileQueue(a.cfg.Redis.KeyPrefix)
	c.Schedule(sched, cron.FuncJob(func() {
		tick := a.now().UTC().Truncate(time.Minute)
		task, err := jobs.NewReconcileTask(jobs.ReconcilePass{Actor: "scheduler", Tick: tick}, queue)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err = a.client.EnqueueContext(ctx, task)
			cancel()
		}
		dup := errors.Is(err, asynq.ErrTaskIDConflict)
		if dup {
			err = nil
		}
		a.log.Info().Err(err).Time("tick", tick).Bool("already_queued", dup).Msg("reconcile tick")
	}))
	return nil
}

// ErrPassPaused: a reconciliation pass gave its worker back to wait for the
// rate budget; the service resumes it.
var ErrPassPaused = errors.New("the reconciliation pass is paused for the rate budget")

// Reconcile queues a reconciliation pass for the running service's workers
// and waits for its report. wait bounds how long a worker may take to pick
// it up (it runs below signups); a pass not picked up by then is withdrawn.
func (ad *Admin) Reconcile(ctx context.Context, p jobs.ReconcilePass, wait time.Duration) (reconcile.Report, error) {
	queue := jobs.ReconcileQueue(ad.cfg.Redis.KeyPrefix)
	task, err := jobs.NewReconcileTask(p, queue)
	if err != nil {
		return reconcile.Report{}, err
	}
	info, err := ad.client.EnqueueContext(ctx, task)
	if err != nil {
		return reconcile.Report{}, fmt.Errorf("queue reconciliation pass: %w", err)
	}
	id, deadline, taken := info.ID, time.Now().Add(wait), false
	tick := time.NewTicker(adminPoll)
	defer tick.Stop()
	for {
		info, err := ad.inspector.GetTaskInfo(queue, id)
		if err != nil {
			return reconcile.Report{}, fmt.Errorf("read reconciliation pass %s: %w", id, err)
		}
		switch info.State {
		case asynq.TaskStateCompleted:
			var rep reconcile.Report
			if err := json.Unmarshal(info.Result, &rep); err != nil {
				return rep, fmt.Errorf("decode the reconciliation report: %w", err)
			}
			if rep.Error != "" {
				return rep, errors.New(rep.Error)
			}
			return rep, nil
		case asynq.TaskStateArchived:
			return reconcile.Report{}, fmt.Errorf("the worker failed reconciliation pass %s: %s", id, info.LastErr)
		case asynq.TaskStateRetry:
			return reconcile.Report{}, fmt.Errorf("%w (%s); the service takes it up again at %s, from where it stopped (task %s; `autoinvite status` shows the budget's backlog)",
				ErrPassPaused, info.LastErr, info.NextProcessAt.UTC().Format(time.RFC3339), id)
		case asynq.TaskStateActive:
			taken = true
		case asynq.TaskStatePending, asynq.TaskStateScheduled:
			if !taken && time.Now().After(deadline) {
				if ad.inspector.DeleteTask(queue, id) == nil {
					return reconcile.Report{}, fmt.Errorf("%w within %s (queue %s): is `autoinvite serve` running against this Redis, with this version?", ErrNoWorker, wait, queue)
				}
				taken = true
			}
		}
		select {
		case <-ctx.Done():
			return reconcile.Report{}, fmt.Errorf("stopped waiting for reconciliation pass %s (it goes on in the worker; a later pass resumes it): %w", id, ctx.Err())
		case <-tick.C:
		}
	}
}
