package app_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/internal/testenv"
	"github.com/autoinvite/autoinvite/ledger"
)

const readersOnly = `workspaces:
  - workspace: acme
    rules:
      - {name: everyone, match: {}, groups: [readers]}
`

const developersOnly = `workspaces:
  - workspace: acme
    rules:
      - {name: everyone, match: {}, groups: [developers]}
`

func reload(e *testenv.Env) testenv.Response {
	return e.Do(http.MethodPost, "/-/reload", testenv.AdminUser, testenv.AdminPassword)
}

func scrape(t *testing.T, e *testenv.Env) string {
	t.Helper()
	r := e.Do(http.MethodGet, "/metrics", "", "")
	if r.Status != http.StatusOK {
		t.Fatalf("/metrics = %d", r.Status)
	}
	return r.Raw
}

func assertMetrics(t *testing.T, body string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(body, "\n"+l+"\n") {
			t.Errorf("metrics lack %q", l)
		}
	}
}

func TestReloadAppliesAGoodConfigAndRefusesABadOne(t *testing.T) {
	e := testenv.New(t, testenv.WithRules(readersOnly))
	e.WriteRules(developersOnly)
	r := reload(e)
	if r.Status != http.StatusOK || r.Body["status"] != "ok" || r.Body["changed"] != true {
		t.Fatalf("reload = %d %s", r.Status, r.Raw)
	}
	assertAccepted(t, e.Webhook("user_created", "d-mia", cloudUser(mia, "mia@acme.com")), "accepted")
	e.WaitIdle()
	assertCalls(t, e.Fake.Fake, "GET /2.0/workspaces/acme/members/"+mia, "PUT /1.0/groups/acme/developers/members/"+mia)

	// A bad config is refused with file, line and field; the running rules stay.
	e.WriteRules("workspaces:\n  - workspace: acme\n    rules:\n      - {name: everyone, match: {}, groups: []}\n")
	r = reload(e)
	want := e.ConfigPath + ":6: workspaces[0].rules[0].groups: a rule needs at least one Bitbucket group"
	if r.Status != http.StatusBadRequest || r.Body["status"] != "refused" || r.Body["error"] != want {
		t.Fatalf("bad reload = %d %s\nwant error %q", r.Status, r.Raw, want)
	}
	e.Fake.ResetCalls()
	assertAccepted(t, e.Webhook("user_created", "d-noah", cloudUser(noah, "noah@acme.com")), "accepted")
	e.WaitIdle()
	if got := invitationPuts(e.Fake.Fake); !reflect.DeepEqual(got, []string{`{"email":"noah@acme.com","group_slug":"developers"}`}) {
		t.Fatalf("after a refused reload the previous rules must apply: %v", got)
	}
	body := scrape(t, e)
	assertMetrics(t, body,
		"autoinvite_config_last_reload_successful 0",
		`autoinvite_config_reloads_total{result="failure"} 1`,
		`autoinvite_config_reloads_total{result="success"} 1`,
	)
	if !strings.Contains(e.Logs.String(), "config reload refused, the running config stays") {
		t.Fatal("refused reload not logged")
	}

	// Settings that cannot change live are reported.
	e.WriteRules("listen: \":9999\"\n" + developersOnly)
	r = reload(e)
	if r.Status != http.StatusOK || fmt.Sprint(r.Body["needs_restart"]) != "[listen]" {
		t.Fatalf("restart-only change: %d %s", r.Status, r.Raw)
	}
	assertMetrics(t, scrape(t, e), "autoinvite_config_last_reload_successful 1")
}

func TestReloadNeedsCredentialsAndPOST(t *testing.T) {
	e := testenv.New(t)
	if r := e.Do(http.MethodPost, "/-/reload", "", ""); r.Status != http.StatusUnauthorized {
		t.Fatalf("no credentials: %d", r.Status)
	}
	if r := e.Do(http.MethodPost, "/-/reload", testenv.AdminUser, "wrong"); r.Status != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", r.Status)
	}
	if r := e.Do(http.MethodGet, "/-/reload", testenv.AdminUser, testenv.AdminPassword); r.Status != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", r.Status)
	}
	if r := reload(e); r.Status != http.StatusOK || r.Body["changed"] != false {
		t.Fatalf("unchanged reload: %d %s", r.Status, r.Raw)
	}
}

func TestQueuedTasksFinishUnderTheRulesTheyArrivedWith(t *testing.T) {
	e := testenv.New(t, testenv.IntakeOnly(), testenv.WithRules(readersOnly))
	assertAccepted(t, e.Webhook("user_created", "d-mia", cloudUser(mia, "mia@acme.com")), "accepted")
	e.WriteRules(developersOnly)
	if r := reload(e); r.Status != http.StatusOK {
		t.Fatalf("reload: %s", r.Raw)
	}
	assertAccepted(t, e.Webhook("user_created", "d-noah", cloudUser(noah, "noah@acme.com")), "accepted")
	if err := e.App.StartWorkers(); err != nil {
		t.Fatal(err)
	}
	e.WaitIdle()
	if m := e.Fake.GroupMembers("acme", "readers"); !reflect.DeepEqual(m, []string{mia}) {
		t.Fatalf("Mia arrived under the old rules: readers = %v", m)
	}
	if m := e.Fake.GroupMembers("acme", "developers"); len(m) != 0 {
		t.Fatalf("developers = %v", m)
	}
	if got := invitationPuts(e.Fake.Fake); !reflect.DeepEqual(got, []string{`{"email":"noah@acme.com","group_slug":"developers"}`}) {
		t.Fatalf("Noah arrived under the new rules: %v", got)
	}
}

func TestConfigFileChangeIsPickedUp(t *testing.T) {
	e := testenv.New(t, testenv.WithRules(readersOnly))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := e.App.WatchConfig(ctx); err != nil {
		t.Fatal(err)
	}
	before := e.App.ConfigHash()
	e.WriteRules(developersOnly)
	assertDevelopersOnlyPickedUp(t, e, before)
}

// assertDevelopersOnlyPickedUp waits for the config to leave the running
// hash, then checks that a signup goes by developersOnly.
func assertDevelopersOnlyPickedUp(t *testing.T, e *testenv.Env, running string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.App.ConfigHash() == running {
		if time.Now().After(deadline) {
			t.Fatal("config change not picked up within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	assertAccepted(t, e.Webhook("user_created", "d-mia", cloudUser(mia, "mia@acme.com")), "accepted")
	e.WaitIdle()
	if m := e.Fake.GroupMembers("acme", "developers"); !reflect.DeepEqual(m, []string{mia}) {
		t.Fatalf("developers = %v", m)
	}
}

// A Kubernetes ConfigMap volume changes no file of that name: the kubelet
// writes the new version into a new directory and swaps the ..data symlink
// the config's own symlink goes through. The watcher follows the link.
func TestConfigMapUpdateIsPickedUp(t *testing.T) {
	e := testenv.New(t, testenv.WithRules(readersOnly))
	before, err := os.ReadFile(e.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	e.WriteRules(developersOnly)
	after, err := os.ReadFile(e.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	// The volume as the kubelet lays it out, holding the running version.
	dir, name := filepath.Dir(e.ConfigPath), filepath.Base(e.ConfigPath)
	version := func(stamp string, content []byte) {
		if err := os.Mkdir(filepath.Join(dir, stamp), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, stamp, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(stamp, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..2026_11_28_09_00_00.1", before)
	if err := os.Remove(e.ConfigPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", name), e.ConfigPath); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := e.App.WatchConfig(ctx); err != nil {
		t.Fatal(err)
	}
	running := e.App.ConfigHash()
	version("..2026_11_28_09_05_00.2", after)
	if err := os.RemoveAll(filepath.Join(dir, "..2026_11_28_09_00_00.1")); err != nil {
		t.Fatal(err)
	}
	assertDevelopersOnlyPickedUp(t, e, running)
}

func TestMetricsAfterAScriptedRun(t *testing.T) {
	e := testenv.New(t)
	assertAccepted(t, e.Webhook("user_created", "d-mia", cloudUser(mia, "mia@acme.com")), "accepted")
	e.WaitIdle() // one at a time: each checks its membership (two at once would list the workspace)
	assertAccepted(t, e.Webhook("user_created", "d-noah", cloudUser(noah, "noah@acme.com")), "accepted")
	assertAccepted(t, e.Webhook("user_created", "d-noah", cloudUser(noah, "noah@acme.com")), "duplicate")
	e.Post(http.MethodPost, testenv.Payload("user_created", cloudUser(noah, "")), map[string]string{"X-Hub-Signature": "sha256=00"})
	unknown := []byte(`{"webhookEvent":"jira:issue_created"}`)
	e.Post(http.MethodPost, unknown, map[string]string{"X-Hub-Signature": sign(unknown)})
	e.WaitIdle()

	body := scrape(t, e)
	q := e.App.Queue()
	assertMetrics(t, body,
		`autoinvite_webhooks_total{event="user_created",outcome="accepted"} 2`,
		`autoinvite_webhooks_total{event="user_created",outcome="duplicate"} 1`,
		`autoinvite_webhooks_total{event="other",outcome="refused_signature"} 1`,
		`autoinvite_webhooks_total{event="other",outcome="ignored"} 1`,
		`autoinvite_intake_duration_seconds_count 5`,
		`autoinvite_signup_duration_seconds_count 2`,
		`autoinvite_invitations_total{event="sent"} 1`,
		`autoinvite_invitations_total{event="resent"} 0`,
		`autoinvite_group_changes_total{action="granted"} 2`,
		`autoinvite_group_changes_total{action="revoked"} 0`,
		`autoinvite_atlassian_requests_total{api="bitbucket",endpoint="PUT /1.0/groups/{workspace}/{group}/members/{member}",status="200"} 2`,
		`autoinvite_atlassian_requests_total{api="bitbucket",endpoint="GET /2.0/workspaces/{workspace}/members/{member}",status="404"} 1`,
		`autoinvite_atlassian_requests_total{api="bitbucket",endpoint="PUT /1.0/users/{workspace}/invitations",status="200"} 1`,
		`autoinvite_atlassian_requests_total{api="jira",endpoint="GET /rest/api/3/user",status="200"} 2`,
		`autoinvite_rate_limit_waits_total{api="bitbucket"} 0`,
		`autoinvite_config_last_reload_successful 1`,
		`autoinvite_queue_processed_total{queue="`+q+`"} 2`,
		`autoinvite_queue_tasks{queue="`+q+`",state="completed"} 2`,
		`autoinvite_queue_tasks{queue="`+q+`",state="pending"} 0`,
		`autoinvite_queue_scrape_ok 1`,
	)
	if strings.Contains(body, "noah@acme.com") || strings.Contains(body, mia) {
		t.Fatal("personal data in metric labels")
	}
}

func TestAuditTrailTellsTheWholeStory(t *testing.T) {
	clock := testenv.NewClock(t0)
	e := testenv.New(t, testenv.WithClock(clock))
	assertAccepted(t, e.Webhook("user_created", "d1", cloudUser(noah, "noah@acme.com")), "accepted")
	e.WaitIdle()
	clock.Advance(169 * time.Hour)
	sweep(t, e) // re-send
	e.Fake.Accept("acme", "noah@acme.com", noah)
	clock.Advance(169 * time.Hour)
	sweep(t, e) // accepted: waiting groups granted
	assertAccepted(t, e.Webhook("user_deleted", "d2", map[string]any{"accountId": noah}), "accepted")
	e.WaitIdle()

	recs, err := e.App.Ledger().ReadAudit(context.Background(), time.Time{}, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		if r.PersonID != "acct:"+noah || r.Workspace != "acme" || r.Email != "noah@acme.com" {
			t.Fatalf("record without its person: %+v", r)
		}
		got = append(got, fmt.Sprintf("%s %s %s %s %s", r.Actor, r.Action, r.Group, strings.Join(r.Rules, ","), r.Outcome))
	}
	want := []string{
		"webhook decided   ok",
		"webhook invitation-sent developers engineers ok",
		"test invitation-resent developers engineers ok",
		"test invitation-accepted developers engineers ok",
		"test group-added developers engineers ok",
		"test group-added readers everyone ok",
		"webhook group-removed developers engineers ok",
		"webhook group-removed readers everyone ok",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("audit:\n got  %q\n want %q", got, want)
	}
	if !recs[1].Time.Equal(t0) || !recs[2].Time.Equal(t0.Add(169*time.Hour)) {
		t.Fatalf("times: %v %v", recs[1].Time, recs[2].Time)
	}
	assertMetrics(t, scrape(t, e),
		`autoinvite_invitations_total{event="sent"} 1`,
		`autoinvite_invitations_total{event="resent"} 1`,
		`autoinvite_invitations_total{event="accepted"} 1`,
		`autoinvite_group_changes_total{action="granted"} 2`,
		`autoinvite_group_changes_total{action="revoked"} 2`,
	)
}

func TestDryRunDecidesAndAuditsWithoutCallingAtlassian(t *testing.T) {
	e := testenv.New(t, testenv.WithRules("dry_run: true\n"+testenv.DefaultRules))
	assertAccepted(t, e.Webhook("user_created", "d1", cloudUser(noah, "noah@acme.com")), "accepted")
	assertAccepted(t, e.Webhook("user_created", "d2", cloudUser(mia, "mia@acme.com")), "accepted")
	assertAccepted(t, e.Webhook("user_deleted", "d3", map[string]any{"accountId": mia}), "accepted")
	e.WaitIdle()
	assertCalls(t, e.Fake.Fake) // not one call to Jira or Bitbucket
	if got := e.Entry("acme", "acct:"+noah); got != nil {
		t.Fatalf("dry run wrote the ledger: %+v", got)
	}
	recs, err := e.App.Ledger().ReadAudit(context.Background(), time.Time{}, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	var noahs []string
	for _, r := range recs {
		if r.Outcome != ledger.OutcomeDryRun {
			t.Fatalf("record not marked dry-run: %+v", r)
		}
		if r.Email == "noah@acme.com" {
			noahs = append(noahs, r.Action+" "+r.Group)
		}
	}
	// Without Jira the webhook's data decides: readers (everyone) only.
	if !reflect.DeepEqual(noahs, []string{"decided ", "invitation-sent readers"}) {
		t.Fatalf("noah's dry-run audit = %q", noahs)
	}
	assertMetrics(t, scrape(t, e), `autoinvite_invitations_total{event="sent"} 0`)
}
