package worker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/integrations/atlassian"
	"github.com/autoinvite/autoinvite/integrations/bitbucket"
	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/integrations/fake/faketest"
	"github.com/autoinvite/autoinvite/integrations/jira"
	"github.com/autoinvite/autoinvite/internal/redistest"
	"github.com/autoinvite/autoinvite/internal/testenv"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
	"github.com/autoinvite/autoinvite/rules"
	"github.com/autoinvite/autoinvite/worker"
)

// A signup whose lease runs out while it waits on Bitbucket (another task
// takes the person meanwhile) stops at once, writes nothing, asks to be
// retried, and its unlock leaves the other task's lock alone.
func TestSignupThatLosesItsLockStopsAndWritesNothing(t *testing.T) {
	r := redistest.New(t)
	f := faketest.Start(t)
	f.SeedDemo()
	cfg, err := config.Parse("rules.yaml", []byte("redis: {key_prefix: "+r.Prefix+"}\n"+
		"workspaces:\n  - workspace: acme\n    rules:\n      - {name: everyone, match: {}, groups: [readers]}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := rules.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := redis.ParseURL(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	store := ledger.New(rdb, r.Prefix, ledger.Options{})
	ao := atlassian.Options{BaseURL: f.URL, Auth: atlassian.Auth{Email: "bot@acme.com", Token: testenv.BitbucketToken}, Timeout: 10 * time.Second}
	logs := &testenv.SyncBuffer{}
	w, err := worker.New(worker.Options{
		Jira: jira.New(ao, false), Bitbucket: bitbucket.New(ao), Ledger: store,
		Rules: func() *rules.Engine { return engine }, Logger: zerolog.New(logs), LockLease: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker logs:\n%s", logs.String())
		}
	})

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
