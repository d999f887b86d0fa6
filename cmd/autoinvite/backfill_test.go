package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/internal/testenv"
)

const backfillRules = `
rate_limits:
  bitbucket: {requests: 1000000, per: 1h}
  bitbucket_invitations: {requests: 1000000, per: 1h}
  jira: {requests: 1000000, per: 1h}
workspaces:
  - workspace: acme
    rules:
      - {name: everyone, match: {}, groups: [readers]}
`

func TestBackfillResumesWithoutDoubleWork(t *testing.T) {
	e := testenv.New(t, testenv.IntakeOnly(), testenv.WithRules(backfillRules))
	const n = 2000
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("557058:bf-%04d", i)
		e.Fake.AddJiraUser(fake.JiraUser{AccountID: id, AccountType: "atlassian", Email: fmt.Sprintf("bf%04d@acme.com", i), Active: i%50 != 0})
		if i%2 == 0 {
			e.Fake.AddMember("acme", id)
		}
	}
	cfg := filepath.Join(t.TempDir(), "autoinvite.yaml")
	os.WriteFile(cfg, []byte("redis: {key_prefix: "+e.Redis.Prefix+"}\n"+backfillRules), 0o600)
	c := &cliEnv{t: t, e: e, clock: testenv.NewClock(t0cli), cfg: cfg, env: map[string]string{
		"AUTOINVITE_REDIS_URL": e.Redis.URL, "AUTOINVITE_JIRA_BASE_URL": e.Fake.URL, "AUTOINVITE_BITBUCKET_BASE_URL": e.Fake.URL,
		"AUTOINVITE_JIRA_EMAIL": "bot@acme.com", "AUTOINVITE_JIRA_API_TOKEN": "t", "AUTOINVITE_BITBUCKET_ACCESS_TOKEN": "t",
	}}

	// Dry run: a plan per user, no Bitbucket call, nothing recorded.
	out := c.ok("backfill", "--dry-run", "--limit", "6")
	if !strings.Contains(out, "buyer@example.com: skipped (inactive, app or customer account)") ||
		!strings.Contains(out, "mia@acme.com:\n  acme: readers (member: 1 adds; otherwise: invite into readers)") {
		t.Fatalf("dry run:\n%s", out)
	}
	for _, call := range e.Fake.CallStrings() {
		if !strings.HasPrefix(call, "GET /rest/api/3/users/search") {
			t.Fatalf("dry run made %s", call)
		}
	}

	// Interrupted after 700 users, then run again: it continues.
	first := c.ok("backfill", "--limit", "700")
	second := c.ok("backfill")
	if !strings.Contains(second, "(resumed at user 700 of an interrupted run)") {
		t.Fatalf("second run did not resume:\n%s", second)
	}
	invites, adds := map[string]int{}, map[string]int{}
	for _, call := range e.Fake.Calls() {
		switch {
		case call.Method == "PUT" && call.Path == "/1.0/users/acme/invitations":
			invites[call.Body]++
		case call.Method == "PUT" && strings.HasPrefix(call.Path, "/1.0/groups/acme/readers/members/"):
			adds[call.Path]++
		}
	}
	for k, v := range invites {
		if v != 1 {
			t.Errorf("%s sent %d times", k, v)
		}
	}
	for k, v := range adds {
		if v != 1 {
			t.Errorf("%s added %d times", k, v)
		}
	}
	// 2000 generated: 1000 members of which 40 inactive, 1000 not members; plus
	// the sandbox's Cloud users: Mia (member), Noah (invited), Olivia (hidden
	// email: waiting) and a customer (skipped).
	if len(invites) != 1000+1 || len(adds) != 960+1 {
		t.Fatalf("invited %d, added %d: want 1001 and 961", len(invites), len(adds))
	}
	t.Logf("first run:\n%ssecond run:\n%s", first, second)

	// Everyone is in the ledger now: a third run does no Bitbucket work.
	e.Fake.ResetCalls()
	third := c.ok("backfill")
	for _, call := range e.Fake.CallStrings() {
		if !strings.HasPrefix(call, "GET /rest/api/3/users/search") {
			t.Fatalf("third run made %s", call)
		}
	}
	if !strings.Contains(third, "2004   41       1963") {
		t.Fatalf("third run summary:\n%s", third)
	}
}
