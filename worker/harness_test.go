package worker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/integrations/atlassian"
	"github.com/autoinvite/autoinvite/integrations/bitbucket"
	"github.com/autoinvite/autoinvite/integrations/fake/faketest"
	"github.com/autoinvite/autoinvite/integrations/jira"
	"github.com/autoinvite/autoinvite/integrations/ratelimit"
	"github.com/autoinvite/autoinvite/internal/redistest"
	"github.com/autoinvite/autoinvite/internal/testenv"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
	"github.com/autoinvite/autoinvite/membership"
	"github.com/autoinvite/autoinvite/rules"
	"github.com/autoinvite/autoinvite/worker"
)

// harness is a worker wired to the fake Atlassian and a Redis of its own,
// driven by direct calls (no Asynq), so a test controls every step.
type harness struct {
	w      *worker.Worker
	fake   *faketest.Server
	redis  *redistest.Redis
	rdb    *redis.Client
	ledger *ledger.Store
	logs   *testenv.SyncBuffer
}

func newHarness(t *testing.T, rulesYAML string, lease time.Duration, extra ...func(*worker.Options, *faketest.Server)) *harness {
	t.Helper()
	r := redistest.New(t)
	f := faketest.Start(t)
	f.SeedDemo()
	rulesYAML = strings.ReplaceAll(rulesYAML, "$FAKE_URL", f.URL)
	cfg, err := config.Parse("rules.yaml", []byte("redis: {key_prefix: "+r.Prefix+"}\n"+rulesYAML), nil)
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
	opts.MaxRetries = -1 // the test decides when Redis answers again
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	store := ledger.New(rdb, r.Prefix, ledger.Options{})
	o := atlassian.Options{BaseURL: f.URL, Auth: atlassian.Auth{Email: "bot@acme.com", Token: testenv.BitbucketToken}, Timeout: 5 * time.Second}
	logs := &testenv.SyncBuffer{}
	wo := worker.Options{
		Jira: jira.New(o, false), Bitbucket: bitbucket.New(o), Ledger: store,
		Rules: func() *rules.Engine { return engine }, Logger: zerolog.New(logs), LockLease: lease,
		Members: membership.New(rdb, r.Prefix),
	}
	for _, opt := range extra {
		opt(&wo, f)
	}
	if wo.Backlog == nil {
		wo.Backlog = ratelimit.NewBacklog(rdb, r.Prefix)
	}
	w, err := worker.New(wo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker logs:\n%s", logs.String())
		}
	})
	return &harness{w: w, fake: f, redis: r, rdb: rdb, ledger: store, logs: logs}
}

func signup(accountID, email string) jobs.UserEvent {
	active := true
	return jobs.UserEvent{Event: jobs.EventUserCreated, DeliveryID: "d-" + accountID, Timestamp: 1763800000000, ReceivedAt: time.Now(),
		User: jobs.User{AccountID: accountID, AccountType: "atlassian", Email: email, Active: &active}}
}
