// Package reconcile compares what the rules say a person should have in a
// workspace with what Bitbucket has and what the ledger says autoinvite
// granted, and names each difference. It is pure: the worker gathers the
// three views and carries out what is found; the CLI prints the table.
package reconcile

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/autoinvite/autoinvite/ledger"
)

// Kinds of drift.
const (
	// KindMissing: the rules give a group that neither Bitbucket nor the
	// ledger has (a missed signup, a Jira group joined after signup).
	KindMissing = "missing"
	// KindDeactivated: Jira says inactive, autoinvite's grants are still there.
	KindDeactivated = "deactivated"
	// KindRemovedByHand: autoinvite granted it, Bitbucket no longer has it.
	KindRemovedByHand = "removed-by-hand"
	// KindNotCovered: in the group, never granted by autoinvite, no rule gives it.
	KindNotCovered = "not-covered"
	// KindNoLongerCovered: granted by autoinvite, the rules no longer give it
	// (a rule change never revokes by itself).
	KindNoLongerCovered = "no-longer-covered"
	// KindHeld: something already waits for an operator (breaker, given-up
	// invitation, cancelled access of an active person).
	KindHeld = "held"
)

// Actions a row's drift leads to.
const (
	ActGrant   = "grant"   // grant or invite through the signup path
	ActRegrant = "regrant" // grant again what was removed by hand
	ActRevoke  = "revoke"  // revoke under the workspace's revoke mode
	ActReport  = "report"  // reported only
)

// Row is one difference.
type Row struct {
	Person    string `json:"person"` // email, or the person id when Jira hides it
	PersonID  string `json:"person_id"`
	Workspace string `json:"workspace"`
	Group     string `json:"group"`
	Kind      string `json:"kind"`
	// Action is what the drift calls for; Outcome what the pass did about
	// it ("would grant" in report mode and dry runs).
	Action  string `json:"action"`
	Outcome string `json:"outcome,omitempty"`
	Why     string `json:"why"`
}

// Actionable reports whether the row calls for a change (not only a report).
func (r Row) Actionable() bool { return r.Action != ActReport }

// Report is the outcome of one pass.
type Report struct {
	Scope      string    `json:"scope"`
	DryRun     bool      `json:"dry_run"`
	Started    time.Time `json:"started"`
	Finished   time.Time `json:"finished"`
	Resumed    bool      `json:"resumed,omitempty"`
	Users      int       `json:"users"` // Jira users examined
	Rows       []Row     `json:"rows"`
	Notes      []string  `json:"notes,omitempty"`
	Workspaces []string  `json:"workspaces"`
	Error      string    `json:"error,omitempty"`
}

// Fixed counts the rows the pass repaired.
func (r Report) Fixed() int {
	n := 0
	for _, row := range r.Rows {
		if row.Fixed() {
			n++
		}
	}
	return n
}

// fixedOutcomes are the outcomes (prefixes) of a repair that took effect or
// is on its way (a batched call, an invitation); anything else (would,
// failed, held, not revoked, unchanged) is not a fix.
var fixedOutcomes = []string{"granted", "invited", "queued", "revoked", "invitation cancelled", "signup handled"}

// Fixed reports whether the pass repaired this row's drift.
func (r Row) Fixed() bool {
	return r.Actionable() && slices.ContainsFunc(fixedOutcomes, func(p string) bool { return strings.HasPrefix(r.Outcome, p) })
}

// Sort orders rows by workspace, person, group and kind (stable output).
func Sort(rows []Row) {
	slices.SortStableFunc(rows, func(a, b Row) int {
		for _, c := range [][2]string{{a.Workspace, b.Workspace}, {a.Person, b.Person}, {a.Group, b.Group}, {a.Kind, b.Kind}} {
			if n := strings.Compare(c[0], c[1]); n != 0 {
				return n
			}
		}
		return 0
	})
}

// WriteTable prints the rows as PERSON WORKSPACE GROUP ACTION WHY.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PERSON\tWORKSPACE\tGROUP\tACTION\tWHY")
	for _, r := range rows {
		action := r.Outcome
		if action == "" {
			action = r.Action
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Person, r.Workspace, orDash(r.Group), action, r.Why)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Person is one Jira user as a pass sees them in one workspace.
type Person struct {
	Active bool
	// Desired are the groups the rules give (nil when none or undecidable).
	Desired []string
	// Decided is false when the rules could not decide (a hidden email the
	// rules or exclusions depend on): the signup path settles those.
	Decided bool
	// Actual are the person's groups among Listed, as Bitbucket has them.
	Actual map[string]bool
	// Listed are the groups whose members were read (the rules' groups).
	Listed map[string]bool
	Entry  *ledger.Entry // nil when the ledger has none
	// Regrant re-adds what was removed by hand (regrant_removed).
	Regrant bool
}

// Compare names the differences for one person in one workspace. Rows
// carry Workspace, Group, Kind, Action and Why; the caller fills in who.
func Compare(p Person) []Row {
	e := p.Entry
	var rows []Row
	add := func(group, kind, action, why string) {
		rows = append(rows, Row{Group: group, Kind: kind, Action: action, Why: why})
	}
	if !p.Active {
		if e == nil {
			return nil
		}
		switch e.Status {
		case ledger.StatusRevoked, ledger.StatusCancelled:
			return nil
		case ledger.StatusRevocationHeld:
			for _, g := range e.HeldRemovals {
				add(g, KindHeld, ActReport, "deactivated in Jira; removal held by the circuit breaker: `autoinvite revocations resume`")
			}
			return rows
		}
		for _, g := range e.Granted {
			add(g, KindDeactivated, ActRevoke, "deactivated in Jira, still holds a group autoinvite granted")
		}
		for _, g := range e.PendingGroups() {
			if !slices.Contains(e.Granted, g) {
				add(g, KindDeactivated, ActRevoke, "deactivated in Jira, autoinvite's invitation is pending")
			}
		}
		return rows
	}
	if !p.Decided {
		if e == nil && len(p.Desired) > 0 {
			add("", KindMissing, ActGrant, "no ledger entry: the signup webhook was missed (the rules need the hidden email)")
		}
		return rows
	}
	for _, g := range p.Desired {
		has := p.Actual[g]
		switch {
		case has:
			continue // the access is there, whoever gave it
		case e == nil:
			add(g, KindMissing, ActGrant, "no ledger entry: the signup webhook was missed")
		case slices.Contains(e.Granted, g) && p.Listed[g]:
			if p.Regrant {
				add(g, KindRemovedByHand, ActRegrant, "autoinvite granted it, someone removed it; regrant_removed is on")
			} else {
				add(g, KindRemovedByHand, ActReport, "autoinvite granted it, someone removed it: not re-added (regrant_removed: true would)")
			}
		case slices.Contains(e.HandGiven, g) && p.Listed[g]:
			add(g, KindRemovedByHand, ActReport, "given by hand before autoinvite, since removed: not re-added")
		case e.HasGranted(g), inProgress(e, g):
			continue
		default:
			switch e.Status {
			case ledger.StatusWaitingForEmail, ledger.StatusSeatLimit, ledger.StatusExcluded, ledger.StatusUserMissing, ledger.StatusBatched:
				continue // waiting for a reason the signup path recorded
			case ledger.StatusExpired:
				add(g, KindHeld, ActReport, "invitation given up after max_resends: `autoinvite invites resend` starts again")
			case ledger.StatusCancelled, ledger.StatusRevoked, ledger.StatusRevocationHeld:
				add(g, KindHeld, ActReport, fmt.Sprintf("active in Jira but %s in the ledger: only a new signup or `autoinvite invites resend` starts again", e.Status))
			case ledger.StatusFailed:
				add(g, KindMissing, ActGrant, "the last attempt failed: "+firstLine(e.LastError))
			default:
				add(g, KindMissing, ActGrant, "the rules give it now (a Jira group joined or a rule added after signup)")
			}
		}
	}
	if e != nil {
		for _, g := range e.Granted {
			if !slices.Contains(p.Desired, g) {
				add(g, KindNoLongerCovered, ActReport, "autoinvite granted it, the rules no longer give it: a rule change never revokes")
			}
		}
	}
	return rows
}

// inProgress reports a grant on its way: a pending invitation, a group
// waiting for an invitee to join, or a queued batch.
func inProgress(e *ledger.Entry, g string) bool {
	if e.PendingInvitation(g) != nil {
		return true
	}
	if _, ok := e.Batched[g]; ok {
		return true
	}
	return slices.Contains(e.Waiting, g) && e.AnyPendingInvitation()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}
