package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// AuditRecord is one line of the audit trail: a decision or an Atlassian change.
type AuditRecord struct {
	ID        string    `json:"id,omitempty"` // stream id
	Time      time.Time `json:"time"`
	PersonID  string    `json:"person,omitempty"`
	Email     string    `json:"email,omitempty"`
	Workspace string    `json:"workspace,omitempty"`
	Group     string    `json:"group,omitempty"`
	Rules     []string  `json:"rules,omitempty"`
	Actor     string    `json:"actor"`
	Action    string    `json:"action"`
	Outcome   string    `json:"outcome"`
	Detail    string    `json:"detail,omitempty"`
}

// Actions recorded in a person's history and the audit trail. Metrics and
// outcomes key on them, so they are named once here.
const (
	ActionDecided              = "decided"
	ActionError                = "error"
	ActionExcluded             = "excluded"
	ActionGroupAdded           = "group-added"
	ActionGroupAlreadyGiven    = "group-already-given"
	ActionGroupRemoved         = "group-removed"
	ActionIgnored              = "ignored"
	ActionInvitationAccepted   = "invitation-accepted"
	ActionInvitationExpired    = "invitation-expired"
	ActionInvitationResent     = "invitation-resent"
	ActionInvitationRevived    = "invitation-revived"
	ActionInvitationSent       = "invitation-sent"
	ActionInvitationsCancelled = "invitations-cancelled"
	ActionNoRuleMatches        = "no-rule-matches"
	ActionQueuedForBatch       = "queued-for-batch"
	ActionReactivated          = "reactivated"
	ActionReset                = "reset"
	ActionRevocationHeld       = "revocation-held"
	ActionRevocationReported   = "revocation-reported"
	ActionSeatLimit            = "seat-limit"
	ActionStaleEvent           = "stale-event"
	ActionRemovalRecheck       = "removal-recheck"
	ActionUserMissing          = "user-missing"
	ActionWaitingForEmail      = "waiting-for-email"
)

// Outcomes in the audit trail.
const (
	OutcomeOK       = "ok"
	OutcomeFailed   = "failed"
	OutcomeHeld     = "held"
	OutcomeReported = "reported"
	OutcomeDryRun   = "dry-run"
)

// Options configure a Store.
type Options struct {
	// AuditMaxLen bounds the audit stream (approximately: Redis trims whole nodes).
	AuditMaxLen int64
	// Observe sees every audit record once it is stored (metrics).
	Observe func(AuditRecord)
	// DryRun stores no entries: decisions go to the audit trail only, marked dry-run.
	DryRun bool
}

// AuditKey is the Redis stream holding the audit trail.
func (s *Store) AuditKey() string { return s.prefix + ":audit" }

func outcomeOf(action string) string {
	switch action {
	case ActionError:
		return OutcomeFailed
	case ActionRevocationHeld, ActionSeatLimit, ActionUserMissing:
		return OutcomeHeld
	case ActionRevocationReported:
		return OutcomeReported
	case ActionStaleEvent:
		return "ignored"
	}
	return OutcomeOK
}

func (s *Store) recordsOf(e *Entry) []AuditRecord {
	out := make([]AuditRecord, 0, len(e.unsaved))
	for _, ev := range e.unsaved {
		rec := AuditRecord{
			Time: ev.At, PersonID: e.PersonID, Email: e.Email, Workspace: e.Workspace, Group: ev.Group,
			Actor: ev.Actor, Action: ev.Action, Outcome: outcomeOf(ev.Action), Detail: ev.Detail,
		}
		if ev.Group != "" {
			rec.Rules = e.RulesByGroup[ev.Group]
		}
		if s.opts.DryRun {
			rec.Outcome = OutcomeDryRun
		}
		out = append(out, rec)
	}
	return out
}

func (s *Store) xadd(ctx context.Context, p redis.Pipeliner, rec AuditRecord) {
	p.XAdd(ctx, &redis.XAddArgs{
		Stream: s.AuditKey(), MaxLen: s.opts.AuditMaxLen, Approx: true,
		Values: auditValues(rec),
	})
}

// auditValues are a record's stream fields and values (Put's script writes
// them too).
func auditValues(rec AuditRecord) []any {
	return []any{
		"time", rec.Time.UTC().Format(time.RFC3339Nano), "person", rec.PersonID, "email", rec.Email,
		"workspace", rec.Workspace, "group", rec.Group, "rules", strings.Join(rec.Rules, ","),
		"actor", rec.Actor, "action", rec.Action, "outcome", rec.Outcome, "detail", rec.Detail,
	}
}

// Audit appends a decision that has no ledger entry (an ignored account, no
// matching rule) to the audit trail.
func (s *Store) Audit(ctx context.Context, rec AuditRecord) error {
	if s.opts.DryRun {
		rec.Outcome = OutcomeDryRun
	}
	if rec.Outcome == "" {
		rec.Outcome = outcomeOf(rec.Action)
	}
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		s.xadd(ctx, p, rec)
		return nil
	})
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	s.observe([]AuditRecord{rec})
	return nil
}

func (s *Store) observe(recs []AuditRecord) {
	if s.opts.Observe == nil {
		return
	}
	for _, r := range recs {
		s.opts.Observe(r)
	}
}

// ReadAudit returns up to count records from after the stream id (or from
// since, when after is ""), oldest first.
func (s *Store) ReadAudit(ctx context.Context, since time.Time, after string, count int64) ([]AuditRecord, error) {
	start := "-"
	if since.UnixMilli() > 0 {
		start = strconv.FormatInt(since.UnixMilli(), 10) + "-0"
	}
	if after != "" {
		start = "(" + after
	}
	msgs, err := s.rdb.XRangeN(ctx, s.AuditKey(), start, "+", count).Result()
	if err != nil {
		return nil, fmt.Errorf("read audit: %w", err)
	}
	return decodeAudit(msgs), nil
}

// WaitAudit blocks up to block for records after the stream id ("$" = new ones only).
func (s *Store) WaitAudit(ctx context.Context, after string, block time.Duration) ([]AuditRecord, error) {
	res, err := s.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{s.AuditKey(), after}, Block: block, Count: 1000}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("follow audit: %w", err)
	}
	var out []AuditRecord
	for _, st := range res {
		out = append(out, decodeAudit(st.Messages)...)
	}
	return out, nil
}

func decodeAudit(msgs []redis.XMessage) []AuditRecord {
	out := make([]AuditRecord, 0, len(msgs))
	for _, m := range msgs {
		get := func(k string) string { v, _ := m.Values[k].(string); return v }
		t, _ := time.Parse(time.RFC3339Nano, get("time"))
		rec := AuditRecord{
			ID: m.ID, Time: t, PersonID: get("person"), Email: get("email"), Workspace: get("workspace"),
			Group: get("group"), Actor: get("actor"), Action: get("action"), Outcome: get("outcome"), Detail: get("detail"),
		}
		if r := get("rules"); r != "" {
			rec.Rules = strings.Split(r, ",")
		}
		out = append(out, rec)
	}
	return out
}
