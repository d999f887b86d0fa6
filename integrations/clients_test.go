package integrations_test

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/integrations/atlassian"
	"github.com/autoinvite/autoinvite/integrations/bitbucket"
	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/integrations/fake/contract"
	"github.com/autoinvite/autoinvite/integrations/fake/faketest"
	"github.com/autoinvite/autoinvite/integrations/jira"
)

func opts(url string) atlassian.Options {
	return atlassian.Options{BaseURL: url, Auth: atlassian.Auth{Email: "bot@acme.com", Token: "t"}, Timeout: 2 * time.Second, UserAgent: "autoinvite-test"}
}

func TestBitbucketClientAgainstFake(t *testing.T) {
	ctx := context.Background()
	f := faketest.Start(t)
	f.AddWorkspace("acme", "developers", "readers")
	f.AddMember("acme", "557058:ann")
	bb := bitbucket.New(opts(f.URL))

	if ok, err := bb.IsMember(ctx, "acme", "557058:ann"); err != nil || !ok {
		t.Fatalf("IsMember(ann) = %v, %v", ok, err)
	}
	if ok, err := bb.IsMember(ctx, "acme", "557058:bob"); err != nil || ok {
		t.Fatalf("IsMember(bob) = %v, %v", ok, err)
	}
	for i, wantAlready := range []bool{false, true} { // second add answers 409: success
		if already, err := bb.AddToGroup(ctx, "acme", "developers", "557058:ann"); err != nil || already != wantAlready {
			t.Fatalf("add #%d = %v, %v", i, already, err)
		}
	}
	if _, err := bb.AddToGroup(ctx, "acme", "nope", "557058:ann"); !errors.Is(err, bitbucket.ErrGroupNotFound) {
		t.Fatalf("add to missing group: %v", err)
	}
	already, err := bb.Invite(ctx, "acme", "bob@acme.com", "readers")
	if err != nil || already {
		t.Fatalf("invite = %v, %v", already, err)
	}
	if already, err = bb.Invite(ctx, "acme", "bob@acme.com", "readers"); err != nil || !already {
		t.Fatalf("re-invite = %v, %v", already, err)
	}
	if _, err := bb.Invite(ctx, "unknown-ws", "bob@acme.com", "readers"); !errors.Is(err, bitbucket.ErrOrganizationManaged) {
		t.Fatalf("invite on 404: %v", err)
	}
	invs, err := bb.ListInvitations(ctx, "acme")
	if err != nil || len(invs) != 1 || invs[0].Email != "bob@acme.com" || invs[0].Group != "readers" {
		t.Fatalf("invitations = %+v, %v", invs, err)
	}
	if err := bb.RemoveFromGroup(ctx, "acme", "developers", "557058:ann"); err != nil {
		t.Fatal(err)
	}
	if got := f.GroupMembers("acme", "developers"); len(got) != 0 {
		t.Fatalf("members after remove: %v", got)
	}
	f.InjectFault(fake.Fault{PathPrefix: "/2.0/", Status: 503, Times: 1})
	_, err = bb.IsMember(ctx, "acme", "557058:ann")
	if !atlassian.IsTemporary(err) || atlassian.StatusOf(err) != 503 {
		t.Fatalf("503 should be temporary: %v", err)
	}
	calls := f.Calls()
	put := calls[2]
	if put.Method != "PUT" || put.Path != "/1.0/groups/acme/developers/members/557058:ann" || put.Body != "{}" {
		t.Fatalf("add call = %+v", put)
	}
	inv := calls[5]
	if inv.Path != "/1.0/users/acme/invitations" || inv.Body != `{"email":"bob@acme.com","group_slug":"readers"}` {
		t.Fatalf("invite call = %+v", inv)
	}
}

func TestJiraClientsAgainstFake(t *testing.T) {
	ctx := context.Background()
	f := faketest.Start(t)
	f.AddJiraUser(fake.JiraUser{AccountID: "557058:ann", AccountType: "atlassian", Email: "ann@acme.com", EmailHidden: true, Active: true, Groups: []string{"jira-software-users"}})
	f.AddJiraUser(fake.JiraUser{Name: "dave", Key: "JIRAUSER10100", Email: "dave@acme.com", Active: true, Groups: []string{"devs", "all"}})

	cloud := jira.New(opts(f.URL), false)
	u, err := cloud.GetUser(ctx, jira.Ref{AccountID: "557058:ann"})
	if err != nil {
		t.Fatal(err)
	}
	want := jira.User{AccountID: "557058:ann", AccountType: "atlassian", Active: true, Groups: []string{"jira-software-users"}}
	if !reflect.DeepEqual(u, want) {
		t.Fatalf("cloud user = %+v", u)
	}
	dc := jira.New(atlassian.Options{BaseURL: f.URL, Auth: atlassian.Auth{Bearer: "pat"}, Timeout: time.Second}, true)
	u, err = dc.GetUser(ctx, jira.Ref{Name: "dave"})
	if err != nil || u.Email != "dave@acme.com" || !reflect.DeepEqual(u.Groups, []string{"devs", "all"}) {
		t.Fatalf("dc user = %+v, %v", u, err)
	}
	if _, err := cloud.GetUser(ctx, jira.Ref{AccountID: "missing"}); atlassian.StatusOf(err) != http.StatusNotFound || atlassian.IsTemporary(err) {
		t.Fatalf("missing user: %v", err)
	}
	if got := f.Calls()[0]; got.Path != "/rest/api/3/user" || got.Query != "accountId=557058%3Aann&expand=groups" {
		t.Fatalf("call = %+v", got)
	}
}

// The validator must refuse what the real API would: this proves the contract
// check in every other test is live.
func TestContractValidatorRefusesBadRequests(t *testing.T) {
	dir := contract.FindDir()
	if dir == "" {
		t.Skip("shared/contracts not present")
	}
	v, err := contract.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, url, auth, want string
	}{
		{"GET", "/2.0/workspaces/acme/members/557058:ann", "Basic eDp5", ""},
		{"GET", "/rest/api/3/user?accountId=557058:ann&expand=groups", "Basic eDp5", ""},
		{"GET", "/2.0/workspaces/acme/members/557058:ann", "", "no Authorization header"},
		{"DELETE", "/2.0/workspaces/acme/members/x", "Basic eDp5", "no such operation"},
		{"GET", "/rest/api/3/user/groups", "Basic eDp5", "accountId"},
		{"PUT", "/1.0/groups/acme/devs/members/x", "", ""}, // no official spec for 1.0
	} {
		r, _ := http.NewRequest(tc.method, "http://x"+tc.url, nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		err := v.Validate(r)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s %s: err = %v, want %q", tc.method, tc.url, err, tc.want)
		}
	}
}
