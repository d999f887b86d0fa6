package worker

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
)

// HandleAdminAction is the Asynq handler for jobs.TypeAdminAction: an admin
// CLI's action carried out here, with this service's credentials. The
// outcome, failure included, is written as the task's result, which the CLI
// waits for; the task fails only when it cannot be read or answered.
func (w *Worker) HandleAdminAction(ctx context.Context, t *asynq.Task) error {
	act, err := jobs.DecodeAdminAction(t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	res := w.AdminAction(ctx, act)
	out, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode the result of admin action %s: %w", act.Action, err)
	}
	if _, err := t.ResultWriter().Write(out); err != nil {
		return fmt.Errorf("write the result of admin action %s: %w", act.Action, err)
	}
	w.o.Logger.Info().Str("action", act.Action).Str("actor", act.Actor).Str("workspace", act.Workspace).
		Str("person", act.PersonID).Int("count", res.Count).Str("error", res.Error).Msg("admin action done")
	return nil
}

// AdminAction runs one admin action through the worker's own methods.
func (w *Worker) AdminAction(ctx context.Context, act jobs.AdminAction) jobs.AdminResult {
	var res jobs.AdminResult
	var err error
	ref := ledger.Ref{Workspace: act.Workspace, PersonID: act.PersonID}
	switch act.Action {
	case jobs.AdminResend:
		res.Count, err = w.Resend(ctx, ref, act.Actor)
	case jobs.AdminCancel:
		res.Count, err = w.Cancel(ctx, ref, act.Actor)
	case jobs.AdminResumeRevocations:
		res.Count, err = w.ResumeRevocations(ctx, act.Workspace, act.Actor)
	case jobs.AdminSweep:
		var sum SweepSummary
		sum, err = w.SweepOnce(ctx, act.Actor)
		res.Sweep = make(map[string]int, len(sum))
		for outcome, n := range sum {
			res.Sweep[string(outcome)] = n
		}
	default:
		err = fmt.Errorf("unknown admin action %q", act.Action)
	}
	if err != nil {
		res.Error = err.Error()
	}
	return res
}
