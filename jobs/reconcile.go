package jobs

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// TypeReconcile is one reconciliation pass (scheduled, or asked for by
// `autoinvite reconcile`); its result is the pass's report.
const TypeReconcile = "reconcile:pass"

// ReconcileQueue names the low-priority queue reconciliation runs on: the
// workers take signups first (weighted queues), and both share the budget.
func ReconcileQueue(prefix string) string { return prefix + ":reconcile" }

// ReconcileTimeout bounds one pass task; an interrupted pass resumes from
// its cursor when run again.
const ReconcileTimeout = 6 * time.Hour

// ReconcilePass is the payload of TypeReconcile.
type ReconcilePass struct {
	Workspace string    `json:"workspace,omitempty"` // "" = every workspace
	DryRun    bool      `json:"dry_run,omitempty"`
	Actor     string    `json:"actor"`
	Tick      time.Time `json:"tick,omitzero"` // scheduled passes
}

// DecodeReconcilePass parses a task payload.
func DecodeReconcilePass(payload []byte) (ReconcilePass, error) {
	var p ReconcilePass
	if err := json.Unmarshal(payload, &p); err != nil {
		return p, fmt.Errorf("decode %s payload: %w", TypeReconcile, err)
	}
	return p, nil
}

// NewReconcileTask builds a pass's task. A scheduled pass is named by its
// tick (one per tick however many schedulers fire); an asked-for one gets a
// fresh id. A failed pass leaves its cursor and the next one resumes there;
// a pass waiting for the budget comes back when it allows (not a failure,
// so not counted against MaxRetry, which Asynq checks first: hence 1, the
// one retry a pass that ran out of time gets).
func NewReconcileTask(p ReconcilePass, queue string) (*asynq.Task, error) {
	payload, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode reconcile pass: %w", err)
	}
	id := fmt.Sprintf("reconcile:%s:%d", p.Workspace, p.Tick.Unix())
	if p.Tick.IsZero() {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("reconcile task id: %w", err)
		}
		id = "reconcile:" + p.Workspace + ":" + hex.EncodeToString(b[:])
	}
	return asynq.NewTask(TypeReconcile, payload, asynq.TaskID(id), asynq.Queue(queue),
		asynq.MaxRetry(1), asynq.Timeout(ReconcileTimeout), asynq.Retention(24*time.Hour)), nil
}
