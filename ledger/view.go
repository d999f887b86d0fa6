package ledger

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Pending is one pending invitation, for the ledger view, the digest and the
// pending-by-age gauge.
type Pending struct {
	Workspace   string
	PersonID    string
	Email       string
	DisplayName string
	Group       string
	FirstSentAt time.Time // the first invitation, before any re-send
	SentAt      time.Time // the latest (re-)send
	ExpiresAt   time.Time
	Resends     int
}

// Age is how long the person has been invited.
func (p Pending) Age(now time.Time) time.Duration { return now.Sub(p.FirstSentAt) }

// FirstInvitedAt is when group was first invited, before any re-send.
func (e *Entry) FirstInvitedAt(group string) time.Time {
	for _, inv := range e.Invitations {
		if inv.Group != group {
			continue
		}
		if !inv.FirstSentAt.IsZero() && inv.FirstSentAt.Before(inv.SentAt) {
			return inv.FirstSentAt
		}
		return inv.SentAt
	}
	return time.Time{}
}

// PendingOf lists an entry's pending invitations.
func PendingOf(e *Entry) []Pending {
	var out []Pending
	for _, inv := range e.Invitations {
		if inv.State != InvitationPending {
			continue
		}
		first := e.FirstInvitedAt(inv.Group)
		if first.IsZero() || first.After(inv.SentAt) {
			first = inv.SentAt
		}
		out = append(out, Pending{
			Workspace: e.Workspace, PersonID: e.PersonID, Email: e.Email, DisplayName: e.DisplayName, Group: inv.Group,
			FirstSentAt: first, SentAt: inv.SentAt, ExpiresAt: inv.ExpiresAt, Resends: inv.Resends,
		})
	}
	return out
}

// PendingInvitations lists every pending invitation, oldest first. It reads
// the entries with a pending invitation only (the due index), not the ledger.
func (s *Store) PendingInvitations(ctx context.Context) ([]Pending, error) {
	refs, err := s.DueAt(ctx, s.DueKey(), time.Unix(1<<40, 0), 0)
	if err != nil {
		return nil, err
	}
	var out []Pending
	for _, r := range refs {
		e, err := s.Get(ctx, r.Workspace, r.PersonID)
		if err != nil {
			return nil, err
		}
		if e != nil {
			out = append(out, PendingOf(e)...)
		}
	}
	slices.SortFunc(out, func(a, b Pending) int { return a.FirstSentAt.Compare(b.FirstSentAt) })
	return out, nil
}

// PendingAges returns the age of every pending invitation (metrics).
func (s *Store) PendingAges(ctx context.Context, now time.Time) ([]time.Duration, error) {
	pending, err := s.PendingInvitations(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]time.Duration, len(pending))
	for i, p := range pending {
		out[i] = p.Age(now)
	}
	return out, nil
}

func (s *Store) statsKey() string { return s.prefix + ":stats:invitations" }

// CountInvitationOutcome adds one accepted (or given-up) invitation to the
// workspace's tally, which every process shares.
func (s *Store) CountInvitationOutcome(ctx context.Context, workspace string, accepted bool) error {
	field := workspace + "\x00given-up"
	if accepted {
		field = workspace + "\x00accepted"
	}
	if err := s.rdb.HIncrBy(ctx, s.statsKey(), field, 1).Err(); err != nil {
		return fmt.Errorf("count invitation outcome in %s: %w", workspace, err)
	}
	return nil
}

// InvitationOutcomes returns per workspace [accepted, given up].
func (s *Store) InvitationOutcomes(ctx context.Context) (map[string][2]int64, error) {
	raw, err := s.rdb.HGetAll(ctx, s.statsKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("read invitation outcomes: %w", err)
	}
	out := map[string][2]int64{}
	for k, v := range raw {
		ws, kind, _ := strings.Cut(k, "\x00")
		var n int64
		fmt.Sscan(v, &n)
		o := out[ws]
		if kind == "accepted" {
			o[0] = n
		} else {
			o[1] = n
		}
		out[ws] = o
	}
	return out, nil
}

// History is a person's story in a workspace, oldest first: the newest limit
// of their audit records there, which the audit stream keeps (approximately
// its last audit.max_entries records of everyone). For admins, not hot paths.
func (s *Store) History(ctx context.Context, workspace, personID string, limit int) ([]Event, error) {
	recs, err := s.auditOf(ctx, personID, workspace, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Event, len(recs))
	for i, r := range recs {
		out[len(recs)-1-i] = EventOf(r)
	}
	return out, nil
}

// Stories returns the story of every entry the audit stream still has
// records of, oldest first, in one pass over the stream: for listings of
// many entries (admins), where History per entry would read it each time.
func (s *Store) Stories(ctx context.Context) (map[Ref][]Event, error) {
	out := map[Ref][]Event{}
	after := ""
	for {
		recs, err := s.ReadAudit(ctx, time.Time{}, after, 1000)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if r.Workspace != "" && r.PersonID != "" {
				ref := Ref{Workspace: r.Workspace, PersonID: r.PersonID}
				out[ref] = append(out[ref], EventOf(r))
			}
		}
		if len(recs) < 1000 {
			return out, nil
		}
		after = recs[len(recs)-1].ID
	}
}

// EventOf is an audit record as a line of the person's story.
func EventOf(r AuditRecord) Event {
	return Event{At: r.Time, Actor: r.Actor, Action: r.Action, Group: r.Group, Detail: r.Detail}
}

// AuditOf returns a person's newest audit records (at most limit), newest
// first. It reads the stream backwards in pages: for admins, not hot paths.
func (s *Store) AuditOf(ctx context.Context, personID string, limit int) ([]AuditRecord, error) {
	return s.auditOf(ctx, personID, "", limit)
}

// auditOf is AuditOf within one workspace ("" = all).
func (s *Store) auditOf(ctx context.Context, personID, workspace string, limit int) ([]AuditRecord, error) {
	var out []AuditRecord
	end := "+"
	for len(out) < limit {
		msgs, err := s.rdb.XRevRangeN(ctx, s.AuditKey(), end, "-", 1000).Result()
		if err != nil {
			return nil, fmt.Errorf("read audit of %s: %w", personID, err)
		}
		for _, r := range decodeAudit(msgs) {
			if r.PersonID == personID && (workspace == "" || r.Workspace == workspace) && len(out) < limit {
				out = append(out, r)
			}
		}
		if len(msgs) < 1000 {
			break
		}
		end = "(" + msgs[len(msgs)-1].ID
	}
	return out, nil
}

// AuditBetween returns the records of [since, until), oldest first, reading
// pages of 1000 (the digest).
func (s *Store) AuditBetween(ctx context.Context, since, until time.Time, fn func(AuditRecord)) error {
	start := fmt.Sprintf("%d-0", since.UnixMilli())
	stop := fmt.Sprintf("(%d-0", until.UnixMilli())
	for {
		msgs, err := s.rdb.XRangeN(ctx, s.AuditKey(), start, stop, 1000).Result()
		if err != nil {
			return fmt.Errorf("read audit: %w", err)
		}
		for _, r := range decodeAudit(msgs) {
			fn(r)
		}
		if len(msgs) < 1000 {
			return nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}
