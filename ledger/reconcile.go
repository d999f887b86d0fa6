package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Actions of reconciliation passes in the audit trail.
const (
	// ActionReconcileDrift is one difference a pass found (its outcome says
	// whether it was fixed, reported or held).
	ActionReconcileDrift = "reconcile-drift"
	// ActionReconcilePass is a pass's summary.
	ActionReconcilePass = "reconcile-pass"
	// ActionReconcileRegrant records, on the entry, that a grant removed by
	// hand is given again (regrant_removed: true).
	ActionReconcileRegrant = "reconcile-regrant"
)

// reconcileStateTTL keeps an interrupted pass's position for a week: the
// next pass (daily by default) resumes from it.
const reconcileStateTTL = 7 * 24 * time.Hour

func (s *Store) reconcileKey(scope string) string { return s.prefix + ":reconcile:" + scope }

// SaveReconcileState stores where a reconciliation pass over scope is, so
// that an interrupted pass continues there.
func (s *Store) SaveReconcileState(ctx context.Context, scope string, state any) error {
	raw, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("encode reconcile state %s: %w", scope, err)
	}
	if err := s.rdb.Set(ctx, s.reconcileKey(scope), raw, reconcileStateTTL).Err(); err != nil {
		return fmt.Errorf("store reconcile state %s: %w", scope, err)
	}
	return nil
}

// ReconcileState reads a stored pass state into v; ok is false when none.
func (s *Store) ReconcileState(ctx context.Context, scope string, v any) (ok bool, err error) {
	raw, err := s.rdb.Get(ctx, s.reconcileKey(scope)).Bytes()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read reconcile state %s: %w", scope, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("decode reconcile state %s: %w", scope, err)
	}
	return true, nil
}

// ClearReconcileState forgets a finished pass.
func (s *Store) ClearReconcileState(ctx context.Context, scope string) error {
	if err := s.rdb.Del(ctx, s.reconcileKey(scope)).Err(); err != nil {
		return fmt.Errorf("clear reconcile state %s: %w", scope, err)
	}
	return nil
}
