package worker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/ledger"
)

const inviteRules = `
workspaces:
  - workspace: acme
    rules:
      - {name: everyone, match: {}, groups: [developers]}
`

// Redis fails over while a signup's invitation is in flight: the ledger
// write answers READONLY. The task must be retried (not archived), and the
// retry must not send a second invitation.
func TestRedisFailoverMidTaskIsRetriedNotArchived(t *testing.T) {
	h := newHarness(t, inviteRules, 500*time.Millisecond)
	if h.redis.Mini == nil {
		t.Skip("needs the in-process Redis to switch it to a replica")
	}
	noah := fake.DemoNewcomerAccountID
	h.fake.InjectFault(fake.Fault{Method: "PUT", PathPrefix: "/1.0/users/acme/invitations", Delay: 400 * time.Millisecond, Apply: true, Times: 1})
	go func() {
		time.Sleep(150 * time.Millisecond) // the invitation is in flight
		h.redis.Mini.SetError("READONLY You can't write against a read only replica.")
	}()
	err := h.w.ProcessUserEvent(context.Background(), signup(noah, "noah@acme.com"))
	if err == nil || errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("during the failover: err = %v; want a temporary error (retried, not archived)", err)
	}
	h.redis.Mini.SetError("")
	h.redis.Mini.FastForward(time.Second) // the lock the failed unlock left runs out

	if err := h.w.ProcessUserEvent(context.Background(), signup(noah, "noah@acme.com")); err != nil {
		t.Fatalf("retry after the failover: %v", err)
	}
	e, err := h.ledger.Get(context.Background(), "acme", "acct:"+noah)
	if err != nil || e == nil || e.Status != ledger.StatusInvited || e.PendingInvitation("developers") == nil {
		t.Fatalf("ledger = %+v, %v", e, err)
	}
	if n := len(h.fake.Invitations("acme")); n != 1 {
		t.Fatalf("%d invitations pending in Bitbucket, want 1", n)
	}
}
