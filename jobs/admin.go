package jobs

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// TypeAdminAction is an admin CLI's action (`invites resend`, …) handed to the
// running service: its workers carry it out with their own credentials, so
// the CLI needs only Redis. The outcome is the task's result (AdminResult).
const TypeAdminAction = "admin:action"

// Admin actions.
const (
	AdminResend            = "resend"             // worker.Resend of one person in one workspace
	AdminCancel            = "cancel"             // worker.Cancel of one person in one workspace
	AdminResumeRevocations = "resume-revocations" // worker.ResumeRevocations of one workspace
	AdminSweep             = "sweep"              // worker.SweepOnce
)

// AdminAction is the payload of TypeAdminAction.
type AdminAction struct {
	Action    string `json:"action"`
	Workspace string `json:"workspace,omitempty"`
	PersonID  string `json:"person_id,omitempty"`
	// Actor is who asked ("cli:alice"): the ledger records it, not the service.
	Actor string `json:"actor"`
}

// AdminResult is what the worker writes back as the task's result.
type AdminResult struct {
	// Count is how many invitations were re-sent or cancelled, or how many
	// held removals were applied.
	Count int `json:"count"`
	// Sweep counts a sweep's follow-ups by outcome.
	Sweep map[string]int `json:"sweep,omitempty"`
	// Error is the action's failure; the task itself succeeds so the result
	// reaches the CLI.
	Error string `json:"error,omitempty"`
}

// Validate reports an action the worker cannot carry out.
func (a AdminAction) Validate() error {
	switch a.Action {
	case AdminResend, AdminCancel:
		if a.Workspace == "" || a.PersonID == "" {
			return fmt.Errorf("admin action %s: workspace and person are required", a.Action)
		}
	case AdminResumeRevocations:
		if a.Workspace == "" {
			return fmt.Errorf("admin action %s: workspace is required", a.Action)
		}
	case AdminSweep:
	default:
		return fmt.Errorf("unknown admin action %q", a.Action)
	}
	return nil
}

// DecodeAdminAction parses and validates a task payload.
func DecodeAdminAction(payload []byte) (AdminAction, error) {
	var a AdminAction
	if err := json.Unmarshal(payload, &a); err != nil {
		return a, fmt.Errorf("decode %s payload: %w", TypeAdminAction, err)
	}
	return a, a.Validate()
}

// DecodeAdminResult parses a task's result.
func DecodeAdminResult(result []byte) (AdminResult, error) {
	var r AdminResult
	if err := json.Unmarshal(result, &r); err != nil {
		return r, fmt.Errorf("decode the result of an %s task: %w", TypeAdminAction, err)
	}
	return r, nil
}

// adminRetention keeps a finished action (and its result) long enough for the
// CLI to read it, and for the dashboard to show who did what.
const adminRetention = time.Hour

// NewAdminActionTask builds the task of an action with a fresh id. It is never
// retried: a failure is reported to the admin, who decides.
func NewAdminActionTask(a AdminAction, queue string, timeout time.Duration) (*asynq.Task, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("encode admin action: %w", err)
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("admin action id: %w", err)
	}
	return asynq.NewTask(TypeAdminAction, payload,
		asynq.TaskID("admin:"+a.Action+":"+hex.EncodeToString(b[:])),
		asynq.Queue(queue), asynq.MaxRetry(0), asynq.Timeout(timeout), asynq.Retention(adminRetention)), nil
}
