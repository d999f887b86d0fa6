package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// batchOutcomeTTL keeps a batched call's outcome long enough for every retry
// of its task (asynq retries for hours at most; retention is a day).
const batchOutcomeTTL = 7 * 24 * time.Hour

func (s *Store) batchKey(taskID string) string { return s.prefix + ":batch:" + taskID }

// SaveBatchOutcome stores what a batched Atlassian call did, under the batch
// task's id, before anyone's entry is settled: a retry after a crash reads it
// instead of calling Atlassian again.
func (s *Store) SaveBatchOutcome(ctx context.Context, taskID string, outcome any) error {
	raw, err := json.Marshal(outcome)
	if err != nil {
		return fmt.Errorf("encode outcome of batch %s: %w", taskID, err)
	}
	if err := s.rdb.Set(ctx, s.batchKey(taskID), raw, batchOutcomeTTL).Err(); err != nil {
		return fmt.Errorf("store outcome of batch %s: %w", taskID, err)
	}
	return nil
}

// BatchOutcome reads a stored outcome into v; ok is false when there is none.
func (s *Store) BatchOutcome(ctx context.Context, taskID string, v any) (ok bool, err error) {
	raw, err := s.rdb.Get(ctx, s.batchKey(taskID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read outcome of batch %s: %w", taskID, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("decode outcome of batch %s: %w", taskID, err)
	}
	return true, nil
}
