package worker_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
)

// The task times out while Bitbucket is still adding the person to the group
// (the answer arrives late, but the add was applied). The retry meets 409:
// because the intent was on record before the call, the group is
// autoinvite's grant, not one given by hand, and a deactivation removes it.
func TestLateAppliedAddIsRecordedAsOurGrant(t *testing.T) {
	h := newHarness(t, inviteRules, 2*time.Second)
	mia := fake.DemoMemberAccountID
	h.fake.InjectFault(fake.Fault{Method: "PUT", PathPrefix: "/1.0/groups/acme/developers/members/", Delay: 500 * time.Millisecond, Apply: true, Times: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err := h.w.ProcessUserEvent(ctx, signup(mia, "mia@acme.com"))
	cancel()
	if err == nil {
		t.Fatal("the first attempt should have timed out")
	}
	e, _ := h.ledger.Get(context.Background(), "acme", "acct:"+mia)
	if e == nil || !e.Intended("developers") {
		t.Fatalf("after the timeout the intent is not on record: %+v", e)
	}
	time.Sleep(500 * time.Millisecond) // Bitbucket applies the add
	if !slices.Contains(h.fake.GroupMembers("acme", "developers"), mia) {
		t.Fatal("the fake did not apply the late add")
	}

	if err := h.w.ProcessUserEvent(context.Background(), signup(mia, "mia@acme.com")); err != nil {
		t.Fatalf("retry: %v", err)
	}
	e, _ = h.ledger.Get(context.Background(), "acme", "acct:"+mia)
	if !slices.Equal(e.Granted, []string{"developers"}) || len(e.HandGiven) != 0 || len(e.Intents) != 0 {
		t.Fatalf("after the retry: granted %v, hand-given %v, intents %v; want developers as our grant", e.Granted, e.HandGiven, e.Intents)
	}

	active := false
	del := jobs.UserEvent{Event: jobs.EventUserDeleted, DeliveryID: "d-del", Timestamp: 1763800009000, ReceivedAt: time.Now(), User: jobs.User{AccountID: mia, Active: &active}}
	if err := h.w.ProcessUserEvent(context.Background(), del); err != nil {
		t.Fatalf("deactivation: %v", err)
	}
	if slices.Contains(h.fake.GroupMembers("acme", "developers"), mia) {
		t.Fatal("the deactivation left autoinvite's grant in place")
	}
}

// An add goes unanswered (503), the deactivation's removal of that group
// fails too (Bitbucket says "not a member", then cannot be asked to
// confirm), and only then does the late add land. The doubt must survive the
// failed removal, so the deactivation's retry removes the group; and the
// later re-check must not take the failed status for "given again".
func TestDoubtfulAddSurvivesAFailedRemoval(t *testing.T) {
	for _, via := range []string{"retry", "recheck"} {
		t.Run(via, func(t *testing.T) {
			h := newHarness(t, inviteRules, 2*time.Second)
			ctx := context.Background()
			mia := fake.DemoMemberAccountID
			h.fake.InjectFault(fake.Fault{Method: "PUT", PathPrefix: "/1.0/groups/acme/developers/members/", Status: 503, Times: 1})
			if err := h.w.ProcessUserEvent(ctx, signup(mia, "mia@acme.com")); err == nil {
				t.Fatal("the signup should have failed on the 503")
			}

			// The retry needs a failure worth retrying (503); the re-check
			// also follows one that is not (403: the revocation is "failed").
			confirm := map[string]int{"retry": 503, "recheck": 403}[via]
			h.fake.InjectFault(fake.Fault{Method: "GET", PathPrefix: "/1.0/groups/acme/developers/members", Status: confirm, Times: 1})
			active := false
			del := jobs.UserEvent{Event: jobs.EventUserDeleted, DeliveryID: "d-del", Timestamp: 1763800009000, ReceivedAt: time.Now(), User: jobs.User{AccountID: mia, Active: &active}}
			if err := h.w.ProcessUserEvent(ctx, del); err == nil {
				t.Fatal("the deactivation should have failed: the removal could not be confirmed")
			}
			e, _ := h.ledger.Get(ctx, "acme", "acct:"+mia)
			if e == nil || e.Doubts["developers"].IsZero() {
				t.Fatalf("after the failed removal: %+v; want the doubt on developers kept", e)
			}
			if want := map[string]ledger.Status{"retry": ledger.StatusRevoked, "recheck": ledger.StatusFailed}[via]; e.Status != want {
				t.Fatalf("after the failed removal: status %s, want %s", e.Status, want)
			}

			h.fake.AddMember("acme", mia, "developers") // the unanswered add lands
			switch via {
			case "retry":
				if err := h.w.ProcessUserEvent(ctx, del); err != nil {
					t.Fatalf("deactivation retry: %v", err)
				}
			case "recheck":
				ref := ledger.Ref{Workspace: "acme", PersonID: "acct:" + mia}
				if err := h.w.RecheckRemoval(ctx, ref, []string{"developers"}, "sweep"); err != nil {
					t.Fatalf("re-check: %v", err)
				}
			}
			if slices.Contains(h.fake.GroupMembers("acme", "developers"), mia) {
				t.Fatalf("%s left the late add in place", via)
			}
		})
	}
}
