package app_test

import (
	"context"
	"strings"
	"testing"

	"github.com/autoinvite/autoinvite/internal/testenv"
	"github.com/autoinvite/autoinvite/ledger"
)

const jiraT0 = int64(1763800000000) // Jira timestamps, ms

func invitationCalls(e *testenv.Env) int {
	return len(e.Fake.CallsTo("PUT", "/1.0/users/acme/invitations"))
}

// A user_updated that Jira retried after a later user_deleted was applied,
// and a signed user_created replayed under a new delivery id, are older than
// the deletion: both are recorded as stale and change nothing.
func TestStaleEventsDoNotUndoANewerDeletion(t *testing.T) {
	e := testenv.New(t)
	assertAccepted(t, e.WebhookAt("user_created", "o-1", jiraT0, cloudUser(noah, "noah@acme.com")), "accepted")
	e.WaitIdle()
	assertAccepted(t, e.WebhookAt("user_deleted", "o-3", jiraT0+3000, map[string]any{"accountId": noah, "active": false}), "accepted")
	e.WaitIdle()
	if got := e.Entry("acme", "acct:"+noah); got.Status != ledger.StatusCancelled {
		t.Fatalf("after the deletion: ledger = %+v", got)
	}
	sent := invitationCalls(e)

	// The retried update (older than the deletion) and the replayed signup.
	assertAccepted(t, e.WebhookAt("user_updated", "o-2", jiraT0+2000, cloudUser(noah, "noah@acme.com")), "accepted")
	assertAccepted(t, e.WebhookAt("user_created", "o-1-replayed", jiraT0, cloudUser(noah, "noah@acme.com")), "accepted")
	e.WaitIdle()
	if n := invitationCalls(e); n != sent {
		t.Fatalf("%d invitation calls after stale events, want %d", n, sent)
	}
	got := e.Entry("acme", "acct:"+noah)
	if got.Status != ledger.StatusCancelled || got.AnyPendingInvitation() {
		t.Fatalf("stale events changed the ledger: %+v", got)
	}
	assertAudited(t, e, "acct:"+noah, ledger.ActionStaleEvent, "older than the newest event applied")

	// A newer signup starts over; a deletion retried from before it is stale
	// too (nothing revoked, nothing archived).
	assertAccepted(t, e.WebhookAt("user_created", "o-4", jiraT0+4000, cloudUser(noah, "noah@acme.com")), "accepted")
	e.WaitIdle()
	assertAccepted(t, e.WebhookAt("user_deleted", "o-3-retried", jiraT0+3000, map[string]any{"accountId": noah, "active": false}), "accepted")
	e.WaitIdle()
	if got := e.Entry("acme", "acct:"+noah); got.Status != ledger.StatusInvited {
		t.Fatalf("after a newer signup and a stale deletion: ledger = %+v", got)
	}
	if info := e.QueueInfo(); info.Archived != 0 {
		t.Fatalf("%d tasks archived, want 0", info.Archived)
	}
}

// A deletion is a tombstone that only a newer event lifts: a newer
// user_updated with active: true (inactive → active) or a newer user_created.
func TestNewerActivationLiftsTheTombstone(t *testing.T) {
	e := testenv.New(t)
	assertAccepted(t, e.WebhookAt("user_created", "r-1", jiraT0, cloudUser(noah, "noah@acme.com")), "accepted")
	e.WaitIdle()
	assertAccepted(t, e.WebhookAt("user_deleted", "r-2", jiraT0+1000, map[string]any{"accountId": noah, "active": false}), "accepted")
	e.WaitIdle()
	assertAccepted(t, e.WebhookAt("user_updated", "r-3", jiraT0+2000, cloudUser(noah, "noah@acme.com")), "accepted")
	e.WaitIdle()
	got := e.Entry("acme", "acct:"+noah)
	if got.Status != ledger.StatusInvited || !got.AnyPendingInvitation() {
		t.Fatalf("after reactivation: ledger = %+v", got)
	}
	hist := e.History("acme", "acct:"+noah)
	if hist[len(hist)-1].Action != ledger.ActionInvitationSent || !hasAction(hist, ledger.ActionReactivated) {
		t.Fatalf("history = %+v", hist)
	}
}

// An admin's `invites cancel` survives the person's next profile edit.
func TestProfileEditDoesNotUndoAnAdminCancel(t *testing.T) {
	e := testenv.New(t)
	assertAccepted(t, e.WebhookAt("user_created", "c-1", jiraT0, cloudUser(noah, "noah@acme.com")), "accepted")
	e.WaitIdle()
	if n, err := e.App.Worker().Cancel(context.Background(), ledger.Ref{Workspace: "acme", PersonID: "acct:" + noah}, "cli:alice"); err != nil || n != 1 {
		t.Fatalf("cancel = %d, %v", n, err)
	}
	sent := invitationCalls(e)
	assertAccepted(t, e.WebhookAt("user_updated", "c-2", jiraT0+5000, cloudUser(noah, "noah@acme.com")), "accepted")
	e.WaitIdle()
	got := e.Entry("acme", "acct:"+noah)
	if got.Status != ledger.StatusCancelled || got.AnyPendingInvitation() || invitationCalls(e) != sent {
		t.Fatalf("a profile edit undid the cancel: ledger = %+v, invitation calls %d (was %d)", got, invitationCalls(e), sent)
	}
	// A new signup, newer than everything, starts over.
	assertAccepted(t, e.WebhookAt("user_created", "c-3", jiraT0+9000, cloudUser(noah, "noah@acme.com")), "accepted")
	e.WaitIdle()
	if got := e.Entry("acme", "acct:"+noah); got.Status != ledger.StatusInvited {
		t.Fatalf("after a newer signup: ledger = %+v", got)
	}
}

func hasAction(story []ledger.Event, action string) bool {
	for _, h := range story {
		if h.Action == action {
			return true
		}
	}
	return false
}

// Permanent failures before any decision are on record: in the ledger (every
// workspace the signup could concern) and in the audit trail, with a reason.
func TestUndecidableSignupsAreOnRecord(t *testing.T) {
	e := testenv.New(t)
	// Jira (Cloud) does not know this account: the rules need its groups.
	assertAccepted(t, e.Webhook("user_created", "u-ghost", cloudUser("557058:ghost", "ghost@acme.com")), "accepted")
	// A Data Center payload sent to a Cloud config.
	assertAccepted(t, e.Webhook("user_created", "u-dc", map[string]any{"name": "dave", "key": "JIRAUSER10100", "emailAddress": "dave@acme.com", "active": true}), "accepted")
	e.WaitIdle()
	for person, want := range map[string]string{
		"acct:557058:ghost": "Jira does not know this user",
		"dc:JIRAUSER10100":  "jira.deployment is cloud but the payload is a Jira Data Center user",
	} {
		got := e.Entry("acme", person)
		if got == nil || got.Status != ledger.StatusFailed || !strings.Contains(got.LastError, want) {
			t.Fatalf("%s: ledger = %+v; want failed with %q", person, got, want)
		}
		assertAudited(t, e, person, ledger.ActionError, want)
	}
	if info := e.QueueInfo(); info.Archived != 2 {
		t.Fatalf("archived %d, want 2 (permanent)", info.Archived)
	}
}
