package ledger

import (
	"context"
	"fmt"
	"time"
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
	return s.putJSON(ctx, s.reconcileKey(scope), "reconcile state "+scope, state, reconcileStateTTL)
}

// ReconcileState reads a stored pass state into v; ok is false when none.
func (s *Store) ReconcileState(ctx context.Context, scope string, v any) (ok bool, err error) {
	return s.getJSON(ctx, s.reconcileKey(scope), "reconcile state "+scope, v)
}

// ClearReconcileState forgets a finished pass.
func (s *Store) ClearReconcileState(ctx context.Context, scope string) error {
	if err := s.rdb.Del(ctx, s.reconcileKey(scope)).Err(); err != nil {
		return fmt.Errorf("clear reconcile state %s: %w", scope, err)
	}
	return nil
}
