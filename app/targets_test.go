package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/internal/testenv"
	"github.com/autoinvite/autoinvite/ledger"
)

const dataCenterRules = `
worker: {batch_wait: 3s, batch_max_delay: 20s, batch_size: 12}
workspaces:
  - workspace: acme-dc
    bitbucket: {deployment: datacenter, base_url: $FAKE_URL}
    rules:
      - name: everyone
        match: {email_domains: [acme.com]}
        groups: [developers, readers]
`

type addUsersCall struct {
	Group  string   `json:"group"`
	Users  []string `json:"users"`
	Status int      `json:"-"`
}

func addUsersCalls(t *testing.T, f *fake.Fake, group string) []addUsersCall {
	t.Helper()
	var out []addUsersCall
	for _, c := range f.CallsTo("", "/rest/api/latest/admin/groups/add-users") {
		var body addUsersCall
		if err := json.Unmarshal([]byte(c.Body), &body); err != nil {
			t.Fatalf("add-users body %q: %v", c.Body, err)
		}
		if body.Group == group {
			body.Status = c.Status
			out = append(out, body)
		}
	}
	return out
}

// Twelve Data Center signups, two of them unknown to Bitbucket Data Center:
// each group gets one batched call for all twelve, the refused batch is split
// until the two are isolated, the ten are added, the two are recorded as missing.
func TestDataCenterAddsAreBatchedAndMissingUsersRecorded(t *testing.T) {
	e := testenv.New(t, testenv.DataCenter(), testenv.WithRules(dataCenterRules))
	e.Fake.AddDataCenterGroups("developers", "readers")
	var users, existing []string
	for i := range 12 {
		name := fmt.Sprintf("user%02d", i)
		users = append(users, name)
		if i != 5 && i != 9 {
			existing = append(existing, name)
			e.Fake.AddDataCenterUsers(name)
		}
	}
	for i, name := range users {
		u := map[string]any{"name": name, "key": fmt.Sprintf("JIRAUSER%d", 20000+i), "emailAddress": name + "@acme.com", "active": true}
		assertAccepted(t, e.Webhook("user_created", "dc-"+name, u), "accepted")
	}
	e.WaitIdle()

	for _, group := range []string{"developers", "readers"} {
		calls := addUsersCalls(t, e.Fake.Fake, group)
		if len(calls) == 0 || len(calls[0].Users) != 12 || calls[0].Status != http.StatusNotFound {
			t.Fatalf("%s: first add-users call = %+v, want all 12 users in one call, refused for the unknown ones", group, calls)
		}
		// Splitting in halves: 2 missing users among 12 cost at most 2·2·log2(12) more calls.
		if len(calls) > 1+2*2*4 {
			t.Fatalf("%s: %d add-users calls, want at most 17", group, len(calls))
		}
		var added []string
		for _, c := range calls[1:] {
			if c.Status == http.StatusNoContent {
				added = append(added, c.Users...)
			}
		}
		sort.Strings(added)
		if !slices.Equal(added, existing) || !slices.Equal(e.Fake.DataCenterGroupMembers(group), existing) {
			t.Fatalf("%s: added %v, members %v, want %v", group, added, e.Fake.DataCenterGroupMembers(group), existing)
		}
	}
	for _, c := range e.Fake.Calls() {
		if strings.HasPrefix(c.Path, "/1.0/") || strings.HasPrefix(c.Path, "/2.0/") {
			t.Fatalf("a Data Center workspace called Bitbucket Cloud: %s", c)
		}
	}

	granted := e.Entry("acme-dc", "dc:JIRAUSER20000")
	if granted.Status != ledger.StatusGranted || !slices.Equal(slices.Sorted(slices.Values(granted.Granted)), []string{"developers", "readers"}) || len(granted.Batched) != 0 || len(granted.Invitations) != 0 {
		t.Fatalf("existing user's ledger = %+v", granted)
	}
	missing := e.Entry("acme-dc", "dc:JIRAUSER20005")
	if missing.Status != ledger.StatusUserMissing || len(missing.Granted) != 0 || len(missing.Waiting) != 2 || len(missing.Invitations) != 0 {
		t.Fatalf("missing user's ledger = %+v", missing)
	}
	hist := e.History("acme-dc", "dc:JIRAUSER20005")
	last := hist[len(hist)-1]
	if last.Action != ledger.ActionUserMissing || !strings.Contains(last.Detail, `Bitbucket Data Center has no user "user05"`) {
		t.Fatalf("missing user's last event = %+v", last)
	}

	// Once the account exists, a resend queues the adds again.
	e.Fake.AddDataCenterUsers("user05")
	if n, err := e.App.Worker().Resend(context.Background(), ledger.Ref{Workspace: "acme-dc", PersonID: "dc:JIRAUSER20005"}, "cli:test"); err != nil || n != 2 {
		t.Fatalf("resend = %d, %v; want 2 groups queued", n, err)
	}
	e.WaitIdle()
	if got := e.Entry("acme-dc", "dc:JIRAUSER20005"); got.Status != ledger.StatusGranted || len(got.Granted) != 2 || !slices.Contains(e.Fake.DataCenterGroupMembers("readers"), "user05") {
		t.Fatalf("after resend: ledger = %+v", got)
	}

	// Deactivation revokes on Data Center too, by username.
	e.Fake.ResetCalls()
	assertAccepted(t, e.Webhook("user_deleted", "dc-del-user00", map[string]any{"name": "user00", "key": "JIRAUSER20000", "active": false}), "accepted")
	e.WaitIdle()
	var removals []string
	for _, c := range e.Fake.CallsTo("", "/rest/api/latest/admin/users/remove-group") {
		removals = append(removals, c.Body)
	}
	sort.Strings(removals)
	want := []string{`{"context":"user00","itemName":"developers"}`, `{"context":"user00","itemName":"readers"}`}
	if !slices.Equal(removals, want) || slices.Contains(e.Fake.DataCenterGroupMembers("developers"), "user00") {
		t.Fatalf("removals = %q, want %q", removals, want)
	}
}

// A 429 with Retry-After from Data Center is waited out, not counted against the people.
func TestDataCenterRetryAfterIsHonoured(t *testing.T) {
	e := testenv.New(t, testenv.DataCenter(), testenv.WithRules(strings.Replace(dataCenterRules, "batch_wait: 5s", "batch_wait: 1s", 1)))
	e.Fake.AddDataCenterGroups("developers", "readers")
	e.Fake.AddDataCenterUsers("ann")
	e.Fake.InjectFault(fake.Fault{Method: "POST", PathPrefix: "/rest/api/latest/admin/groups/add-users", Status: 429, Times: 1, Header: map[string]string{"Retry-After": "1"}})
	assertAccepted(t, e.Webhook("user_created", "dc-ann", map[string]any{"name": "ann", "key": "JIRAUSER1", "emailAddress": "ann@acme.com", "active": true}), "accepted")
	e.WaitIdle()
	var statuses []int
	for _, c := range e.Fake.CallsTo("", "/rest/api/latest/admin/groups/add-users") {
		statuses = append(statuses, c.Status)
	}
	sort.Ints(statuses)
	if !slices.Equal(statuses, []int{204, 204, 429}) {
		t.Fatalf("add-users statuses = %v, want one 429 then both groups added", statuses)
	}
	if got := e.Entry("acme-dc", "dc:JIRAUSER1"); got.Status != ledger.StatusGranted || len(got.Granted) != 2 {
		t.Fatalf("ledger = %+v", got)
	}
}
