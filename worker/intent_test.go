package worker_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/jobs"
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
