package integrations_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"

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
	if _, err := bb.Invite(ctx, "unknown-ws", "bob@acme.com", "readers"); !errors.Is(err, bitbucket.ErrWorkspaceNotFound) {
		t.Fatalf("invite into a missing workspace: %v", err)
	}
	invs, err := bb.ListInvitations(ctx, "acme")
	if err != nil || len(invs) != 1 || invs[0].Email != "bob@acme.com" || !reflect.DeepEqual(invs[0].Groups, []string{"readers"}) || invs[0].SentOn.IsZero() {
		t.Fatalf("invitations = %+v, %v", invs, err)
	}
	if err := bb.RemoveFromGroup(ctx, "acme", "developers", "557058:ann"); err != nil {
		t.Fatal(err)
	}
	if got := f.GroupMembers("acme", "developers"); len(got) != 0 {
		t.Fatalf("members after remove: %v", got)
	}
	if err := bb.RemoveFromGroup(ctx, "acme", "developers", "557058:ann"); err != nil { // not in it any more: success
		t.Fatalf("second remove: %v", err)
	}
	f.ManageByOrganization("acme") // its 1.0 writes now answer 404
	if _, err := bb.Invite(ctx, "acme", "carl@acme.com", "readers"); !errors.Is(err, bitbucket.ErrAdministeredInAtlassian) {
		t.Fatalf("invite in a workspace administered in Atlassian: %v", err)
	}
	f.InjectFault(fake.Fault{PathPrefix: "/2.0/", Status: 503, Times: 1})
	_, err = bb.IsMember(ctx, "acme", "557058:ann")
	if !atlassian.IsTemporary(err) || atlassian.StatusOf(err) != 503 {
		t.Fatalf("503 should be temporary: %v", err)
	}
	if got := f.CallStrings()[:2]; !reflect.DeepEqual(got, []string{"GET /2.0/workspaces/acme/members/557058:ann", "GET /2.0/workspaces/acme/members/557058:bob"}) {
		t.Fatalf("membership checks = %q (ann's 200 proves the workspace: no workspace check for bob)", got)
	}
	put := f.CallsTo("PUT", "/1.0/groups/acme/developers/members/557058:ann")[0]
	if put.Body != "{}" {
		t.Fatalf("add call = %+v", put)
	}
	inv := f.CallsTo("PUT", "/1.0/users/acme/invitations")[0]
	if inv.Body != `{"email":"bob@acme.com","group_slug":"readers"}` {
		t.Fatalf("invite call = %+v", inv)
	}
	if got := f.CallsTo("GET", "/2.0/workspaces/unknown-ws"); len(got) != 1 || got[0].Status != 404 {
		t.Fatalf("workspace check = %+v", got)
	}
}

// The fake's Bitbucket 2.0 answers, the new ones above all, match the schemas
// of the official spec, so clients tested against it read what Bitbucket sends.
func TestFakeBitbucketAnswersConformToSpec(t *testing.T) {
	dir := contract.FindDir()
	if dir == "" {
		t.Skip("shared/contracts not present")
	}
	raw, err := os.ReadFile(filepath.Join(dir, "bitbucket-cloud-2.0.subset.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc2 openapi2.T
	if err := json.Unmarshal(raw, &doc2); err != nil {
		t.Fatal(err)
	}
	doc, err := openapi2conv.ToV3(&doc2)
	if err != nil {
		t.Fatal(err)
	}
	doc.Servers = openapi3.Servers{{URL: "http://spec.invalid/2.0"}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	f := faketest.Start(t)
	f.AddWorkspace("acme", "developers")
	f.AddMember("acme", "557058:ann")
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/2.0/workspaces/acme", 200},
		{"/2.0/workspaces/ghost", 404},
		{"/2.0/user", 200},
		{"/2.0/workspaces/acme/members/557058:ann", 200},
		{"/2.0/workspaces/acme/members/557058:bob", 404},
	} {
		req, _ := http.NewRequest("GET", f.URL+tc.path, nil)
		req.SetBasicAuth("bot@acme.com", "t")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Fatalf("%s: HTTP %d, want %d: %s", tc.path, resp.StatusCode, tc.status, body)
		}
		specReq, _ := http.NewRequest("GET", "http://spec.invalid"+tc.path, nil)
		route, params, err := router.FindRoute(specReq)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		in := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: &openapi3filter.RequestValidationInput{Request: specReq, PathParams: params, Route: route},
			Status:                 resp.StatusCode, Header: resp.Header,
			Options: &openapi3filter.Options{IncludeResponseStatus: true},
		}
		in.SetBodyBytes(body)
		if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
			t.Errorf("%s: answer breaks the spec: %v\n%s", tc.path, err, body)
		}
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
