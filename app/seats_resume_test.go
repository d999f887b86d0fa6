package app_test

import (
	"context"
	"net/http"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/internal/testenv"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
)

// Two signups counted at once when one seat is left: one invitation goes
// out, the other is held for seats.
func TestConcurrentSignupsTakeTheLastSeatOnce(t *testing.T) {
	e := testenv.New(t, testenv.IntakeOnly(), testenv.WithRules(`
workspaces:
  - workspace: acme
    max_members: 2
    rules:
      - {name: everyone, match: {}, groups: [readers]}
`))
	// The sandbox workspace has one member (Mia): one seat left. Bitbucket
	// takes its time to send an invitation, so both count before either shows.
	e.Fake.InjectFault(fake.Fault{Method: "PUT", PathPrefix: "/1.0/users/acme/invitations", Delay: 300 * time.Millisecond, Apply: true, Times: 2})
	active := true
	ids := []string{"557058:last-seat-a", "557058:last-seat-b"}
	var wg sync.WaitGroup
	errs := make([]error, len(ids))
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev := jobs.UserEvent{Event: jobs.EventUserCreated, DeliveryID: "d-" + id, ReceivedAt: time.Now(),
				User: jobs.User{AccountID: id, AccountType: "atlassian", Email: id[7:] + "@acme.com", Active: &active}}
			errs[i] = e.App.Worker().ProcessUserEvent(context.Background(), ev)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("signup %d: %v", i, err)
		}
	}
	if n := len(invitationPuts(e.Fake.Fake)); n != 1 {
		t.Fatalf("invitations sent = %d, want 1 (max_members 2, 1 member)", n)
	}
	var statuses []ledger.Status
	var held *ledger.Entry
	for _, id := range ids {
		got := e.Entry("acme", "acct:"+id)
		statuses = append(statuses, got.Status)
		if got.Status == ledger.StatusSeatLimit {
			held = got
		}
	}
	if held == nil || !(statuses[0] == ledger.StatusInvited || statuses[1] == ledger.StatusInvited) {
		t.Fatalf("statuses = %v, want one invited and one %s", statuses, ledger.StatusSeatLimit)
	}
	hist := e.History(held.Workspace, held.PersonID)
	last := hist[len(hist)-1]
	if last.Action != ledger.ActionSeatLimit || len(held.Invitations) != 0 || !reflect.DeepEqual(held.Waiting, []string{"readers"}) {
		t.Fatalf("held entry = %+v", held)
	}
	// Its count may or may not have seen the other's invitation, whose
	// reservation counts either way (it may have been missed).
	if d := last.Detail; d != "1 members + 0 pending invitations + 1 being sent reach max_members 2" &&
		d != "1 members + 1 pending invitations + 1 being sent reach max_members 2" {
		t.Fatalf("seat-limit detail = %q", d)
	}

	// The seat frees up: `invites resend` sends the held one.
	e.WriteRules("workspaces:\n  - workspace: acme\n    max_members: 3\n    rules:\n      - {name: everyone, match: {}, groups: [readers]}\n")
	if r := reload(e); r.Status != http.StatusOK {
		t.Fatal(r.Raw)
	}
	n, err := e.App.Worker().Resend(t.Context(), ledger.Ref{Workspace: "acme", PersonID: held.PersonID}, "cli:ops")
	if err != nil || n != 1 {
		t.Fatalf("resend = %d, %v", n, err)
	}
	if got := e.Entry("acme", held.PersonID); got.Status != ledger.StatusInvited {
		t.Fatalf("after resend: %+v", got)
	}
}

// `revocations resume` keeps a person held when their removal fails: the
// status still counts them and the next resume removes the group.
func TestResumeKeepsHeldRemovalThatFails(t *testing.T) {
	e := testenv.New(t, testenv.WithRules(`
revocation: {max_removals_per_hour: 2}
workspaces:
  - workspace: acme
    rules:
      - {name: everyone, match: {}, groups: [readers]}
`))
	var ids []string
	for i := 0; i < 3; i++ {
		id := "557058:resume-" + string(rune('a'+i))
		ids = append(ids, id)
		e.Fake.AddMember("acme", id) // all before the signups: a listing they make must find each
	}
	for _, id := range ids {
		assertAccepted(t, e.Webhook("user_created", "c-"+id, cloudUser(id, "")), "accepted")
	}
	e.WaitIdle()
	for _, id := range ids {
		assertAccepted(t, e.Webhook("user_deleted", "x-"+id, map[string]any{"accountId": id}), "accepted")
	}
	e.WaitIdle()
	left := e.Fake.GroupMembers("acme", "readers")
	if len(left) != 1 {
		t.Fatalf("readers after 3 deactivations with a limit of 2 = %v", left)
	}
	held := left[0]
	ctx := context.Background()
	if tripped, _, n, err := e.App.Ledger().Breaker(ctx, "acme"); err != nil || !tripped || n != 1 {
		t.Fatalf("breaker = %v, %d held, %v", tripped, n, err)
	}

	// Bitbucket fails the held removal.
	e.Fake.InjectFault(fake.Fault{Method: "DELETE", PathPrefix: "/1.0/groups/acme/readers/members/" + held, Status: 500, Body: "oops", Times: 1})
	removed, err := e.App.Worker().ResumeRevocations(ctx, "acme", "cli:ops")
	if err == nil || removed != 0 {
		t.Fatalf("resume with a failing removal = %d, %v", removed, err)
	}
	if tripped, _, n, err := e.App.Ledger().Breaker(ctx, "acme"); err != nil || tripped || n != 1 {
		t.Fatalf("after the failed resume: breaker %v, %d held (want 1), %v", tripped, n, err)
	}
	entry := e.Entry("acme", "acct:"+held)
	if !reflect.DeepEqual(entry.HeldRemovals, []string{"readers"}) || !entry.HasGranted("readers") {
		t.Fatalf("entry after the failed resume = %+v", entry)
	}

	// The next resume finishes the job and releases them.
	removed, err = e.App.Worker().ResumeRevocations(ctx, "acme", "cli:ops")
	if err != nil || removed != 1 {
		t.Fatalf("second resume = %d, %v", removed, err)
	}
	if m := e.Fake.GroupMembers("acme", "readers"); len(m) != 0 {
		t.Fatalf("readers after the second resume = %v", m)
	}
	if _, _, n, _ := e.App.Ledger().Breaker(ctx, "acme"); n != 0 {
		t.Fatalf("still %d held after the removal succeeded", n)
	}
	if got := e.Entry("acme", "acct:"+held); got.Status != ledger.StatusRevoked || len(got.HeldRemovals) != 0 {
		t.Fatalf("entry after the second resume = %+v", got)
	}
}
