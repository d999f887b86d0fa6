package worker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
)

// A signup whose lease runs out while it waits on Bitbucket (another task
// takes the person meanwhile) stops at once, writes nothing, asks to be
// retried, and its unlock leaves the other task's lock alone.
func TestSignupThatLosesItsLockStopsAndWritesNothing(t *testing.T) {
	h := newHarness(t, "workspaces:\n  - workspace: acme\n    rules:\n      - {name: everyone, match: {}, groups: [readers]}\n", 300*time.Millisecond)
	w, f, rdb, store, r := h.w, h.fake, h.rdb, h.ledger, h.redis

	// The membership check hangs: the worker is stuck holding the lock.
	f.InjectFault(fake.Fault{Method: "GET", PathPrefix: "/2.0/workspaces/acme/members/", Delay: 5 * time.Second, Times: 1})
	active := true
	ev := jobs.UserEvent{Event: jobs.EventUserCreated, DeliveryID: "d-noah", ReceivedAt: time.Now(),
		User: jobs.User{AccountID: fake.DemoNewcomerAccountID, AccountType: "atlassian", Email: "noah@acme.com", Active: &active}}
	person := ev.User.PersonID()
	lockKey := "{" + r.Prefix + "}:lock:" + person
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- w.ProcessUserEvent(context.Background(), ev) }()

	ctx := context.Background()
	deadline := time.Now().Add(3 * time.Second)
	for n, _ := rdb.Exists(ctx, lockKey).Result(); n == 0; n, _ = rdb.Exists(ctx, lockKey).Result() {
		if time.Now().After(deadline) {
			t.Fatal("the worker never took the lock")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Its lease runs out (as in a long pause) and another task takes the person.
	if err := rdb.Del(ctx, lockKey).Err(); err != nil {
		t.Fatal(err)
	}
	other, err := store.Lock(ctx, person, "other-task", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Unlock()

	var werr error
	select {
	case werr = <-done:
	case <-time.After(4 * time.Second):
		t.Fatal("the worker went on after losing the lock")
	}
	if !errors.Is(werr, ledger.ErrLockLost) {
		t.Fatalf("worker returned %v, want ErrLockLost (retried)", werr)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("worker took %v: it waited for Bitbucket instead of stopping", took)
	}
	if e, _ := store.Get(ctx, "acme", person); e != nil {
		t.Fatalf("the worker wrote the entry without the lock: %+v", e)
	}
	if n := len(f.CallsTo("PUT", "/1.0/users/acme/invitations")); n != 0 {
		t.Fatalf("invitations sent = %d", n)
	}
	if got, _ := rdb.Get(ctx, lockKey).Result(); got != other.Token() {
		t.Fatalf("lock after the worker's unlock = %q, want the other task's %q", got, other.Token())
	}
}
