package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Fatalf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

type cliEnv struct {
	t     *testing.T
	e     *testenv.Env
	clock *testenv.Clock
	env   map[string]string
	cfg   string
}

func (c *cliEnv) run(args ...string) (string, string, int) {
	c.t.Helper()
	var out, errOut bytes.Buffer
	cl := &cli{stdout: &out, stderr: &errOut, env: func(k string) string { return c.env[k] }, now: c.clock.Now}
	code := cl.run(context.Background(), append(args, "--config", c.cfg))
	return out.String(), errOut.String(), code
}

func (c *cliEnv) ok(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("autoinvite %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

func newCLIEnv(t *testing.T) *cliEnv {
	clock := testenv.NewClock(t0cli)
	e := testenv.New(t, testenv.WithClock(clock))
	user := func(id, email string) map[string]any {
		return map[string]any{"accountId": id, "accountType": "atlassian", "emailAddress": email}
	}
	e.Webhook("user_created", "d1", user(fake.DemoMemberAccountID, "mia@acme.com"))
	e.Webhook("user_created", "d2", user(fake.DemoNewcomerAccountID, "noah@acme.com"))
	e.Webhook("user_created", "d3", map[string]any{"accountId": fake.DemoHiddenAccountID, "accountType": "atlassian"})
	e.WaitIdle()

	cfg := filepath.Join(t.TempDir(), "autoinvite.yaml")
	os.WriteFile(cfg, []byte("redis: {key_prefix: "+e.Redis.Prefix+"}\n"+testenv.DefaultRules), 0o600)
	return &cliEnv{t: t, e: e, clock: clock, cfg: cfg, env: map[string]string{
		"AUTOINVITE_REDIS_URL":              e.Redis.URL,
		"AUTOINVITE_JIRA_BASE_URL":          e.Fake.URL,
		"AUTOINVITE_BITBUCKET_BASE_URL":     e.Fake.URL,
		"AUTOINVITE_JIRA_EMAIL":             "bot@acme.com",
		"AUTOINVITE_JIRA_API_TOKEN":         "t",
		"AUTOINVITE_BITBUCKET_ACCESS_TOKEN": "t",
		"AUTOINVITE_ACTOR":                  "alice",
	}}
}

func TestInvitesCommands(t *testing.T) {
	c := newCLIEnv(t)
	golden(t, "invites-list", c.ok("invites", "list"))
	golden(t, "invites-list-invited-json", c.ok("invites", "list", "--status", "invited", "--json"))
	golden(t, "invites-show-noah", c.ok("invites", "show", "noah@acme.com"))
	golden(t, "invites-show-by-account", c.ok("invites", "show", fake.DemoMemberAccountID))

	// resend: immediate, recorded with the actor, and idempotent when repeated.
	c.clock.Advance(2 * time.Minute)
	golden(t, "invites-resend", c.ok("invites", "resend", "noah@acme.com")+c.ok("invites", "resend", "noah@acme.com"))
	// cancel: idempotent too.
	golden(t, "invites-cancel", c.ok("invites", "cancel", "noah@acme.com", "--workspace", "acme")+c.ok("invites", "cancel", "noah@acme.com"))
	golden(t, "invites-show-noah-after", c.ok("invites", "show", "noah@acme.com"))

	_, errOut, code := c.run("invites", "show", "nobody@acme.com")
	if code != 1 || errOut != "error: nobody@acme.com is not in the ledger\n" {
		t.Fatalf("unknown person: %d %q", code, errOut)
	}
}

func TestSweepOnceCommand(t *testing.T) {
	c := newCLIEnv(t)
	c.e.Fake.ResetCalls()
	c.clock.Advance(169 * time.Hour)
	golden(t, "sweep-once", c.ok("sweep", "--once")+c.ok("sweep", "--once"))
	// The service's worker runs it: it already knows how acme is administered.
	// After a "not a member" it confirms the workspace once per process,
	// unless the setup's signups were answered by a member listing before.
	got := slices.DeleteFunc(c.e.Fake.CallStrings(), func(s string) bool { return s == "GET /2.0/workspaces/acme" })
	if strings.Join(got, "\n") != "GET /2.0/workspaces/acme/members/"+fake.DemoNewcomerAccountID+"\nPUT /1.0/users/acme/invitations" {
		t.Fatalf("calls = %q", c.e.Fake.CallStrings())
	}
	if n := len(c.e.Fake.CallStrings()) - len(got); n > 1 {
		t.Fatalf("the workspace was confirmed %d times: %q", n, c.e.Fake.CallStrings())
	}
}

func TestRevocationsCommands(t *testing.T) {
	c := newCLIEnv(t)
	golden(t, "revocations-status", c.ok("revocations", "status", "--workspace", "acme")+c.ok("revocations", "resume", "--workspace", "acme"))
}

func TestPlanCommand(t *testing.T) {
	c := newCLIEnv(t)
	before := len(c.e.Fake.Calls())
	out := c.ok("plan", "--email", "ann@acme.com", "--jira-groups", "jira-software-users", "--account-id", "557058:ann")
	out += "----\n" + c.ok("plan", "--email", "dave@acme.com")
	out += "----\n" + c.ok("plan", "--email", "bot@acme.com", "--account-type", "app")
	// A Bitbucket Data Center workspace: batched group adds, no invitation.
	c.cfg = filepath.Join(t.TempDir(), "dc.yaml")
	os.WriteFile(c.cfg, []byte(`workspaces:
  - workspace: acme-dc
    bitbucket: {deployment: datacenter, base_url: "https://bitbucket.acme.com"}
    rules: [{name: all, match: {email_domains: [acme.com]}, groups: [developers, readers]}]
`), 0o600)
	out += "----\n" + c.ok("plan", "--email", "dave@acme.com")
	golden(t, "plan", out)
	if after := len(c.e.Fake.Calls()); after != before {
		t.Fatalf("plan made %d Atlassian calls", after-before)
	}
}

// With no Redis configured, the admin commands look for the embedded Redis
// of a running `serve`, and say what to do when none answers.
func TestAdminCommandsWithoutAServeSayWhatToDo(t *testing.T) {
	var out, errOut bytes.Buffer
	cfg := filepath.Join(t.TempDir(), "a.yaml")
	os.WriteFile(cfg, []byte(testenv.DefaultRules), 0o600)
	addr := freeAddr(t)
	env := map[string]string{"AUTOINVITE_EMBEDDED_REDIS_ADDR": addr}
	cl := &cli{stdout: &out, stderr: &errOut, env: func(k string) string { return env[k] }, now: time.Now}
	want := "error: no Redis is configured (redis.url or AUTOINVITE_REDIS_URL), and no embedded Redis of `autoinvite serve` answers at " + addr +
		": start `autoinvite serve --config " + cfg + "` first (or set AUTOINVITE_EMBEDDED_REDIS_ADDR to where its embedded Redis listens)\n"
	if code := cl.run(context.Background(), []string{"invites", "list", "--config", cfg}); code != 1 || errOut.String() != want {
		t.Fatalf("exit %d:\n%s\nwant:\n%s", code, errOut.String(), want)
	}
}

func TestAuditCommand(t *testing.T) {
	c := newCLIEnv(t)
	c.clock.Advance(2 * time.Minute)
	c.ok("invites", "resend", "noah@acme.com")
	// One person's records are in order; the three signups ran concurrently.
	golden(t, "audit", c.ok("audit", "--since", "1h", "--email", "noah@acme.com"))
	var actions []string
	for _, line := range strings.Split(strings.TrimSpace(c.ok("audit", "--email", "noah@acme.com", "--json")), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		if rec["id"] == "" || rec["person"] != "acct:"+fake.DemoNewcomerAccountID || rec["workspace"] != "acme" {
			t.Fatalf("record = %v", rec)
		}
		actions = append(actions, fmt.Sprint(rec["actor"], " ", rec["action"], " ", rec["group"], " ", rec["outcome"]))
	}
	want := []string{"webhook decided <nil> ok", "webhook invitation-sent developers ok", "cli:alice invitation-resent developers ok"}
	if strings.Join(actions, "|") != strings.Join(want, "|") {
		t.Fatalf("json actions = %q", actions)
	}
}

var t0cli = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
