package ledger

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// The ledger keeps one Redis string per person ({prefix}:p:<person>): one
// record per workspace, each "<workspace>\t<compact JSON>\n". A string rather
// than a hash: a hash whose values exceed hash-max-listpack-value (64 B) is a
// hashtable, about 140 B more per person. JSON never holds a raw tab or
// newline, and workspace names are checked for them, so the records split
// unambiguously; putScript replaces one record in place.
//
// The compact JSON uses one- or two-letter keys, Unix seconds and omits what
// the key says (workspace, person) and what the audit stream keeps (the
// story). Entries of the old format ({prefix}:entry:<ws>:<person>, full JSON
// with the history) are still read, and rewritten in this format by Put.

// storedEntry is an Entry as the ledger stores it.
type storedEntry struct {
	// AccountID is nil when the person id says it ("acct:<account id>").
	AccountID    *string             `json:"a,omitempty"`
	JiraUser     string              `json:"j,omitempty"`
	Email        string              `json:"e,omitempty"`
	DisplayName  string              `json:"n,omitempty"`
	Status       Status              `json:"s,omitempty"`
	Granted      []string            `json:"g,omitempty"`
	Waiting      []string            `json:"w,omitempty"`
	HandGiven    []string            `json:"h,omitempty"`
	HeldRemovals []string            `json:"hr,omitempty"`
	NextCheckAt  int64               `json:"k,omitempty"`
	MemberSeenAt int64               `json:"m,omitempty"`
	RulesByGroup map[string][]string `json:"r,omitempty"`
	Batched      map[string]int64    `json:"b,omitempty"`
	Intents      map[string]int64    `json:"i,omitempty"`
	Doubts       map[string]int64    `json:"d,omitempty"`
	Invitations  []storedInvitation  `json:"v,omitempty"`
	LastError    string              `json:"l,omitempty"`
	CreatedAt    int64               `json:"c,omitempty"`
	UpdatedAt    int64               `json:"u,omitempty"`
	Decision     string              `json:"q,omitempty"`
}

type storedInvitation struct {
	Group     string `json:"g"`
	SentAt    int64  `json:"t,omitempty"`
	ExpiresAt int64  `json:"x,omitempty"`
	FirstSent int64  `json:"f,omitempty"` // only when before SentAt
	Resends   int    `json:"n,omitempty"`
	State     string `json:"s,omitempty"` // "" = pending
}

// unix is t in whole seconds, 0 for the zero time.
func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func fromUnix(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(n, 0).UTC()
}

func unixMap(m map[string]time.Time) map[string]int64 {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]int64, len(m))
	for k, t := range m {
		out[k] = unix(t)
	}
	return out
}

func timeMap(m map[string]int64) map[string]time.Time {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]time.Time, len(m))
	for k, n := range m {
		out[k] = fromUnix(n)
	}
	return out
}

// normalize makes e what reading it back gives: times in whole seconds, and
// each invitation's first send set. An entry just written equals the entry
// read back (the worker compares them to skip writes).
func (e *Entry) normalize() {
	sec := func(t *time.Time) {
		if !t.IsZero() {
			*t = fromUnix(t.Unix())
		}
	}
	for _, m := range []map[string]time.Time{e.Batched, e.Intents, e.Doubts} {
		for k, t := range m {
			sec(&t)
			m[k] = t
		}
	}
	for i := range e.Invitations {
		inv := &e.Invitations[i]
		sec(&inv.SentAt)
		sec(&inv.ExpiresAt)
		sec(&inv.FirstSentAt)
		if inv.FirstSentAt.IsZero() || inv.FirstSentAt.After(inv.SentAt) {
			inv.FirstSentAt = inv.SentAt
		}
	}
	sec(&e.NextCheckAt)
	sec(&e.MemberSeenAt)
	sec(&e.CreatedAt)
	sec(&e.UpdatedAt)
}

// encodeEntry is e's compact JSON.
func encodeEntry(e *Entry) ([]byte, error) {
	st := storedEntry{
		JiraUser: e.JiraUser, Email: e.Email, DisplayName: e.DisplayName, Status: e.Status,
		Granted: e.Granted, Waiting: e.Waiting, HandGiven: e.HandGiven, HeldRemovals: e.HeldRemovals,
		NextCheckAt: unix(e.NextCheckAt), MemberSeenAt: unix(e.MemberSeenAt), RulesByGroup: e.RulesByGroup,
		Batched: unixMap(e.Batched), Intents: unixMap(e.Intents), Doubts: unixMap(e.Doubts),
		LastError: e.LastError, CreatedAt: unix(e.CreatedAt), UpdatedAt: unix(e.UpdatedAt), Decision: e.Decision,
	}
	if e.AccountID != accountOf(e.PersonID) {
		st.AccountID = &e.AccountID
	}
	for _, inv := range e.Invitations {
		si := storedInvitation{Group: inv.Group, SentAt: unix(inv.SentAt), ExpiresAt: unix(inv.ExpiresAt), Resends: inv.Resends}
		if inv.State != InvitationPending {
			si.State = inv.State
		}
		if f := unix(inv.FirstSentAt); f != 0 && f < si.SentAt {
			si.FirstSent = f
		}
		st.Invitations = append(st.Invitations, si)
	}
	return json.Marshal(&st)
}

// decodeEntry reads a compact record of workspace and person.
func decodeEntry(workspace, personID string, raw []byte) (*Entry, error) {
	var st storedEntry
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("decode ledger %s/%s: %w", workspace, personID, err)
	}
	e := &Entry{
		Workspace: workspace, PersonID: personID,
		AccountID: accountOf(personID), JiraUser: st.JiraUser, Email: st.Email, DisplayName: st.DisplayName, Status: st.Status,
		Granted: st.Granted, Waiting: st.Waiting, HandGiven: st.HandGiven, HeldRemovals: st.HeldRemovals,
		NextCheckAt: fromUnix(st.NextCheckAt), MemberSeenAt: fromUnix(st.MemberSeenAt), RulesByGroup: st.RulesByGroup,
		Batched: timeMap(st.Batched), Intents: timeMap(st.Intents), Doubts: timeMap(st.Doubts),
		LastError: st.LastError, CreatedAt: fromUnix(st.CreatedAt), UpdatedAt: fromUnix(st.UpdatedAt), Decision: st.Decision,
	}
	if st.AccountID != nil {
		e.AccountID = *st.AccountID
	}
	for _, si := range st.Invitations {
		inv := Invitation{Group: si.Group, SentAt: fromUnix(si.SentAt), ExpiresAt: fromUnix(si.ExpiresAt), Resends: si.Resends,
			State: si.State, FirstSentAt: fromUnix(si.SentAt)}
		if inv.State == "" {
			inv.State = InvitationPending
		}
		if si.FirstSent != 0 {
			inv.FirstSentAt = fromUnix(si.FirstSent)
		}
		e.Invitations = append(e.Invitations, inv)
	}
	return e, nil
}

// legacyEntry is an entry of the old format: the full JSON with the history.
type legacyEntry struct {
	Entry
	History []Event `json:"history,omitempty"`
}

// decodeLegacy reads an entry of the old format; what the new format derives
// from the story (the decision in progress, first invitation times) is
// replayed from its history.
func decodeLegacy(workspace, personID string, raw []byte) (*Entry, error) {
	var old legacyEntry
	if err := json.Unmarshal(raw, &old); err != nil {
		return nil, fmt.Errorf("decode ledger %s/%s (old format): %w", workspace, personID, err)
	}
	e := &old.Entry
	e.Workspace, e.PersonID = workspace, personID
	for _, ev := range old.History {
		e.follow(ev.At, ev.Action, ev.Group, ev.Detail)
	}
	return e, nil
}

// accountOf is the Atlassian account id a person id names ("" for Data Center).
func accountOf(personID string) string {
	id, _ := strings.CutPrefix(personID, "acct:")
	if id == personID {
		return ""
	}
	return id
}

// record is a workspace's record in a person's value: "<ws>\t<json>\n".
func record(workspace string, raw []byte) string {
	return workspace + "\t" + string(raw) + "\n"
}

// records splits a person's value into workspace -> compact JSON.
func records(value string) map[string]string {
	out := map[string]string{}
	for line := range strings.SplitSeq(value, "\n") {
		if ws, raw, ok := strings.Cut(line, "\t"); ok {
			out[ws] = raw
		}
	}
	return out
}

// validWorkspace reports whether a workspace name can be a record's key.
func validWorkspace(ws string) bool { return ws != "" && !strings.ContainsAny(ws, "\t\n") }
