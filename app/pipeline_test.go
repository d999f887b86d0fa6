package app_test

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/internal/testenv"
	"github.com/autoinvite/autoinvite/ledger"
)

const (
	mia    = fake.DemoMemberAccountID
	noah   = fake.DemoNewcomerAccountID
	olivia = fake.DemoHiddenAccountID
)

func cloudUser(accountID, email string) map[string]any {
	u := map[string]any{"accountId": accountID, "accountType": "atlassian", "displayName": "Someone", "active": true}
	if email != "" {
		u["emailAddress"] = email
	} else {
		u["emailAddress"] = nil
	}
	return u
}

func assertCalls(t *testing.T, f *fake.Fake, want ...string) {
	t.Helper()
	if got := f.CallStrings(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Atlassian calls:\n got  %q\n want %q", got, want)
	}
}

func assertAccepted(t *testing.T, r testenv.Response, outcome string) {
	t.Helper()
	if r.Status != http.StatusAccepted || r.Body["status"] != outcome {
		t.Fatalf("webhook answer = %d %s, want 202 %s", r.Status, r.Raw, outcome)
	}
}

func TestCloudMemberIsAddedToEachGroupWithoutInvitation(t *testing.T) {
	e := testenv.New(t)
	assertAccepted(t, e.Webhook("user_created", "d-mia", cloudUser(mia, "mia@acme.com")), "accepted")
	e.WaitIdle()

	assertCalls(t, e.Fake.Fake,
		"GET /rest/api/3/user",
		"GET /2.0/workspaces/acme/members/"+mia,
		"PUT /1.0/groups/acme/developers/members/"+mia,
		"PUT /1.0/groups/acme/readers/members/"+mia,
	)
	if q := e.Fake.Calls()[0].Query; q != "accountId=557058%3A0b1f2c3d-mia&expand=groups" {
		t.Fatalf("jira query = %s", q)
	}
	got := e.Entry("acme", "acct:"+mia)
	if got.Status != ledger.StatusGranted || !reflect.DeepEqual(got.Granted, []string{"developers", "readers"}) || len(got.Waiting) != 0 {
		t.Fatalf("ledger = %+v", got)
	}
	if !reflect.DeepEqual(got.RulesByGroup, map[string][]string{"developers": {"engineers"}, "readers": {"everyone"}}) {
		t.Fatalf("rules by group = %v", got.RulesByGroup)
	}
	if m := e.Fake.GroupMembers("acme", "developers"); !reflect.DeepEqual(m, []string{mia}) {
		t.Fatalf("developers = %v", m)
	}
	if len(e.Fake.Invitations("acme")) != 0 {
		t.Fatal("a member must not be invited")
	}
}

func TestCloudNonMemberGetsOneInvitationAndTheRestWaits(t *testing.T) {
	e := testenv.New(t)
	assertAccepted(t, e.Webhook("user_created", "d-noah", cloudUser(noah, "noah@acme.com")), "accepted")
	e.WaitIdle()

	// A 404 from the member check is confirmed against the workspace (cached).
	assertCalls(t, e.Fake.Fake,
		"GET /rest/api/3/user",
		"GET /2.0/workspaces/acme/members/"+noah,
		"GET /2.0/workspaces/acme",
		"PUT /1.0/users/acme/invitations",
	)
	if body := e.Fake.Calls()[3].Body; body != `{"email":"noah@acme.com","group_slug":"developers"}` {
		t.Fatalf("invitation body = %s", body)
	}
	got := e.Entry("acme", "acct:"+noah)
	if got.Status != ledger.StatusInvited || !reflect.DeepEqual(got.Waiting, []string{"readers"}) || len(got.Granted) != 0 {
		t.Fatalf("ledger = %+v", got)
	}
	if len(got.Invitations) != 1 {
		t.Fatalf("invitations = %+v", got.Invitations)
	}
	inv := got.Invitations[0]
	if inv.Group != "developers" || inv.State != ledger.InvitationPending || inv.ExpiresAt.Sub(inv.SentAt) != 168*time.Hour || inv.Resends != 0 {
		t.Fatalf("invitation = %+v", inv)
	}
	if got.Email != "noah@acme.com" {
		t.Fatalf("email = %q", got.Email)
	}

	// A later event about the same person (new delivery id) sends nothing again.
	e.Fake.ResetCalls()
	assertAccepted(t, e.Webhook("user_updated", "d-noah-2", cloudUser(noah, "noah@acme.com")), "accepted")
	e.WaitIdle()
	assertCalls(t, e.Fake.Fake, "GET /rest/api/3/user", "GET /2.0/workspaces/acme/members/"+noah)
	if n := len(e.Fake.Invitations("acme")); n != 1 {
		t.Fatalf("pending invitations in Bitbucket = %d, want 1", n)
	}

	// Once they have joined, the next event grants every group, the waiting one included.
	e.Fake.Accept("acme", "noah@acme.com", noah)
	e.Fake.ResetCalls()
	assertAccepted(t, e.Webhook("user_updated", "d-noah-3", cloudUser(noah, "noah@acme.com")), "accepted")
	e.WaitIdle()
	assertCalls(t, e.Fake.Fake,
		"GET /rest/api/3/user",
		"GET /2.0/workspaces/acme/members/"+noah,
		"PUT /1.0/groups/acme/developers/members/"+noah,
		"PUT /1.0/groups/acme/readers/members/"+noah,
	)
	got = e.Entry("acme", "acct:"+noah)
	if got.Status != ledger.StatusGranted || got.Invitations[0].State != ledger.InvitationAccepted || len(got.Waiting) != 0 {
		t.Fatalf("ledger after joining = %+v", got)
	}
}

func TestDataCenterUserGetsOneInvitationPerGroup(t *testing.T) {
	e := testenv.New(t, testenv.DataCenter())
	dave := map[string]any{"name": "dave", "key": "JIRAUSER10100", "emailAddress": "dave@acme.com", "active": true}
	first := e.Webhook("user_created", "", dave) // Data Center sends no identifier
	assertAccepted(t, first, "accepted")
	again := e.Webhook("user_created", "", dave)
	assertAccepted(t, again, "duplicate")
	if first.Body["task_id"] != again.Body["task_id"] || !strings.HasPrefix(first.Body["task_id"].(string), "delivery:derived-") {
		t.Fatalf("derived keys differ: %v vs %v", first.Body["task_id"], again.Body["task_id"])
	}
	e.WaitIdle()

	assertCalls(t, e.Fake.Fake,
		"GET /rest/api/2/user",
		"PUT /1.0/users/acme/invitations",
		"PUT /1.0/users/acme/invitations",
	)
	calls := e.Fake.Calls()
	if calls[0].Query != "expand=groups&username=dave" {
		t.Fatalf("jira query = %s", calls[0].Query)
	}
	if calls[1].Body != `{"email":"dave@acme.com","group_slug":"developers"}` || calls[2].Body != `{"email":"dave@acme.com","group_slug":"readers"}` {
		t.Fatalf("invitation bodies = %s, %s", calls[1].Body, calls[2].Body)
	}
	got := e.Entry("acme", "dc:JIRAUSER10100")
	if got.Status != ledger.StatusInvited || len(got.Invitations) != 2 || len(got.Waiting) != 0 || got.JiraUser != "dave" {
		t.Fatalf("ledger = %+v", got)
	}
}

func TestHiddenEmailIsResolvedThroughJira(t *testing.T) {
	e := testenv.New(t)
	// The webhook hides Noah's address; Jira's REST API (admin token) has it.
	assertAccepted(t, e.Webhook("user_created", "d-hidden", cloudUser(noah, "")), "accepted")
	e.WaitIdle()
	assertCalls(t, e.Fake.Fake, "GET /rest/api/3/user", "GET /2.0/workspaces/acme/members/"+noah, "GET /2.0/workspaces/acme", "PUT /1.0/users/acme/invitations")
	if body := e.Fake.Calls()[3].Body; body != `{"email":"noah@acme.com","group_slug":"developers"}` {
		t.Fatalf("invitation body = %s", body)
	}
}

func TestNoEmailAndNoMembershipIsRecordedAsWaiting(t *testing.T) {
	// Olivia hides her email everywhere; the rule needs none but she is not a member.
	e := testenv.New(t, testenv.WithRules(`
workspaces:
  - workspace: acme
    rules:
      - {name: everyone, match: {}, groups: [readers]}
`))
	assertAccepted(t, e.Webhook("user_created", "d-olivia", cloudUser(olivia, "")), "accepted")
	e.WaitIdle()
	// The rules need no Jira data, so Jira is asked only when an invitation needs the address.
	assertCalls(t, e.Fake.Fake, "GET /2.0/workspaces/acme/members/"+olivia, "GET /2.0/workspaces/acme", "GET /rest/api/3/user")
	got := e.Entry("acme", "acct:"+olivia)
	if got.Status != ledger.StatusWaitingForEmail || !reflect.DeepEqual(got.Waiting, []string{"readers"}) {
		t.Fatalf("ledger = %+v", got)
	}
	if info := e.QueueInfo(); info.Archived != 0 || info.Retry != 0 {
		t.Fatalf("waiting for an email is not a failure: %+v", info)
	}
}

func TestCustomerAccountIsIgnored(t *testing.T) {
	e := testenv.New(t)
	u := cloudUser(fake.DemoCustomerAccountID, "buyer@example.com")
	u["accountType"] = "customer"
	assertAccepted(t, e.Webhook("user_created", "d-cust", u), "accepted")
	e.WaitIdle()
	assertCalls(t, e.Fake.Fake)
	if got := e.Entry("acme", "acct:"+fake.DemoCustomerAccountID); got != nil {
		t.Fatalf("ledger entry for a customer: %+v", got)
	}
	if !strings.Contains(e.Logs.String(), "ignored: app and customer accounts never get Bitbucket access") {
		t.Fatal("ignored customer not logged")
	}
}

func TestDuplicateDeliveryCreatesOneTask(t *testing.T) {
	e := testenv.New(t, testenv.IntakeOnly())
	user := cloudUser(noah, "noah@acme.com")
	assertAccepted(t, e.Webhook("user_created", "same-delivery", user), "accepted")
	retry := e.Post(http.MethodPost, testenv.Payload("user_created", user), map[string]string{
		"X-Hub-Signature":                "sha256=" + strings.TrimPrefix(sign(testenv.Payload("user_created", user)), "sha256="),
		"X-Atlassian-Webhook-Identifier": "same-delivery",
		"X-Atlassian-Webhook-Retry":      "1",
	})
	assertAccepted(t, retry, "duplicate")
	if info := e.QueueInfo(); info.Size != 1 || info.Pending != 1 {
		t.Fatalf("queue = size %d pending %d, want one task", info.Size, info.Pending)
	}
	if err := e.App.StartWorkers(); err != nil {
		t.Fatal(err)
	}
	e.WaitIdle()
	if n := len(e.Fake.Invitations("acme")); n != 1 {
		t.Fatalf("invitations = %d", n)
	}
	// After processing, the id is still remembered (retention): still a duplicate.
	assertAccepted(t, e.Webhook("user_created", "same-delivery", user), "duplicate")
}

func TestRetryAfterFake500SendsNothingTwice(t *testing.T) {
	e := testenv.New(t, testenv.DataCenter())
	e.Fake.InjectFault(fake.Fault{Method: "PUT", PathPrefix: "/1.0/users/acme/invitations", Status: 500, Body: "oops", Times: 1})
	dave := map[string]any{"name": "dave", "key": "JIRAUSER10100", "emailAddress": "dave@acme.com"}
	assertAccepted(t, e.Webhook("user_created", "d-dave", dave), "accepted")
	e.WaitIdle()

	var invites []string
	for _, c := range e.Fake.CallsTo("PUT", "") {
		invites = append(invites, c.Body+" "+http.StatusText(c.Status))
	}
	want := []string{
		`{"email":"dave@acme.com","group_slug":"developers"} Internal Server Error`,
		`{"email":"dave@acme.com","group_slug":"readers"} OK`,
		`{"email":"dave@acme.com","group_slug":"developers"} OK`, // the retry: readers is not sent again
	}
	if !reflect.DeepEqual(invites, want) {
		t.Fatalf("invitation calls:\n got  %q\n want %q", invites, want)
	}
	got := e.Entry("acme", "dc:JIRAUSER10100")
	if got.Status != ledger.StatusInvited || len(got.Invitations) != 2 || got.LastError != "" {
		t.Fatalf("ledger = %+v", got)
	}
	// asynq counts every attempt as processed: one failed, one succeeded.
	if info := e.QueueInfo(); info.Processed != 2 || info.Failed != 1 || info.Archived != 0 {
		t.Fatalf("queue counters: processed %d failed %d archived %d, want 2, 1, 0", info.Processed, info.Failed, info.Archived)
	}
}

func TestOneFailingGroupNeverDropsTheOthers(t *testing.T) {
	e := testenv.New(t, testenv.WithRules(`
workspaces:
  - workspace: acme
    rules:
      - {name: ghosts, match: {}, groups: [ghost-group]}
      - {name: everyone, match: {}, groups: [readers]}
  - workspace: unknown-ws
    rules:
      - {name: everyone, match: {}, groups: [readers]}
`))
	assertAccepted(t, e.Webhook("user_created", "d-mia", cloudUser(mia, "mia@acme.com")), "accepted")
	e.WaitIdle()
	got := e.Entry("acme", "acct:"+mia)
	if got.Status != ledger.StatusFailed || !reflect.DeepEqual(got.Granted, []string{"readers"}) || !reflect.DeepEqual(got.Waiting, []string{"ghost-group"}) {
		t.Fatalf("ledger = %+v", got)
	}
	if !strings.Contains(got.LastError, "group not found") || !strings.Contains(got.LastError, "HTTP 404") {
		t.Fatalf("last error = %q", got.LastError)
	}
	if m := e.Fake.GroupMembers("acme", "readers"); !reflect.DeepEqual(m, []string{mia}) {
		t.Fatalf("readers = %v", m)
	}
	other := e.Entry("unknown-ws", "acct:"+mia)
	if other == nil || other.Status != ledger.StatusFailed {
		t.Fatalf("second workspace = %+v", other)
	}
	// Permanent failures are archived (visible in the dashboard), not retried forever.
	if info := e.QueueInfo(); info.Archived != 1 {
		t.Fatalf("archived = %d", info.Archived)
	}
}

func TestExcludedPersonGetsNothing(t *testing.T) {
	e := testenv.New(t, testenv.WithRules(`
workspaces:
  - workspace: acme
    exclude: {emails: [mia@acme.com]}
    rules:
      - {name: everyone, match: {}, groups: [readers]}
`))
	assertAccepted(t, e.Webhook("user_created", "d-mia", cloudUser(mia, "mia@acme.com")), "accepted")
	e.WaitIdle()
	assertCalls(t, e.Fake.Fake)
	if got := e.Entry("acme", "acct:"+mia); got.Status != ledger.StatusExcluded || len(got.Granted) != 0 {
		t.Fatalf("ledger = %+v", got)
	}
}

func TestLogsFollowOneSignupAndHoldNoSecret(t *testing.T) {
	e := testenv.New(t)
	r := e.Post(http.MethodPost, testenv.Payload("user_created", cloudUser(noah, "noah@acme.com")), map[string]string{
		"X-Hub-Signature":                sign(testenv.Payload("user_created", cloudUser(noah, "noah@acme.com"))),
		"X-Atlassian-Webhook-Identifier": "d-trace",
		"X-Request-Id":                   "req-trace-1",
	})
	assertAccepted(t, r, "accepted")
	e.WaitIdle()
	logs := e.Logs.String()
	var traced []string
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"request_id":"req-trace-1"`) {
			traced = append(traced, line)
		}
	}
	joined := strings.Join(traced, "\n")
	for _, want := range []string{`"message":"jira webhook"`, `"message":"invitation sent"`, `"message":"signup processed"`, `"task_id":"delivery:d-trace"`} {
		if !strings.Contains(joined, want) {
			t.Errorf("no log line with request_id req-trace-1 and %s", want)
		}
	}
	for _, secret := range []string{testenv.WebhookSecret, testenv.JiraToken, testenv.BitbucketToken} {
		if strings.Contains(logs, secret) {
			t.Errorf("secret %q in logs", secret)
		}
	}
}
