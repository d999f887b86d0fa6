package ledger

import (
	"context"
	"time"
)

// batchOutcomeTTL keeps a batched call's outcome long enough for every retry
// of its task (asynq retries for hours at most; retention is a day).
const batchOutcomeTTL = 7 * 24 * time.Hour

func (s *Store) batchKey(taskID string) string { return s.prefix + ":batch:" + taskID }

// SaveBatchOutcome stores what a batched Atlassian call did, under the batch
// task's id, before anyone's entry is settled: a retry after a crash reads it
// instead of calling Atlassian again.
func (s *Store) SaveBatchOutcome(ctx context.Context, taskID string, outcome any) error {
	return s.putJSON(ctx, s.batchKey(taskID), "outcome of batch "+taskID, outcome, batchOutcomeTTL)
}

// BatchOutcome reads a stored outcome into v; ok is false when there is none.
func (s *Store) BatchOutcome(ctx context.Context, taskID string, v any) (ok bool, err error) {
	return s.getJSON(ctx, s.batchKey(taskID), "outcome of batch "+taskID, v)
}
