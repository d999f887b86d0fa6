package bitbucket_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/integrations/atlassian"
	"github.com/autoinvite/autoinvite/integrations/bitbucket"
	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/integrations/fake/faketest"
	"github.com/autoinvite/autoinvite/internal/transient"
)

// clock is moved by hand so cache expiry needs no sleep.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// setup serves a fake with workspace acme (groups developers, readers; ann
// in developers) and returns a client on a hand-moved clock.
func setup(t *testing.T) (*faketest.Server, *bitbucket.Client, *clock) {
	t.Helper()
	f := faketest.Start(t)
	f.AddWorkspace("acme", "developers", "readers")
	f.AddMember("acme", "557058:ann", "developers")
	clk := &clock{now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	c := bitbucket.New(atlassian.Options{BaseURL: f.URL, Auth: atlassian.Auth{Email: "bot@acme.com", Token: "t"}, Timeout: 5 * time.Second},
		bitbucket.WithClock(clk.Now))
	return f, c, clk
}

// expectCalls fails unless exactly these requests reached the fake since the
// last reset, then forgets them.
func expectCalls(t *testing.T, f *faketest.Server, want ...string) {
	t.Helper()
	if got := f.CallStrings(); !slices.Equal(got, want) {
		t.Fatalf("calls:\n got  %q\n want %q", got, want)
	}
	f.ResetCalls()
}

var ctx = context.Background()

// A misspelled workspace answers 404 for every member as "no such member"
// would: the workspace check turns it into ErrWorkspaceNotFound (two calls),
// and the cached answer makes the next check one call, for a minute.
func TestIsMemberInMisspelledWorkspace(t *testing.T) {
	f, c, clk := setup(t)
	wantMsg := `workspace "acme-typo" does not exist in Bitbucket Cloud (or the credentials cannot see it): check workspaces[].workspace`
	for i, want := range [][]string{
		{"GET /2.0/workspaces/acme-typo/members/557058:ann", "GET /2.0/workspaces/acme-typo"},
		{"GET /2.0/workspaces/acme-typo/members/557058:ann"}, // cached
	} {
		ok, err := c.IsMember(ctx, "acme-typo", "557058:ann")
		if ok || !errors.Is(err, bitbucket.ErrWorkspaceNotFound) || !strings.Contains(err.Error(), wantMsg) || atlassian.IsTemporary(err) {
			t.Fatalf("#%d: IsMember = %v, %v", i, ok, err)
		}
		expectCalls(t, f, want...)
	}
	clk.Advance(61 * time.Second) // "missing" is trusted for a minute only
	if _, err := c.IsMember(ctx, "acme-typo", "557058:ann"); !errors.Is(err, bitbucket.ErrWorkspaceNotFound) {
		t.Fatal(err)
	}
	expectCalls(t, f, "GET /2.0/workspaces/acme-typo/members/557058:ann", "GET /2.0/workspaces/acme-typo")
}

// In a real workspace a 404 is "not a member": the workspace is checked once
// an hour, and a member's 200 already proves the workspace.
func TestIsMemberCachesTheWorkspace(t *testing.T) {
	f, c, clk := setup(t)
	if ok, err := c.IsMember(ctx, "acme", "557058:bob"); ok || err != nil {
		t.Fatalf("bob = %v, %v", ok, err)
	}
	expectCalls(t, f, "GET /2.0/workspaces/acme/members/557058:bob", "GET /2.0/workspaces/acme")
	clk.Advance(59 * time.Minute)
	if ok, err := c.IsMember(ctx, "acme", "557058:bob"); ok || err != nil {
		t.Fatalf("bob again = %v, %v", ok, err)
	}
	expectCalls(t, f, "GET /2.0/workspaces/acme/members/557058:bob")
	clk.Advance(2 * time.Minute)
	if ok, err := c.IsMember(ctx, "acme", "557058:ann"); !ok || err != nil {
		t.Fatalf("ann = %v, %v", ok, err)
	}
	if ok, err := c.IsMember(ctx, "acme", "557058:bob"); ok || err != nil {
		t.Fatalf("bob after an hour = %v, %v", ok, err)
	}
	expectCalls(t, f, "GET /2.0/workspaces/acme/members/557058:ann", "GET /2.0/workspaces/acme/members/557058:bob")
}

func TestWorkspaceExists(t *testing.T) {
	f, c, clk := setup(t)
	for _, tc := range []struct {
		workspace string
		want      bool
		calls     int
	}{{"acme", true, 1}, {"acme", true, 0}, {"ghost", false, 1}, {"ghost", false, 0}} {
		got, err := c.WorkspaceExists(ctx, tc.workspace)
		if err != nil || got != tc.want || len(f.Calls()) != tc.calls {
			t.Fatalf("WorkspaceExists(%s) = %v, %v after %d calls; want %v after %d", tc.workspace, got, err, len(f.Calls()), tc.want, tc.calls)
		}
		f.ResetCalls()
	}
	f.AddWorkspace("ghost") // created meanwhile: seen within a minute
	clk.Advance(time.Minute)
	if ok, err := c.WorkspaceExists(ctx, "ghost"); !ok || err != nil {
		t.Fatalf("ghost after creation = %v, %v", ok, err)
	}
	f.InjectFault(fake.Fault{Method: "GET", PathPrefix: "/2.0/workspaces/other", Status: 503, Times: 1})
	if _, err := c.WorkspaceExists(ctx, "other"); !atlassian.IsTemporary(err) {
		t.Fatalf("503: %v", err)
	}
	if ok, err := c.WorkspaceExists(ctx, "other"); ok || err != nil { // an error was not cached
		t.Fatalf("other = %v, %v", ok, err)
	}
}

// Each status Atlassian may answer a disabled 1.0 write with gives
// ErrAdministeredInAtlassian, with the refusal's APIError inside; a 404 only
// once a GET confirms the group exists (or, for a removal, that the member is
// still in it and a second DELETE is refused too).
func TestWritesRefusedInWorkspaceAdministeredInAtlassian(t *testing.T) {
	ops := []struct {
		name    string
		do      func(*bitbucket.Client) error
		write   string
		confirm string // the GET a 404 is confirmed with
	}{
		{"add", func(c *bitbucket.Client) error {
			_, err := c.AddToGroup(ctx, "acme", "readers", "557058:ann")
			return err
		}, "PUT /1.0/groups/acme/readers/members/557058:ann", "GET /1.0/groups/acme"},
		{"invite", func(c *bitbucket.Client) error {
			_, err := c.Invite(ctx, "acme", "bob@acme.com", "readers")
			return err
		}, "PUT /1.0/users/acme/invitations", "GET /1.0/groups/acme"},
		{"remove", func(c *bitbucket.Client) error {
			return c.RemoveFromGroup(ctx, "acme", "developers", "557058:ann")
		}, "DELETE /1.0/groups/acme/developers/members/557058:ann", "GET /1.0/groups/acme/developers/members"},
	}
	for _, refuse := range []int{http.StatusForbidden, http.StatusMethodNotAllowed, http.StatusGone, http.StatusNotFound} {
		for _, op := range ops {
			t.Run(fmt.Sprintf("%s %d", op.name, refuse), func(t *testing.T) {
				f, c, _ := setup(t)
				f.AdministerInAtlassian("acme", refuse)
				if f.Administration("acme") != refuse {
					t.Fatalf("Administration = %d", f.Administration("acme"))
				}
				err := op.do(c)
				if !errors.Is(err, bitbucket.ErrAdministeredInAtlassian) || atlassian.StatusOf(err) != refuse || atlassian.IsTemporary(err) {
					t.Fatalf("err = %v", err)
				}
				for _, want := range []string{"administered in Atlassian Administration", "admin.atlassian.com", "Organization Admin API", "acme"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("message lacks %q: %v", want, err)
					}
				}
				want := []string{op.write}
				if refuse == http.StatusNotFound {
					want = append(want, op.confirm)
					if op.name == "remove" { // listed: one more DELETE tells a late add from a refusal
						want = append(want, op.write)
					}
				}
				expectCalls(t, f, want...)
				if got := f.GroupMembers("acme", "developers"); !slices.Equal(got, []string{"557058:ann"}) || len(f.GroupMembers("acme", "readers")) != 0 || len(f.Invitations("acme")) != 0 {
					t.Fatalf("state changed: developers %v, readers %v, invitations %v", got, f.GroupMembers("acme", "readers"), f.Invitations("acme"))
				}
			})
		}
	}
}

// In a workspace administered in Bitbucket a 404 means a missing group or
// workspace (or, for a removal, nothing to remove): at most two GETs say which.
func TestAmbiguous404sInWorkspaceAdministeredInBitbucket(t *testing.T) {
	f, c, _ := setup(t)

	_, err := c.AddToGroup(ctx, "acme", "nope", "557058:ann")
	if !errors.Is(err, bitbucket.ErrGroupNotFound) || errors.Is(err, bitbucket.ErrAdministeredInAtlassian) ||
		!strings.Contains(err.Error(), `no group "nope" in workspace "acme"`) || atlassian.StatusOf(err) != 404 {
		t.Fatalf("add to missing group: %v", err)
	}
	expectCalls(t, f, "PUT /1.0/groups/acme/nope/members/557058:ann", "GET /1.0/groups/acme")

	f.InjectFault(fake.Fault{Method: "PUT", PathPrefix: "/1.0/users/acme/invitations", Status: 404, Times: 1})
	if _, err := c.Invite(ctx, "acme", "bob@acme.com", "nope"); !errors.Is(err, bitbucket.ErrGroupNotFound) {
		t.Fatalf("invite into missing group: %v", err)
	}
	expectCalls(t, f, "PUT /1.0/users/acme/invitations", "GET /1.0/groups/acme")

	_, err = c.AddToGroup(ctx, "ghost", "developers", "557058:ann")
	if !errors.Is(err, bitbucket.ErrWorkspaceNotFound) || !strings.Contains(err.Error(), `workspace "ghost" does not exist`) {
		t.Fatalf("add in missing workspace: %v", err)
	}
	expectCalls(t, f, "PUT /1.0/groups/ghost/developers/members/557058:ann", "GET /1.0/groups/ghost", "GET /2.0/workspaces/ghost")

	// Not in the group: the member list confirms, and that is success.
	if err := c.RemoveFromGroup(ctx, "acme", "readers", "557058:ann"); err != nil {
		t.Fatalf("remove a non-member: %v", err)
	}
	expectCalls(t, f, "DELETE /1.0/groups/acme/readers/members/557058:ann", "GET /1.0/groups/acme/readers/members")

	if err := c.RemoveFromGroup(ctx, "acme", "nope", "557058:ann"); !errors.Is(err, bitbucket.ErrGroupNotFound) || !strings.Contains(err.Error(), `no group "nope" in workspace "acme"`) {
		t.Fatalf("remove from missing group: %v", err)
	}
	expectCalls(t, f, "DELETE /1.0/groups/acme/nope/members/557058:ann", "GET /1.0/groups/acme/nope/members", "GET /2.0/workspaces/acme")

	if err := c.RemoveFromGroup(ctx, "ghost", "developers", "557058:ann"); !errors.Is(err, bitbucket.ErrWorkspaceNotFound) {
		t.Fatalf("remove in missing workspace: %v", err)
	}
	expectCalls(t, f, "DELETE /1.0/groups/ghost/developers/members/557058:ann", "GET /1.0/groups/ghost/developers/members") // workspace answer cached

	// A confirming GET that fails says so; what happened is unknown, so the
	// confirmation's error decides: a 502 is worth a retry.
	f.InjectFault(fake.Fault{Method: "GET", PathPrefix: "/1.0/groups/acme", Status: 502, Times: 1})
	_, err = c.AddToGroup(ctx, "acme", "nope", "557058:ann")
	if atlassian.StatusOf(err) != 502 || !transient.Is(err) || !strings.Contains(err.Error(), "HTTP 404") || !strings.Contains(err.Error(), "while confirming") || !strings.Contains(err.Error(), "HTTP 502") {
		t.Fatalf("failed confirmation: %v", err)
	}
}

// A member added by {UUID} is recognised in the group's member list however
// the UUID is written.
func TestRemoveConfirmsMembersByUUID(t *testing.T) {
	f, c, _ := setup(t)
	f.AddMember("acme", "{0b2a4e3c-1111-2222-3333-444455556666}", "readers")
	f.AdministerInAtlassian("acme", http.StatusNotFound)
	err := c.RemoveFromGroup(ctx, "acme", "readers", "{0B2A4E3C-1111-2222-3333-444455556666}")
	if !errors.Is(err, bitbucket.ErrAdministeredInAtlassian) {
		t.Fatalf("err = %v", err)
	}
}

func TestListInvitationsShapes(t *testing.T) {
	f, c, _ := setup(t)
	sent := time.Date(2026, 3, 1, 8, 30, 5, 0, time.UTC)
	f2 := faketest.Start(t, fake.WithClock(func() time.Time { return sent }))
	f2.AddWorkspace("acme", "readers")
	c2 := bitbucket.New(atlassian.Options{BaseURL: f2.URL, Auth: atlassian.Auth{Email: "bot@acme.com", Token: "t"}, Timeout: 5 * time.Second})
	if _, err := c2.Invite(ctx, "acme", "bob@acme.com", "readers"); err != nil {
		t.Fatal(err)
	}
	// The fake answers as Bitbucket does: groups as objects, a 1.0 timestamp.
	got, err := c2.ListInvitations(ctx, "acme")
	if want := []bitbucket.Invitation{{Email: "bob@acme.com", Groups: []string{"readers"}, SentOn: sent}}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("fake's invitations = %+v, %v", got, err)
	}

	serve := func(body string) ([]bitbucket.Invitation, error) {
		f.InjectFault(fake.Fault{Method: "GET", PathPrefix: "/1.0/users/acme/invitations", Status: 200, Body: body, Times: 1})
		return c.ListInvitations(ctx, "acme")
	}
	got, err = serve(`[
		{"email": "a@acme.com", "groups": ["developers", "readers"], "invited_by": {"display_name": "Admin"}, "utc_sent_on": "2012-09-23T03:00:05Z"},
		{"email": "b@acme.com", "groups": [{"slug": "developers", "name": "Developers"}, {"name": "Readers"}], "utc_sent_on": "2012-09-23 03:00:05+00:00"},
		{"email": "c@acme.com", "group": {"slug": "readers", "name": "Readers"}, "utc_sent_on": "2012-09-23 05:00:05.123+02:00"},
		{"email": "d@acme.com", "groups": [{"slug": "readers"}], "group": {"slug": "readers"}, "utc_sent_on": ""},
		{"email": "e@acme.com", "groups": []}
	]`)
	at := time.Date(2012, 9, 23, 3, 0, 5, 0, time.UTC)
	want := []bitbucket.Invitation{
		{Email: "a@acme.com", Groups: []string{"developers", "readers"}, SentOn: at},
		{Email: "b@acme.com", Groups: []string{"developers", "Readers"}, SentOn: at},
		{Email: "c@acme.com", Groups: []string{"readers"}, SentOn: at.Add(123 * time.Millisecond)},
		{Email: "d@acme.com", Groups: []string{"readers"}},
		{Email: "e@acme.com"},
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("invitations:\n got  %+v, %v\n want %+v", got, err, want)
	}

	for body, msg := range map[string]string{
		`[{"email": "x@acme.com", "groups": ["readers"], "utc_sent_on": "23/09/2012 03:00"}]`:    `utc_sent_on "23/09/2012 03:00" is neither`,
		`[{"email": "x@acme.com", "groups": ["readers"], "utc_sent_on": "2012-09-23 03:00:05"}]`: `utc_sent_on "2012-09-23 03:00:05" is neither`,
		`[{"email": "x@acme.com", "groups": [42]}]`:                                              "group 42 is neither a string nor an object",
		`{"values": []}`: "decode",
	} {
		if got, err := serve(body); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: %+v, %v; want an error with %q", body, got, err, msg)
		}
	}
}

// A 401 keeps the credential hint and, when Bitbucket names them, the scopes
// the endpoint accepts.
func TestUnauthorizedNamesAcceptedScopes(t *testing.T) {
	f, c, _ := setup(t)
	f.InjectFault(fake.Fault{Method: "GET", PathPrefix: "/2.0/user", Status: 401, Body: "Unauthorized", Times: 1,
		Header: map[string]string{"X-Accepted-OAuth-Scopes": "account"}})
	_, err := c.CurrentUser(ctx)
	if atlassian.StatusOf(err) != 401 || atlassian.IsTemporary(err) || !strings.Contains(err.Error(), "check the credentials") ||
		!strings.Contains(err.Error(), "accepts these OAuth scopes (X-Accepted-OAuth-Scopes): account") {
		t.Fatalf("401 with scopes: %v", err)
	}
	f.InjectFault(fake.Fault{Method: "GET", PathPrefix: "/1.0/groups/acme", Status: 401, Body: "Unauthorized", Times: 1})
	_, err = c.ListGroups(ctx, "acme")
	if atlassian.StatusOf(err) != 401 || !strings.Contains(err.Error(), "check the credentials") || strings.Contains(err.Error(), "X-Accepted-OAuth-Scopes") {
		t.Fatalf("401 without scopes: %v", err)
	}
}

func TestCurrentUserAndListGroups(t *testing.T) {
	f, c, _ := setup(t)
	if who, err := c.CurrentUser(ctx); err != nil || who != "bot@acme.com" {
		t.Fatalf("CurrentUser = %q, %v", who, err)
	}
	groups, err := c.ListGroups(ctx, "acme")
	if want := []bitbucket.Group{{Name: "developers", Slug: "developers"}, {Name: "readers", Slug: "readers"}}; err != nil || !reflect.DeepEqual(groups, want) {
		t.Fatalf("ListGroups = %+v, %v", groups, err)
	}
	f.AdministerInAtlassian("acme", http.StatusGone) // its GETs keep working
	if groups, err := c.ListGroups(ctx, "acme"); err != nil || len(groups) != 2 {
		t.Fatalf("ListGroups when administered in Atlassian = %+v, %v", groups, err)
	}
	if _, err := c.ListGroups(ctx, "ghost"); !errors.Is(err, bitbucket.ErrWorkspaceNotFound) {
		t.Fatalf("ListGroups(ghost) = %v", err)
	}
	if _, err := c.ListGroups(ctx, "../acme"); !errors.Is(err, bitbucket.ErrInvalidInput) {
		t.Fatalf("ListGroups(../acme) = %v", err)
	}
}

// The member listing reads 100 members a page (the contract's maximum) and
// follows Bitbucket's next link against the configured base URL.
func TestListMembersPages(t *testing.T) {
	f, c, _ := setup(t)
	f.AddWorkspace("big")
	for i := 0; i < 250; i++ {
		f.AddMember("big", fmt.Sprintf("557058:m%03d", i))
	}
	var got []string
	next, pages := "", 0
	for {
		p, err := c.ListMembersPage(context.Background(), "big", next)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if p.Size != 250 {
			t.Fatalf("size = %d", p.Size)
		}
		got = append(got, p.AccountIDs...)
		if next = p.Next; next == "" {
			break
		}
		if strings.HasPrefix(next, "http") {
			t.Fatalf("next %q kept the host", next)
		}
	}
	if pages != 3 || len(got) != 250 || got[249] != "557058:m249" {
		t.Fatalf("%d pages, %d members (last %q)", pages, len(got), got[len(got)-1])
	}
	if calls := f.CallsTo("GET", "/2.0/workspaces/big/members"); len(calls) != 3 || !strings.Contains(calls[0].Query, "pagelen=100") {
		t.Fatalf("calls = %+v", calls)
	}
	if v := f.Violations(); len(v) > 0 {
		t.Fatalf("contract violations: %v", v)
	}
	if _, err := c.ListMembersPage(context.Background(), "nope", ""); !errors.Is(err, bitbucket.ErrWorkspaceNotFound) {
		t.Fatalf("missing workspace: %v", err)
	}
}
