package app_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/app"
	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/integrations/ratelimit"
	"github.com/autoinvite/autoinvite/internal/testenv"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
	"github.com/autoinvite/autoinvite/reconcile"
	"github.com/autoinvite/autoinvite/worker"
)

// People of the reconciliation tests; the demo people SeedDemo adds match
// none of these rules (they are @acme.com), so they stay out of the tables.
const (
	pat   = "557058:pat"
	quinn = "557058:quinn"
	rose  = "557058:rose"
)

const reconcileRules = `
reconcile: {mode: apply}
revocation: {max_removals_per_hour: 20}
workspaces:
  - workspace: acme
    rules:
      - name: builders
        match: {email_domains: [example.org], jira_groups: [builders]}
        groups: [developers]
      - name: staff
        match: {email_domains: [example.org]}
        groups: [readers]
`

func exampleUser(id, name string, groups ...string) fake.JiraUser {
	return fake.JiraUser{AccountID: id, AccountType: "atlassian", Email: name + "@example.org", DisplayName: name, Active: true, Groups: groups}
}

func signup(t *testing.T, e *testenv.Env, id, name string) {
	t.Helper()
	assertAccepted(t, e.Webhook("user_created", "signup-"+name, map[string]any{"accountId": id, "accountType": "atlassian", "emailAddress": name + "@example.org"}), "accepted")
}

// runPass runs a pass in the test's process with the service's worker and
// returns its report and table.
func runPass(t *testing.T, e *testenv.Env, o worker.ReconcileOptions) (reconcile.Report, string) {
	t.Helper()
	rep, err := e.App.Worker().Reconcile(context.Background(), e.App.JiraUsers(), o)
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	return rep, table(rep)
}

func table(rep reconcile.Report) string {
	var b bytes.Buffer
	reconcile.WriteTable(&b, rep.Rows)
	return b.String()
}

func wantTable(t *testing.T, got string, want ...string) {
	t.Helper()
	var b bytes.Buffer
	rows := make([]reconcile.Row, 0, len(want))
	for _, line := range want {
		f := strings.SplitN(line, " | ", 5)
		rows = append(rows, reconcile.Row{Person: f[0], Workspace: f[1], Group: f[2], Action: f[3], Why: f[4]})
	}
	reconcile.WriteTable(&b, rows)
	if got != b.String() {
		t.Fatalf("table:\n%s\nwant:\n%s", got, b.String())
	}
}

// writes are the calls that change something in Atlassian (users/search is
// a POST that only reads).
func writes(f *fake.Fake) []string {
	var out []string
	for _, c := range f.Calls() {
		if c.Method == http.MethodGet || strings.HasSuffix(c.Path, "/users/search") || strings.HasSuffix(c.Path, "/groups/search") || strings.HasSuffix(c.Path, "/workspaces") {
			continue
		}
		out = append(out, c.String())
	}
	return out
}

func assertNoWrites(t *testing.T, f *fake.Fake) {
	t.Helper()
	if w := writes(f); len(w) > 0 {
		t.Fatalf("write calls = %q, want none", w)
	}
}

// A signup whose webhook never arrived is granted (member) or invited
// (newcomer) by the pass through the signup path; a second pass finds
// nothing to do and calls nothing but reads.
func TestReconcileHealsMissedSignups(t *testing.T) {
	e := testenv.New(t, testenv.WithRules(reconcileRules))
	f := e.Fake
	f.AddJiraUser(exampleUser(pat, "pat", "builders"))
	f.AddJiraUser(exampleUser(quinn, "quinn"))
	f.AddMember("acme", pat)

	rep, got := runPass(t, e, worker.ReconcileOptions{})
	wantTable(t, got,
		"pat@example.org | acme | developers | granted | no ledger entry: the signup webhook was missed",
		"pat@example.org | acme | readers | granted | no ledger entry: the signup webhook was missed",
		"quinn@example.org | acme | readers | invited | no ledger entry: the signup webhook was missed",
	)
	if rep.Fixed() != 3 || rep.Users != 6 { // 4 demo Cloud users, pat and quinn
		t.Fatalf("fixed %d, users %d; want 3 fixed of 6 users", rep.Fixed(), rep.Users)
	}
	if got := f.GroupMembers("acme", "developers"); !slices.Equal(got, []string{pat}) {
		t.Fatalf("developers = %v", got)
	}
	if inv := f.Invitations("acme"); len(inv) != 1 || inv[0].Email != "quinn@example.org" || inv[0].Group != "readers" {
		t.Fatalf("invitations = %+v", inv)
	}
	if got := e.Entry("acme", "acct:"+pat); got.Status != ledger.StatusGranted || !slices.Equal(got.Granted, []string{"developers", "readers"}) {
		t.Fatalf("pat's entry = %+v", got)
	}
	if got := e.Entry("acme", "acct:"+quinn); got.Status != ledger.StatusInvited || got.PendingInvitation("readers") == nil {
		t.Fatalf("quinn's entry = %+v", got)
	}

	f.ResetCalls()
	rep, got = runPass(t, e, worker.ReconcileOptions{})
	if len(rep.Rows) != 0 {
		t.Fatalf("second pass found:\n%s", got)
	}
	assertNoWrites(t, f.Fake)
}

// Jira sends no webhook when someone joins a Jira group: the pass sees it in
// the group's member listing and grants what the rules now give.
func TestReconcilePicksUpJiraGroupJoinedAfterSignup(t *testing.T) {
	e := testenv.New(t, testenv.WithRules(reconcileRules))
	f := e.Fake
	f.AddJiraUser(exampleUser(pat, "pat"))
	f.AddMember("acme", pat)
	signup(t, e, pat, "pat")
	e.WaitIdle()
	if got := e.Entry("acme", "acct:"+pat); !slices.Equal(got.Granted, []string{"readers"}) {
		t.Fatalf("after signup: %+v", got)
	}

	f.UpdateJiraUser(pat, func(u *fake.JiraUser) { u.Groups = []string{"builders"} })
	_, got := runPass(t, e, worker.ReconcileOptions{})
	wantTable(t, got, "pat@example.org | acme | developers | granted | the rules give it now (a Jira group joined or a rule added after signup)")
	if got := e.Entry("acme", "acct:"+pat); !slices.Equal(got.Granted, []string{"readers", "developers"}) {
		t.Fatalf("after the pass: %+v", got)
	}
	if got := f.CallsTo(http.MethodPut, "/1.0/groups/acme/developers/members/"+pat); len(got) != 1 {
		t.Fatalf("adds to developers = %d, want 1", len(got))
	}
	f.ResetCalls()
	if rep, got := runPass(t, e, worker.ReconcileOptions{}); len(rep.Rows) != 0 {
		t.Fatalf("second pass found:\n%s", got)
	}
	assertNoWrites(t, f.Fake)
}

// A deactivation whose webhook was lost is revoked under the workspace's
// revoke mode, within the removal breaker: past its limit the removals are
// held, not made.
func TestReconcileRevokesLostDeactivationWithinBreaker(t *testing.T) {
	rules := strings.Replace(reconcileRules, "max_removals_per_hour: 20", "max_removals_per_hour: 2", 1)
	e := testenv.New(t, testenv.WithRules(rules))
	f := e.Fake
	for _, p := range []struct{ id, name string }{{pat, "pat"}, {quinn, "quinn"}} {
		f.AddJiraUser(exampleUser(p.id, p.name, "builders"))
		f.AddMember("acme", p.id)
		signup(t, e, p.id, p.name)
	}
	e.WaitIdle()
	for _, id := range []string{pat, quinn} {
		f.UpdateJiraUser(id, func(u *fake.JiraUser) { u.Active = false })
	}

	_, got := runPass(t, e, worker.ReconcileOptions{})
	wantTable(t, got,
		"pat@example.org | acme | developers | revoked | deactivated in Jira, still holds a group autoinvite granted",
		"pat@example.org | acme | readers | revoked | deactivated in Jira, still holds a group autoinvite granted",
		"quinn@example.org | acme | developers | held (removal limit reached) | deactivated in Jira, still holds a group autoinvite granted",
		"quinn@example.org | acme | readers | held (removal limit reached) | deactivated in Jira, still holds a group autoinvite granted",
	)
	if got := f.GroupMembers("acme", "developers"); !slices.Equal(got, []string{quinn}) {
		t.Fatalf("developers = %v, want quinn only (held)", got)
	}
	if got := e.Entry("acme", "acct:"+pat); got.Status != ledger.StatusRevoked || len(got.Granted) != 0 {
		t.Fatalf("pat = %+v", got)
	}
	if got := e.Entry("acme", "acct:"+quinn); got.Status != ledger.StatusRevocationHeld || !slices.Equal(got.HeldRemovals, []string{"developers", "readers"}) {
		t.Fatalf("quinn = %+v", got)
	}
	// Held stays held: the next pass reports it and removes nothing.
	f.ResetCalls()
	_, got = runPass(t, e, worker.ReconcileOptions{})
	wantTable(t, got,
		"quinn@example.org | acme | developers | report | deactivated in Jira; removal held by the circuit breaker: `autoinvite revocations resume`",
		"quinn@example.org | acme | readers | report | deactivated in Jira; removal held by the circuit breaker: `autoinvite revocations resume`",
	)
	assertNoWrites(t, f.Fake)
}

// A group autoinvite granted and an admin removed by hand is reported and
// not re-added; a workspace with regrant_removed: true gets it back.
func TestReconcileReportsHandRemovalAndRegrantsOnlyWhenAsked(t *testing.T) {
	rules := reconcileRules + `  - workspace: beta
    reconcile: {regrant_removed: true}
    rules:
      - {name: staff, match: {email_domains: [example.org]}, groups: [readers]}
`
	e := testenv.New(t, testenv.WithRules(rules))
	f := e.Fake
	f.AddWorkspace("beta", "readers")
	f.AddJiraUser(exampleUser(pat, "pat"))
	f.AddMember("acme", pat)
	f.AddMember("beta", pat)
	signup(t, e, pat, "pat")
	e.WaitIdle()
	f.RemoveGroupMember("acme", "readers", pat)
	f.RemoveGroupMember("beta", "readers", pat)
	f.ResetCalls()

	_, got := runPass(t, e, worker.ReconcileOptions{})
	wantTable(t, got,
		"pat@example.org | acme | readers | report | autoinvite granted it, someone removed it: not re-added (regrant_removed: true would)",
		"pat@example.org | beta | readers | granted | autoinvite granted it, someone removed it; regrant_removed is on",
	)
	if w := writes(f.Fake); !slices.Equal(w, []string{"PUT /1.0/groups/beta/readers/members/" + pat}) {
		t.Fatalf("writes = %q, want the one regrant in beta", w)
	}
	if got := f.GroupMembers("acme", "readers"); len(got) != 0 {
		t.Fatalf("acme readers = %v: re-added", got)
	}
	if got := e.Entry("acme", "acct:"+pat); !slices.Equal(got.Granted, []string{"readers"}) {
		t.Fatalf("acme entry changed: %+v", got)
	}
	hist := e.History("beta", "acct:"+pat)
	if !slices.ContainsFunc(hist, func(ev ledger.Event) bool { return ev.Action == ledger.ActionReconcileRegrant && ev.Group == "readers" }) {
		t.Fatalf("beta history lacks the regrant: %+v", hist)
	}
	// The hand removal stays reported, and nothing is written again.
	f.ResetCalls()
	_, got = runPass(t, e, worker.ReconcileOptions{})
	wantTable(t, got, "pat@example.org | acme | readers | report | autoinvite granted it, someone removed it: not re-added (regrant_removed: true would)")
	assertNoWrites(t, f.Fake)
}

// driftEnv has one of each difference: a missed signup, a lost
// deactivation, a hand removal and a member no rule covers.
func driftEnv(t *testing.T, rules string) *testenv.Env {
	t.Helper()
	e := testenv.New(t, testenv.WithRules(rules))
	f := e.Fake
	for _, p := range []struct{ id, name string }{{pat, "pat"}, {quinn, "quinn"}, {rose, "rose"}} {
		f.AddJiraUser(exampleUser(p.id, p.name))
		f.AddMember("acme", p.id)
	}
	signup(t, e, quinn, "quinn")
	signup(t, e, rose, "rose")
	e.WaitIdle()
	f.UpdateJiraUser(quinn, func(u *fake.JiraUser) { u.Active = false })
	f.RemoveGroupMember("acme", "readers", rose)
	f.AddMember("acme", "557058:stranger", "developers")
	f.ResetCalls()
	return e
}

var driftWould = []string{
	"557058:stranger | acme | developers | report | in the group, not granted by autoinvite, and no rule gives it",
	"pat@example.org | acme | readers | would grant | no ledger entry: the signup webhook was missed",
	"quinn@example.org | acme | readers | would revoke | deactivated in Jira, still holds a group autoinvite granted",
	"rose@example.org | acme | readers | report | autoinvite granted it, someone removed it: not re-added (regrant_removed: true would)",
}

// Neither --dry-run nor mode: report changes anything in Atlassian; a dry
// run does not write the ledger or the audit trail either.
func TestReconcileDryRunAndReportModeMakeNoWriteCall(t *testing.T) {
	t.Run("dry run", func(t *testing.T) {
		e := driftEnv(t, reconcileRules)
		before := ledgerSnapshot(t, e)
		auditBefore := auditCount(t, e)
		rep, got := runPass(t, e, worker.ReconcileOptions{DryRun: true})
		wantTable(t, got, driftWould...)
		if !rep.DryRun || rep.Fixed() != 0 {
			t.Fatalf("report = %+v", rep)
		}
		assertNoWrites(t, e.Fake.Fake)
		if after := ledgerSnapshot(t, e); after != before {
			t.Fatalf("the ledger changed:\n%s\n%s", before, after)
		}
		if n := auditCount(t, e); n != auditBefore {
			t.Fatalf("audit records %d -> %d", auditBefore, n)
		}
	})
	t.Run("mode report", func(t *testing.T) {
		e := driftEnv(t, strings.Replace(reconcileRules, "mode: apply", "mode: report", 1))
		before := ledgerSnapshot(t, e)
		_, got := runPass(t, e, worker.ReconcileOptions{})
		wantTable(t, got, driftWould...)
		assertNoWrites(t, e.Fake.Fake)
		if after := ledgerSnapshot(t, e); after != before {
			t.Fatalf("the ledger changed:\n%s\n%s", before, after)
		}
		recs, err := e.App.Ledger().ReadAudit(context.Background(), e.Now().Add(-24*3600e9), "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		var drift []string
		for _, r := range recs {
			if r.Action == ledger.ActionReconcileDrift || r.Action == ledger.ActionReconcilePass {
				drift = append(drift, r.Action+" "+r.Outcome+" "+r.Group+" "+r.Email)
			}
		}
		want := []string{
			"reconcile-drift reported readers pat@example.org",
			"reconcile-drift reported readers quinn@example.org",
			"reconcile-drift reported readers rose@example.org",
			"reconcile-pass ok  ",
		}
		if !slices.Equal(drift, want) {
			t.Fatalf("audit = %q, want %q", drift, want)
		}
	})
}

func ledgerSnapshot(t *testing.T, e *testenv.Env) string {
	t.Helper()
	entries, err := e.App.Ledger().List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, x := range entries {
		b.WriteString(x.Workspace + " " + x.PersonID + " " + string(x.Status) + " " + strings.Join(x.Granted, ",") + " " + x.UpdatedAt.String() + "\n")
	}
	return b.String()
}

func auditCount(t *testing.T, e *testenv.Env) int {
	t.Helper()
	recs, err := e.App.Ledger().ReadAudit(context.Background(), e.Now().Add(-24*3600e9), "", 100000)
	if err != nil {
		t.Fatal(err)
	}
	return len(recs)
}

// A pass stopped half-way resumes from its cursor in Redis: Jira's pages
// and the group listings read before the stop are not read again, and the
// resumed pass's table holds what both parts found.
func TestReconcileInterruptedPassResumes(t *testing.T) {
	rules := strings.Replace(reconcileRules, "reconcile: {mode: apply}", "reconcile: {mode: apply, page_size: 2}", 1)
	e := testenv.New(t, testenv.WithRules(rules))
	f := e.Fake
	for _, p := range []struct{ id, name string }{{pat, "pat"}, {quinn, "quinn"}, {rose, "rose"}} {
		f.AddJiraUser(exampleUser(p.id, p.name))
		f.AddMember("acme", p.id)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The demo Cloud people come first (4 of them), then pat, quinn and rose: stop after pat.
	_, err := e.App.Worker().Reconcile(ctx, e.App.JiraUsers(), worker.ReconcileOptions{Progress: func(n int) {
		if n == 5 {
			cancel()
		}
	}})
	if err == nil || !strings.Contains(err.Error(), "the next pass resumes here") {
		t.Fatalf("interrupted pass: err = %v", err)
	}
	if got := e.Entry("acme", "acct:"+pat); got == nil || got.Status != ledger.StatusGranted {
		t.Fatalf("pat before the stop: %+v", got)
	}
	if e.Entry("acme", "acct:"+quinn) != nil {
		t.Fatal("quinn was handled before the stop")
	}
	firstPages := jiraPages(f.Fake)
	f.ResetCalls()

	rep, got := runPass(t, e, worker.ReconcileOptions{})
	if !rep.Resumed || rep.Users != 7 {
		t.Fatalf("resumed = %v, users = %d; want a resumed pass over 7 users", rep.Resumed, rep.Users)
	}
	wantTable(t, got,
		"pat@example.org | acme | readers | granted | no ledger entry: the signup webhook was missed",
		"quinn@example.org | acme | readers | granted | no ledger entry: the signup webhook was missed",
		"rose@example.org | acme | readers | granted | no ledger entry: the signup webhook was missed",
	)
	resumedPages := jiraPages(f.Fake)
	if !slices.Equal(firstPages, []string{"group builders 0", "users 0", "users 2", "users 4"}) || !slices.Equal(resumedPages, []string{"users 4", "users 6"}) {
		t.Fatalf("Jira pages read: before the stop %q, after %q", firstPages, resumedPages)
	}
	if n := len(f.CallsTo(http.MethodGet, "/1.0/groups/acme/readers/members")); n != 0 {
		t.Fatalf("the resumed pass listed the Bitbucket groups again (%d calls)", n)
	}
	if n := len(f.CallsTo(http.MethodPut, "/1.0/groups/acme/readers/members/"+pat)); n != 0 {
		t.Fatal("pat was added again")
	}
	f.ResetCalls()
	if rep, got := runPass(t, e, worker.ReconcileOptions{}); rep.Resumed || len(rep.Rows) != 0 {
		t.Fatalf("third pass: resumed %v, found:\n%s", rep.Resumed, got)
	}
}

func jiraPages(f *fake.Fake) []string {
	var out []string
	for _, c := range f.Calls() {
		q := c.Query
		start := between(q, "startAt=")
		switch c.Path {
		case "/rest/api/3/users/search":
			out = append(out, "users "+start)
		case "/rest/api/3/group/member":
			out = append(out, "group "+between(q, "groupname=")+" "+start)
		}
	}
	return out
}

func between(q, key string) string {
	_, v, _ := strings.Cut(q, key)
	v, _, _ = strings.Cut(v, "&")
	return v
}

// The same for a workspace administered in Atlassian Administration: the
// actual membership comes from the Admin API's users/search by group, the
// repairs go through the organization batch and membership removal.
func TestReconcileAtlassianAdministeredWorkspace(t *testing.T) {
	rules := `
reconcile: {mode: apply}
worker: {batch_wait: 1s, batch_max_delay: 10s, batch_size: 40}
workspaces:
  - workspace: globex
    administration: atlassian
    organization: {id: org-1, base_url: $FAKE_URL}
    rules:
      - name: staff
        match: {email_domains: [globex.com]}
        groups: [developers]
`
	fx := atlassianEnv(t, rules)
	e, f := fx.e, fx.e.Fake
	for _, p := range []struct{ id, name string }{{"557058:ann", "ann"}, {"557058:bob", "bob"}, {"557058:cy", "cy"}} {
		f.AddJiraUser(fake.JiraUser{AccountID: p.id, AccountType: "atlassian", Email: p.name + "@globex.com", Active: true})
		f.AddOrgUser(p.id, p.name+"@globex.com")
	}
	for _, p := range []struct{ id, name string }{{"557058:bob", "bob"}, {"557058:cy", "cy"}} {
		assertAccepted(t, e.Webhook("user_created", "atl-"+p.name, atlassianUser(p.id, p.name+"@globex.com")), "accepted")
	}
	e.WaitIdle()
	f.UpdateJiraUser("557058:bob", func(u *fake.JiraUser) { u.Active = false })
	f.RemoveOrgGroupMember("developers", "557058:cy")
	f.AddOrgUser("557058:zed", "zed@globex.com")
	f.AddOrgGroupMember("developers", "557058:zed")
	f.ResetCalls()

	_, got := runPass(t, e, worker.ReconcileOptions{})
	e.WaitIdle()
	wantTable(t, got,
		"557058:zed | globex | developers | report | in the group, not granted by autoinvite, and no rule gives it",
		"ann@globex.com | globex | developers | queued (batched call) | no ledger entry: the signup webhook was missed",
		"bob@globex.com | globex | developers | revoked | deactivated in Jira, still holds a group autoinvite granted",
		"cy@globex.com | globex | developers | report | autoinvite granted it, someone removed it: not re-added (regrant_removed: true would)",
	)
	noCloudWrites(t, f.Fake)
	if got := f.OrgGroupMembers("developers"); !slices.Equal(got, []string{"557058:ann", "557058:zed"}) {
		t.Fatalf("developers = %v", got)
	}
	if got := e.Entry("globex", "acct:557058:ann"); got.Status != ledger.StatusGranted || !slices.Equal(got.Granted, []string{"developers"}) {
		t.Fatalf("ann = %+v", got)
	}
	if got := e.Entry("globex", "acct:557058:bob"); got.Status != ledger.StatusRevoked {
		t.Fatalf("bob = %+v", got)
	}
	searches := callBodies(f.Fake, http.MethodPost, "/admin/v2/orgs/org-1/directories/dir-1/users/search")
	if !slices.Contains(searches, `{"groupIds":["`+fx.dev+`"],"limit":100}`) {
		t.Fatalf("no users/search by group: %q", searches)
	}

	f.ResetCalls()
	_, got = runPass(t, e, worker.ReconcileOptions{})
	wantTable(t, got,
		"557058:zed | globex | developers | report | in the group, not granted by autoinvite, and no rule gives it",
		"cy@globex.com | globex | developers | report | autoinvite granted it, someone removed it: not re-added (regrant_removed: true would)",
	)
	assertNoWrites(t, f.Fake)
}

// The CLI's pass is queued for the service's workers on the reconcile queue
// (below signups) and its report comes back as the task's result.
func TestReconcileQueuedOnTheLowPriorityQueue(t *testing.T) {
	e := driftEnv(t, reconcileRules)
	ad := newAdmin(t, e)
	rep, err := ad.Reconcile(context.Background(), jobs.ReconcilePass{Workspace: "acme", DryRun: true, Actor: "cli:test"}, 10e9)
	if err != nil {
		t.Fatal(err)
	}
	wantTable(t, table(rep), driftWould...)
	assertNoWrites(t, e.Fake.Fake)
}

func newAdmin(t *testing.T, e *testenv.Env) *app.Admin {
	t.Helper()
	cfg, err := config.LoadFile(e.ConfigPath, func(k string) string {
		if k == "AUTOINVITE_REDIS_URL" {
			return e.Redis.URL
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	ad, err := app.NewAdmin(cfg, config.Secrets{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ad.Close)
	return ad
}

// A pass never holds a worker slot through a long budget wait: it stores its
// cursor and ends the attempt with the wait (Asynq brings it back), and each
// resumed attempt goes on from there. While signups wait for the Bitbucket
// budget, a pass steps aside before spending any of it, and the CLI says the
// pass is paused instead of waiting for it.
func TestReconcilePausesForTheBudgetAndForSignups(t *testing.T) {
	rules := reconcileRules + "rate_limits: {bitbucket: {requests: 2, per: 1h}}\n"
	e := testenv.New(t, testenv.WithRules(rules))
	f := e.Fake
	for _, p := range []struct{ id, name string }{{pat, "pat"}, {quinn, "quinn"}} {
		f.AddJiraUser(exampleUser(p.id, p.name))
		f.AddMember("acme", p.id)
	}
	ctx := context.Background()
	rdb := e.App.Redis()
	budgetKeys := "{" + e.Redis.Prefix + ":rl:bitbucket:*}:requests"
	refill := func() { // what an hour would do
		keys, err := rdb.Keys(ctx, budgetKeys).Result()
		if err != nil || len(keys) == 0 {
			t.Fatalf("the Bitbucket budget's keys %q: %v %v", budgetKeys, keys, err)
		}
		rdb.Del(ctx, keys...)
	}

	// Two group listings spend the budget; the first repair would wait an hour.
	pauses := 0
	var rep reconcile.Report
	for attempt := 0; ; attempt++ {
		if attempt == 6 {
			t.Fatalf("the pass did not finish in 6 attempts (%d pauses)", pauses)
		}
		runCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
		start := time.Now()
		var err error
		rep, err = e.App.Worker().Reconcile(runCtx, e.App.JiraUsers(), worker.ReconcileOptions{})
		cancel()
		if err == nil {
			break
		}
		w, ok := ratelimit.AsWait(err)
		if !ok || w.RetryAfter < 10*time.Minute {
			t.Fatalf("attempt %d: err = %v, want the budget's wait of about an hour", attempt, err)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Fatalf("attempt %d waited %s in its slot", attempt, took)
		}
		var st struct {
			Stage string `json:"stage"`
		}
		if ok, err := e.App.Ledger().ReconcileState(ctx, "acme", &st); err != nil || !ok || st.Stage == "" {
			t.Fatalf("no cursor stored after the pause: %v %v %+v", ok, err, st)
		}
		pauses++
		refill()
	}
	if pauses == 0 || !rep.Resumed {
		t.Fatalf("pauses = %d, resumed = %v: want the pass paused and resumed", pauses, rep.Resumed)
	}
	wantTable(t, table(rep),
		"pat@example.org | acme | readers | granted | no ledger entry: the signup webhook was missed",
		"quinn@example.org | acme | readers | granted | no ledger entry: the signup webhook was missed",
	)
	for _, g := range []string{"developers", "readers"} {
		if n := len(f.CallsTo(http.MethodGet, "/1.0/groups/acme/"+g+"/members")); n != 1 {
			t.Fatalf("group %s listed %d times, want once (resumed passes go on from the cursor)", g, n)
		}
	}

	// A signup now waits for the spent budget, in the backlog.
	sam := "557058:sam"
	f.AddJiraUser(exampleUser(sam, "sam"))
	f.AddMember("acme", sam)
	signup(t, e, sam, "sam")
	backlog := ratelimit.NewBacklog(rdb, e.Redis.Prefix)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if n, _ := backlog.Waiting(ctx, ratelimit.APIBitbucket); n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the signup never waited for the budget")
		}
	}
	refill() // room again: only the waiting signup holds the pass back
	f.ResetCalls()
	_, err := e.App.Worker().Reconcile(ctx, e.App.JiraUsers(), worker.ReconcileOptions{})
	if w, ok := ratelimit.AsWait(err); !ok || w.RetryAfter != time.Minute || !strings.Contains(err.Error(), "signups are waiting") {
		t.Fatalf("pass while a signup waits: err = %v, want it to step aside for a minute", err)
	}
	for _, c := range f.Calls() {
		if !strings.HasPrefix(c.Path, "/rest/") {
			t.Fatalf("the pass spent Bitbucket's budget while a signup waited: %s %s", c.Method, c.Path)
		}
	}

	// Through the service: the CLI reports the pause and returns.
	_, err = newAdmin(t, e).Reconcile(ctx, jobs.ReconcilePass{Workspace: "acme", Actor: "cli:test"}, 10*time.Second)
	if !errors.Is(err, app.ErrPassPaused) || !strings.Contains(err.Error(), "signups are waiting") {
		t.Fatalf("CLI pass while a signup waits: %v, want it reported paused", err)
	}
}
