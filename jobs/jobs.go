// Package jobs defines the tasks that flow from the intake to the worker and
// the enqueuer that puts them on the Asynq queue.
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// Task types.
const (
	// TypeUserEvent carries one Jira user webhook (created, updated, deleted).
	TypeUserEvent = "jira:user_event"
	// TypeSweep is one tick of the invitation sweep.
	TypeSweep = "invitations:sweep"
	// TypeFollowUp looks after one person's pending invitations in a workspace:
	// acceptance, re-send, giving up.
	TypeFollowUp = "invitations:follow_up"
)

// Follow-up reasons.
const (
	ReasonDue   = "due"   // an invitation expired
	ReasonCheck = "check" // look whether the person joined early
	// ReasonRecheckRemoval removes again, later, groups whose add was in
	// doubt at revocation (a timed-out add that Bitbucket may apply late).
	ReasonRecheckRemoval = "recheck-removal"
)

// FollowUp is the payload of TypeFollowUp.
type FollowUp struct {
	Workspace string    `json:"workspace"`
	PersonID  string    `json:"person_id"`
	Reason    string    `json:"reason"`
	Tick      time.Time `json:"tick"`
	// Groups a removal re-check is about.
	Groups []string `json:"groups,omitempty"`
	// NotBefore delays the follow-up (zero: now).
	NotBefore time.Time `json:"not_before,omitzero"`
	// Activity is the sweep's answer from the organization's user search
	// (Atlassian-administered workspaces; nil: nobody searched).
	Activity *Activity `json:"activity,omitempty"`
}

// Activity is what one users/search (expand productAccess) said about an
// invitee's use of the workspace's Bitbucket.
type Activity struct {
	// LastActive is their last activity there (zero: none seen).
	LastActive time.Time `json:"last_active,omitzero"`
}

// Sweep is the payload of TypeSweep.
type Sweep struct {
	Tick time.Time `json:"tick"`
}

// Jira webhook events autoinvite acts on.
const (
	EventUserCreated = "user_created"
	EventUserUpdated = "user_updated"
	EventUserDeleted = "user_deleted"
)

// KnownEvent reports whether autoinvite acts on a webhook event.
func KnownEvent(e string) bool {
	return e == EventUserCreated || e == EventUserUpdated || e == EventUserDeleted
}

// EventsQueue names the queue of user events for a key prefix.
func EventsQueue(prefix string) string { return prefix + ":events" }

// User is the person a webhook is about, as Jira described them.
type User struct {
	AccountID   string `json:"account_id,omitempty"`   // Cloud
	AccountType string `json:"account_type,omitempty"` // Cloud
	Name        string `json:"name,omitempty"`         // Data Center username
	Key         string `json:"key,omitempty"`          // Data Center user key
	Email       string `json:"email,omitempty"`        // empty when hidden
	DisplayName string `json:"display_name,omitempty"`
	Active      *bool  `json:"active,omitempty"`
}

// PersonID is the stable ledger identity of a user: the Atlassian account ID on
// Cloud, the user key (or name) on Data Center.
func (u User) PersonID() string {
	switch {
	case u.AccountID != "":
		return "acct:" + u.AccountID
	case u.Key != "":
		return "dc:" + u.Key
	case u.Name != "":
		return "dc:" + u.Name
	default:
		return ""
	}
}

// Deactivated reports whether the event takes the user's access away.
func (e UserEvent) Deactivated() bool {
	return e.Event == EventUserDeleted || (e.User.Active != nil && !*e.User.Active)
}

// UserEvent is the payload of TypeUserEvent.
type UserEvent struct {
	Event      string    `json:"event"`
	DeliveryID string    `json:"delivery_id"`
	RequestID  string    `json:"request_id,omitempty"`
	Timestamp  int64     `json:"timestamp,omitempty"` // Jira's, in ms
	ReceivedAt time.Time `json:"received_at"`
	User       User      `json:"user"`
	// ConfigHash names the config in force when the webhook arrived: the task
	// is decided under it while the process still has it, even after a reload.
	ConfigHash string `json:"config_hash,omitempty"`
}

// DecodeUserEvent parses a task payload.
func DecodeUserEvent(payload []byte) (UserEvent, error) {
	var e UserEvent
	if err := json.Unmarshal(payload, &e); err != nil {
		return e, fmt.Errorf("decode %s payload: %w", TypeUserEvent, err)
	}
	return e, nil
}

// EnqueueOptions configures the Enqueuer.
type EnqueueOptions struct {
	Queue    string
	MaxRetry int
	Timeout  time.Duration
	// Retention keeps finished tasks (and so their ids) this long, which is what
	// turns a re-delivered webhook into a duplicate rather than a second task.
	Retention time.Duration
}

// Enqueuer puts tasks on the queue.
type Enqueuer struct {
	client *asynq.Client
	opts   EnqueueOptions
	// userEvent: the options of every user event, built once.
	userEvent []asynq.Option
}

// NewEnqueuer returns an enqueuer over an Asynq client (owned by the caller).
func NewEnqueuer(client *asynq.Client, opts EnqueueOptions) *Enqueuer {
	return &Enqueuer{client: client, opts: opts, userEvent: userEventOptions(opts)}
}

// TaskID is the Asynq task id of a delivery: one delivery, one task.
func TaskID(deliveryID string) string { return "delivery:" + deliveryID }

// EnqueueUserEvent enqueues the event once per delivery id. duplicate is true
// when a task for this delivery already exists (a re-delivery).
func (q *Enqueuer) EnqueueUserEvent(ctx context.Context, e UserEvent) (taskID string, duplicate bool, err error) {
	payload, err := marshalUserEvent(e)
	if err != nil {
		return "", false, fmt.Errorf("encode user event: %w", err)
	}
	taskID = TaskID(e.DeliveryID)
	opts := append(q.userEvent[:len(q.userEvent):len(q.userEvent)], asynq.TaskID(taskID))
	_, err = q.client.EnqueueContext(ctx, asynq.NewTask(TypeUserEvent, payload), opts...)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return taskID, true, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("enqueue delivery %s: %w", e.DeliveryID, err)
	}
	return taskID, false, nil
}

// EnqueueFollowUp queues one follow-up; the same person, workspace and tick
// is queued once however many sweepers find it.
func (q *Enqueuer) EnqueueFollowUp(ctx context.Context, f FollowUp) error {
	payload, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode follow-up: %w", err)
	}
	id := fmt.Sprintf("followup:%s:%s:%s:%d", f.Reason, f.Workspace, f.PersonID, f.Tick.UnixNano())
	opts := []asynq.Option{asynq.TaskID(id), asynq.Queue(q.opts.Queue), asynq.MaxRetry(q.opts.MaxRetry),
		asynq.Timeout(q.opts.Timeout), asynq.Retention(time.Hour)}
	if !f.NotBefore.IsZero() {
		opts = append(opts, NotBefore(f.NotBefore))
	}
	_, err = q.client.EnqueueContext(ctx, asynq.NewTask(TypeFollowUp, payload), opts...)
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue follow-up of %s in %s: %w", f.PersonID, f.Workspace, err)
	}
	return nil
}

// NotBefore schedules a task for no earlier than t. Asynq keeps schedules in
// whole seconds, truncated, so ProcessAt(t) can run a task up to a second
// before t; a recheck that must come after a late answer cannot be early.
func NotBefore(t time.Time) asynq.Option {
	if r := t.Truncate(time.Second); !r.Equal(t) {
		t = r.Add(time.Second)
	}
	return asynq.ProcessAt(t)
}

// EnqueueSweep queues the sweep of one tick. Every serve process's scheduler
// fires; the tick-stamped task id lets exactly one of them through.
func (q *Enqueuer) EnqueueSweep(ctx context.Context, tick time.Time) (duplicate bool, err error) {
	payload, _ := json.Marshal(Sweep{Tick: tick})
	_, err = q.client.EnqueueContext(ctx, asynq.NewTask(TypeSweep, payload),
		asynq.TaskID(fmt.Sprintf("sweep:%d", tick.Unix())), asynq.Queue(q.opts.Queue),
		asynq.MaxRetry(3), asynq.Timeout(q.opts.Timeout), asynq.Retention(24*time.Hour))
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("enqueue sweep %s: %w", tick.Format(time.RFC3339), err)
	}
	return false, nil
}
