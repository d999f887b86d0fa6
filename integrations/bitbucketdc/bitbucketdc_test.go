package bitbucketdc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/integrations/atlassian"
	"github.com/autoinvite/autoinvite/integrations/bitbucketdc"
	"github.com/autoinvite/autoinvite/integrations/fake"
)

func client(t *testing.T, f *fake.Fake) *bitbucketdc.Client {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return bitbucketdc.New(atlassian.Options{BaseURL: srv.URL, Auth: atlassian.Auth{Bearer: "token"}, Timeout: 5 * time.Second})
}

// usersPerCall lists the users of each add-users call the fake received, in order.
func usersPerCall(t *testing.T, f *fake.Fake) []string {
	var out []string
	for _, c := range f.Calls() {
		var body struct {
			Users []string `json:"users"`
		}
		if err := json.Unmarshal([]byte(c.Body), &body); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %d", strings.Join(body.Users, ","), c.Status))
	}
	return out
}

// One unknown user among eight: the refused call is split in halves down to
// that user, and the other seven are added.
func TestAddUsersIsolatesMissingUsersByHalving(t *testing.T) {
	f := fake.New()
	f.AddDataCenterGroups("developers")
	f.AddDataCenterUsers("a", "b", "c", "d", "e", "g", "h")
	missing, err := client(t, f).AddUsers(context.Background(), "developers", []string{"a", "b", "c", "d", "e", "f", "g", "h"})
	if err != nil || !slices.Equal(missing, []string{"f"}) {
		t.Fatalf("missing = %v, %v; want [f]", missing, err)
	}
	want := []string{"a,b,c,d,e,f,g,h 404", "a,b,c,d 204", "e,f,g,h 404", "e,f 404", "e 204", "f 404", "g,h 204"}
	if got := usersPerCall(t, f); !slices.Equal(got, want) {
		t.Fatalf("calls:\n got  %q\n want %q", got, want)
	}
	if got := f.DataCenterGroupMembers("developers"); !slices.Equal(got, []string{"a", "b", "c", "d", "e", "g", "h"}) {
		t.Fatalf("members = %v", got)
	}
}

// More users than one call takes go out in calls of MaxUsersPerCall; an
// unknown group fails the whole batch with a clear error.
func TestAddUsersChunksAndReportsMissingGroup(t *testing.T) {
	f := fake.New()
	f.AddDataCenterGroups("developers")
	var users []string
	for i := 0; i < bitbucketdc.MaxUsersPerCall+7; i++ {
		users = append(users, fmt.Sprintf("u%03d", i))
	}
	f.AddDataCenterUsers(users...)
	c := client(t, f)
	if missing, err := c.AddUsers(context.Background(), "developers", users); err != nil || len(missing) != 0 {
		t.Fatalf("AddUsers = %v, %v", missing, err)
	}
	calls := usersPerCall(t, f)
	want := []string{strings.Join(users[:bitbucketdc.MaxUsersPerCall], ",") + " 204", strings.Join(users[bitbucketdc.MaxUsersPerCall:], ",") + " 204"}
	if !slices.Equal(calls, want) {
		t.Fatalf("calls:\n got  %q\n want %q", calls, want)
	}
	_, err := c.AddUsers(context.Background(), "nope", users[:1])
	if err == nil || !strings.Contains(err.Error(), `Data Center group "nope": the group does not exist`) || atlassian.StatusOf(err) != 404 {
		t.Fatalf("unknown group: %v", err)
	}
}

// 401 and 403 say what they mean on Data Center's admin resources, stay
// permanent, and keep the APIError for the operator.
func TestUnauthorizedAndForbiddenAreExplained(t *testing.T) {
	const (
		lacksAdmin = "the HTTP access token lacks ADMIN permission (or is invalid)"
		refused    = "the licence's user limit would be exceeded, or the group outranks the token's permission"
	)
	f := fake.New()
	f.AddDataCenterGroups("developers", "admins")
	f.AddDataCenterUsers("ann")
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	ctx := context.Background()

	// Basic credentials: the fake, like Data Center, wants an HTTP access token.
	basic := bitbucketdc.New(atlassian.Options{BaseURL: srv.URL, Auth: atlassian.Auth{Email: "bot", Token: "pw"}, Timeout: 5 * time.Second})
	_, addErr := basic.AddUsers(ctx, "developers", []string{"ann"})
	removeErr := basic.RemoveFromGroup(ctx, "developers", "ann")
	for _, err := range []error{addErr, removeErr} {
		if !strings.Contains(err.Error(), lacksAdmin) || atlassian.StatusOf(err) != 401 || atlassian.IsTemporary(err) {
			t.Errorf("401: %v", err)
		}
	}

	c := client(t, f)
	f.InjectFault(fake.Fault{Method: "POST", PathPrefix: "/rest/api/latest/admin/", Status: 403, Times: 2,
		Body: `{"errors":[{"message":"You are not permitted to access this resource"}]}`})
	_, addErr = c.AddUsers(ctx, "admins", []string{"ann"})
	removeErr = c.RemoveFromGroup(ctx, "admins", "ann")
	for _, err := range []error{addErr, removeErr} {
		if !strings.Contains(err.Error(), refused) || !strings.Contains(err.Error(), `group "admins"`) || atlassian.StatusOf(err) != 403 || atlassian.IsTemporary(err) {
			t.Errorf("403: %v", err)
		}
	}
	if got := f.DataCenterGroupMembers("admins"); len(got) != 0 {
		t.Fatalf("admins = %v", got)
	}
}

// A user who no longer exists is already out of every group; a missing group
// is an error that names it.
func TestRemoveFromGroupMissingUserIsDoneMissingGroupIsNot(t *testing.T) {
	f := fake.New()
	f.AddDataCenterGroups("developers")
	f.AddDataCenterUsers("ann")
	c := client(t, f)
	ctx := context.Background()
	if _, err := c.AddUsers(ctx, "developers", []string{"ann"}); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveFromGroup(ctx, "developers", "ann"); err != nil || len(f.DataCenterGroupMembers("developers")) != 0 {
		t.Fatalf("remove = %v, members %v", err, f.DataCenterGroupMembers("developers"))
	}

	f.InjectFault(fake.Fault{Method: "POST", PathPrefix: "/rest/api/latest/admin/users/remove-group", Status: 404, Times: 1,
		Body: `{"errors":[{"context":null,"message":"User gone does not exist.","exceptionName":"com.atlassian.bitbucket.user.NoSuchUserException"}]}`})
	if err := c.RemoveFromGroup(ctx, "developers", "gone"); err != nil {
		t.Fatalf("removing a user who no longer exists: %v", err)
	}

	err := c.RemoveFromGroup(ctx, "nope", "ann") // the fake answers NoSuchGroupException
	if err == nil || !strings.Contains(err.Error(), `Data Center group "nope": the group does not exist`) || atlassian.StatusOf(err) != 404 || atlassian.IsTemporary(err) {
		t.Fatalf("missing group: %v", err)
	}

	f.InjectFault(fake.Fault{Method: "POST", PathPrefix: "/rest/api/latest/admin/users/remove-group", Status: 404, Times: 1, Body: "Not Found"})
	if err := c.RemoveFromGroup(ctx, "developers", "ann"); atlassian.StatusOf(err) != 404 || !strings.Contains(err.Error(), `group "developers"`) {
		t.Fatalf("an unexplained 404 stays an error: %v", err)
	}
}

// The filter matches parts of names: only an exact (case-insensitive) name
// counts, looked for across pages.
func TestGroupExists(t *testing.T) {
	f := fake.New()
	c := client(t, f)
	ctx := context.Background()
	page := func(body string) {
		f.InjectFault(fake.Fault{Method: "GET", PathPrefix: "/rest/api/latest/admin/groups", Status: 200, Times: 1, Body: body})
	}
	page(`{"size":1,"limit":100,"start":0,"isLastPage":false,"nextPageStart":100,"values":[{"name":"developers-old","deletable":true}]}`)
	page(`{"size":1,"limit":100,"start":100,"isLastPage":true,"values":[{"name":"Developers","deletable":true}]}`)
	if ok, err := c.GroupExists(ctx, "developers"); !ok || err != nil {
		t.Fatalf("GroupExists = %v, %v", ok, err)
	}
	var queries []string
	for _, call := range f.Calls() {
		queries = append(queries, call.Method+" "+call.Path+"?"+call.Query)
	}
	want := []string{"GET /rest/api/latest/admin/groups?filter=developers&limit=100&start=0", "GET /rest/api/latest/admin/groups?filter=developers&limit=100&start=100"}
	if !slices.Equal(queries, want) {
		t.Fatalf("calls:\n got  %q\n want %q", queries, want)
	}

	page(`{"size":1,"limit":100,"start":0,"isLastPage":true,"values":[{"name":"developers-old"}]}`)
	if ok, err := c.GroupExists(ctx, "developers"); ok || err != nil {
		t.Fatalf("only a longer name: %v, %v", ok, err)
	}
	f.InjectFault(fake.Fault{Method: "GET", PathPrefix: "/rest/api/latest/admin/groups", Status: 401, Times: 1})
	if _, err := c.GroupExists(ctx, "developers"); atlassian.StatusOf(err) != 401 || !strings.Contains(err.Error(), "lacks ADMIN permission") {
		t.Fatalf("401: %v", err)
	}
}
