package organization_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/integrations/atlassian"
	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/integrations/fake/contract"
	"github.com/autoinvite/autoinvite/integrations/fake/faketest"
	"github.com/autoinvite/autoinvite/integrations/organization"
)

const (
	orgID  = "4b2c8e1a-7d3f-4c55-9e0a-1f2b3c4d5e6f"
	dirID  = "d1r-0000-1111"
	apiKey = "org-api-key"
	keyEnv = "AUTOINVITE_ORG_KEY"
)

var ctx = context.Background()

// start serves a contract-checked fake with one organization and a client on it.
func start(t *testing.T) (*faketest.Server, *organization.Client) {
	t.Helper()
	s := faketest.Start(t)
	s.AddOrganization(orgID, dirID, "Acme directory")
	s.SetOrgAPIKey(apiKey)
	return s, client(s.URL, orgID, apiKey)
}

func client(url, org, key string) *organization.Client {
	return organization.New(atlassian.Options{BaseURL: url, Auth: atlassian.Auth{Bearer: key}, Timeout: 5 * time.Second}, org, keyEnv)
}

func path(suffix string) string { return "/admin/v2/orgs/" + orgID + suffix }

// bodyOf decodes a recorded request body.
func bodyOf(t *testing.T, c fake.Call) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(c.Body), &m); err != nil {
		t.Fatalf("body of %s: %v: %q", c, err, c.Body)
	}
	return m
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestDirectories(t *testing.T) {
	s, c := start(t)
	dirs, err := c.Directories(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []organization.Directory{{ID: dirID, Name: "Acme directory"}}; !slices.Equal(dirs, want) {
		t.Fatalf("Directories = %+v, want %+v", dirs, want)
	}
	if n := len(s.CallsTo("GET", path("/directories"))); n != 1 || c.OrgID() != orgID {
		t.Fatalf("%d calls, org %q", n, c.OrgID())
	}
}

// Names match exactly but case-insensitively; the flag of IdP-synced groups comes through.
func TestFindGroups(t *testing.T) {
	s, c := start(t)
	devID := s.AddOrgGroup("developers", false)
	readersID := s.AddOrgGroup("Readers", true)
	s.AddOrgGroup("developers-old", false)

	got, err := c.FindGroups(ctx, []string{"Developers", "readers", "missing"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]organization.Group{
		"developers": {ID: devID, Name: "developers", DirectoryID: dirID},
		"readers":    {ID: readersID, Name: "Readers", DirectoryID: dirID, ExternalSynced: true},
	}
	if len(got) != len(want) || got["developers"] != want["developers"] || got["readers"] != want["readers"] {
		t.Fatalf("FindGroups = %+v, want %+v", got, want)
	}
	calls := s.CallsTo("POST", path("/directories/-/groups/search"))
	if len(calls) != 1 || !slices.Equal(strs(bodyOf(t, calls[0])["groupNames"]), []string{"Developers", "readers", "missing"}) {
		t.Fatalf("calls %v", calls)
	}
}

// More groups than a page (20) are gathered through the cursor in links.next.
func TestFindGroupsPages(t *testing.T) {
	s, c := start(t)
	var names []string
	ids := map[string]string{}
	for i := range 25 {
		n := fmt.Sprintf("team-%02d", i)
		names = append(names, n)
		ids[n] = s.AddOrgGroup(n, false)
	}
	got, err := c.FindGroups(ctx, names)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 25 || got["team-24"].ID != ids["team-24"] || got["team-00"].ID != ids["team-00"] {
		t.Fatalf("FindGroups found %d: %+v", len(got), got)
	}
	calls := s.CallsTo("POST", path("/directories/-/groups/search"))
	if len(calls) != 2 || bodyOf(t, calls[0])["cursor"] != nil || bodyOf(t, calls[1])["cursor"] == nil {
		t.Fatalf("calls %+v", calls)
	}
}

func TestFindWorkspacePagesUntilItFindsIt(t *testing.T) {
	s, c := start(t)
	for i := range 45 {
		s.AddOrgWorkspace(fmt.Sprintf("ws%02d", i), fmt.Sprintf("ari:cloud:bitbucket::workspace/%02d", i))
	}
	s.AddOrgWorkspace("Acme", "ari:cloud:bitbucket::workspace/acme")

	ws, err := c.FindWorkspace(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	want := organization.Workspace{ID: "ari:cloud:bitbucket::workspace/acme", Name: "Acme", TypeKey: "bitbucket", HostURL: "https://bitbucket.org/Acme"}
	if ws != want {
		t.Fatalf("FindWorkspace = %+v, want %+v", ws, want)
	}
	// 46 workspaces, 20 a page: the first call sends {}, the others only the cursor.
	calls := s.CallsTo("POST", path("/workspaces"))
	if len(calls) != 3 || len(bodyOf(t, calls[0])) != 0 {
		t.Fatalf("calls %+v", calls)
	}
	for _, call := range calls[1:] {
		if b := bodyOf(t, call); len(b) != 1 || b["cursor"] == "" || strings.Contains(b["cursor"].(string), "?") {
			t.Fatalf("follow-up body %v: want only the cursor taken out of the next URL", b)
		}
	}
}

func TestFindWorkspaceNotFoundListsWhatItSaw(t *testing.T) {
	s, c := start(t)
	for i := range 12 {
		s.AddOrgWorkspace(fmt.Sprintf("ws%02d", i), fmt.Sprintf("res-%02d", i))
	}
	_, err := c.FindWorkspace(ctx, "acme")
	if !errors.Is(err, organization.ErrWorkspaceNotFound) {
		t.Fatalf("err = %v, want ErrWorkspaceNotFound", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, `"acme"`) || !strings.Contains(msg, "ws00, ws01") || !strings.Contains(msg, "ws09") || strings.Contains(msg, "ws10") {
		t.Fatalf("message %q: want the slug and the first 10 names seen", msg)
	}
}

func TestFindWorkspaceAmbiguous(t *testing.T) {
	s, c := start(t)
	s.AddOrgWorkspace("acme", "res-1")
	s.AddOrgWorkspace("ACME", "res-2")
	_, err := c.FindWorkspace(ctx, "acme")
	if err == nil || errors.Is(err, organization.ErrWorkspaceNotFound) || !strings.Contains(err.Error(), "res-1") || !strings.Contains(err.Error(), "res-2") {
		t.Fatalf("err = %v, want an ambiguity naming both", err)
	}
}

// The host URL's last segment matches too, and a Bitbucket workspace wins
// over another product's of the same name. (A stand-in server: the fake's
// workspaces are all Bitbucket, named as their URL.)
func TestFindWorkspaceByHostURLPrefersBitbucket(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"data":[
			{"id":"jira-1","type":"workspaces","attributes":{"name":"acme","typeKey":"jira-software","hostUrl":"https://acme.atlassian.net"}},
			{"id":"bb-1","type":"workspaces","attributes":{"name":"Acme Corp","typeKey":"bitbucket","hostUrl":"https://bitbucket.org/acme/"}},
			{"id":"bb-2","type":"workspaces","attributes":{"name":"other","typeKey":"bitbucket","hostUrl":null}}],"links":{}}`)
	}))
	defer srv.Close()
	ws, err := client(srv.URL, orgID, apiKey).FindWorkspace(ctx, "ACME")
	if err != nil || ws.ID != "bb-1" || ws.HostURL != "https://bitbucket.org/acme/" {
		t.Fatalf("FindWorkspace = %+v, %v; want bb-1", ws, err)
	}
}

// 150 ids go out as 100 + 50, each answered in one page; unknown ids are absent.
func TestFindUsersChunksOf100(t *testing.T) {
	s, c := start(t)
	var ids []string
	for i := range 148 {
		id := fmt.Sprintf("557058:user-%03d", i)
		s.AddOrgUser(id, fmt.Sprintf("u%03d@acme.com", i))
		ids = append(ids, id)
	}
	s.AddOrgUser("557058:not-asked", "other@acme.com")
	ids = append(ids, "557058:unknown-1", "557058:unknown-2")

	got, err := c.FindUsers(ctx, dirID, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 148 {
		t.Fatalf("found %d, want 148", len(got))
	}
	if u := got["557058:user-147"]; u != (organization.User{AccountID: "557058:user-147", Email: "u147@acme.com", AccountStatus: "active", MembershipStatus: "active"}) {
		t.Fatalf("user = %+v", u)
	}
	calls := s.CallsTo("POST", path("/directories/"+dirID+"/users/search"))
	if len(calls) != 2 {
		t.Fatalf("%d calls, want 2", len(calls))
	}
	first, second := strs(bodyOf(t, calls[0])["accountIds"]), strs(bodyOf(t, calls[1])["accountIds"])
	if !slices.Equal(first, ids[:100]) || !slices.Equal(second, ids[100:]) {
		t.Fatalf("sent %d then %d ids", len(first), len(second))
	}
}

// The product-access search asks for exact ids (no searchTerm, no emails),
// 100 per call with expand productAccess, and reads each user's last
// activity per product; a user who never used a product has none.
func TestFindUserActivity(t *testing.T) {
	s, c := start(t)
	at := time.Date(2026, 11, 20, 8, 30, 0, 0, time.UTC)
	var ids []string
	for i := range 130 {
		id := fmt.Sprintf("557058:user-%03d", i)
		s.AddOrgUser(id, fmt.Sprintf("u%03d@acme.com", i))
		ids = append(ids, id)
	}
	s.SetOrgUserActivity("557058:user-007", "bitbucket", "ari:cloud:bitbucket::workspace/w1", at)
	s.SetOrgUserActivity("557058:user-007", "jira", "site-1", at.Add(-time.Hour))
	s.SetOrgUserActivity("557058:user-120", "bitbucket", "ari:cloud:bitbucket::workspace/w1", at)

	got, err := c.FindUserActivity(ctx, "-", append(ids, "557058:unknown"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 130 {
		t.Fatalf("found %d, want 130", len(got))
	}
	want := []organization.ProductAccess{{Key: "bitbucket", ID: "ari:cloud:bitbucket::workspace/w1", LastActive: at}, {Key: "jira", ID: "site-1", LastActive: at.Add(-time.Hour)}}
	if u := got["557058:user-007"]; u.Email != "u007@acme.com" || !slices.EqualFunc(u.Products, want, func(a, b organization.ProductAccess) bool {
		return a.Key == b.Key && a.ID == b.ID && a.LastActive.Equal(b.LastActive)
	}) {
		t.Fatalf("user-007 = %+v", u)
	}
	if u := got["557058:user-001"]; len(u.Products) != 0 || u.AccountStatus != "active" {
		t.Fatalf("user-001 = %+v, want no product access", u)
	}
	calls := s.CallsTo("POST", path("/directories/-/users/search"))
	if len(calls) != 2 {
		t.Fatalf("%d calls, want 2 (100 + 31 ids)", len(calls))
	}
	for i, call := range calls {
		b := bodyOf(t, call)
		if n := len(strs(b["accountIds"])); n != []int{100, 31}[i] || b["limit"] != float64(n) || !slices.Equal(strs(b["expand"]), []string{"productAccess"}) || b["searchTerm"] != nil || b["emails"] != nil {
			t.Fatalf("call %d body = %s", i, call.Body)
		}
	}
	if v := s.Violations(); len(v) != 0 {
		t.Fatalf("contract violations: %q", v)
	}
}

func TestAddToGroup(t *testing.T) {
	s, c := start(t)
	dev := s.AddOrgGroup("developers", false)
	synced := s.AddOrgGroup("okta-engineers", true)
	s.AddOrgUser("557058:ann", "ann@acme.com")
	members := path("/directories/" + dirID + "/groups/" + dev + "/memberships")

	already, err := c.AddToGroup(ctx, dirID, dev, "557058:ann")
	if err != nil || already {
		t.Fatalf("first add = %v, %v; want added", already, err)
	}
	if got := s.OrgGroupMembers("developers"); !slices.Equal(got, []string{"557058:ann"}) {
		t.Fatalf("members %v", got)
	}
	if calls := s.CallsTo("POST", members); len(calls) != 1 || bodyOf(t, calls[0])["accountId"] != "557058:ann" {
		t.Fatalf("calls %+v", calls)
	}

	already, err = c.AddToGroup(ctx, dirID, dev, "557058:ann")
	if err != nil || !already {
		t.Fatalf("second add = %v, %v; want already a member (409 ADMIN-UAM-409-2)", already, err)
	}

	s.InjectFault(fake.Fault{PathPrefix: members, Status: 409, Times: 1,
		Body: `{"errors":[{"id":"x","status":"409","code":"ADMIN-UAM-409-3","title":"Product License Limit Exceeded"}]}`})
	s.AddOrgUser("557058:bob", "bob@acme.com")
	already, err = c.AddToGroup(ctx, dirID, dev, "557058:bob")
	if !errors.Is(err, organization.ErrLicenceLimit) || already || atlassian.IsTemporary(err) || atlassian.StatusOf(err) != 409 {
		t.Fatalf("licence limit = %v, %v; want ErrLicenceLimit, permanent", already, err)
	}

	_, err = c.AddToGroup(ctx, dirID, synced, "557058:bob")
	if !errors.Is(err, organization.ErrExternalSynced) || !strings.Contains(err.Error(), "is managed by your identity provider") || atlassian.StatusOf(err) != 403 {
		t.Fatalf("synced group: %v", err)
	}

	_, err = c.AddToGroup(ctx, dirID, dev, "557058:stranger")
	if !errors.Is(err, organization.ErrUserNotInDirectory) || !strings.Contains(err.Error(), "557058:stranger") {
		t.Fatalf("unknown user: %v", err)
	}

	_, err = c.AddToGroup(ctx, dirID, "no-such-group", "557058:bob")
	if !errors.Is(err, organization.ErrGroupNotFound) || !strings.Contains(err.Error(), "no-such-group") {
		t.Fatalf("unknown group: %v", err)
	}
	if got := s.OrgGroupMembers("developers"); !slices.Equal(got, []string{"557058:ann"}) {
		t.Fatalf("members after the failures %v", got)
	}
}

func TestRemoveFromGroup(t *testing.T) {
	s, c := start(t)
	dev := s.AddOrgGroup("developers", false)
	s.AddOrgUser("557058:ann", "ann@acme.com")
	s.AddOrgUser("557058:bob", "bob@acme.com")
	for _, id := range []string{"557058:ann", "557058:bob"} {
		if _, err := c.AddToGroup(ctx, dirID, dev, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.RemoveFromGroup(ctx, dirID, dev, "557058:ann"); err != nil {
		t.Fatal(err)
	}
	if got := s.OrgGroupMembers("developers"); !slices.Equal(got, []string{"557058:bob"}) {
		t.Fatalf("members %v", got)
	}
	if err := c.RemoveFromGroup(ctx, dirID, dev, "557058:ann"); err != nil {
		t.Fatalf("not a member any more: %v", err)
	}
	if err := c.RemoveFromGroup(ctx, dirID, dev, "557058:gone"); err != nil {
		t.Fatalf("user unknown to the directory (404 ADMIN-404-8): %v", err)
	}
	err := c.RemoveFromGroup(ctx, dirID, "no-such-group", "557058:bob")
	if !errors.Is(err, organization.ErrGroupNotFound) || !strings.Contains(err.Error(), "no-such-group") {
		t.Fatalf("unknown group: %v", err)
	}
	if n := len(s.CallsTo("DELETE", "")); n != 4 {
		t.Fatalf("%d DELETE calls, want 4", n)
	}
}

func emails(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("p%02d@acme.com", i))
	}
	return out
}

// Sixty people go out as 25 + 25 + 10, each call with the same rule, groups
// and text; the one the API refuses is the only failed result.
func TestInvite(t *testing.T) {
	s, c := start(t)
	s.AddOrgWorkspace("acme", "ari:cloud:bitbucket::workspace/acme")
	dev := s.AddOrgGroup("developers", false)
	s.AddOrgUser("557058:existing", "p00@acme.com")
	s.FailOrgInvite("p31@acme.com", "User is suspended")
	all := emails(60)

	results, sent, err := c.Invite(ctx, organization.Invitation{
		Emails: all, Resource: "ari:cloud:bitbucket::workspace/acme", Role: "atlassian/user",
		GroupIDs: []string{dev}, NotificationText: "Welcome to Bitbucket", PerCall: 25,
	})
	if err != nil || sent != 60 || len(results) != 60 {
		t.Fatalf("Invite = %d results, %d sent, %v", len(results), sent, err)
	}
	var sizes []int
	var got []string
	for _, inv := range s.OrgInvites() {
		want := fake.OrgInvite{OrgID: orgID, Emails: inv.Emails,
			PermissionRules:  []fake.OrgPermissionRule{{Resource: "ari:cloud:bitbucket::workspace/acme", Role: "atlassian/user"}},
			AdditionalGroups: []string{dev}, SendNotification: true, NotificationText: "Welcome to Bitbucket", Status: 200}
		if inv.OrgID != want.OrgID || !slices.Equal(inv.PermissionRules, want.PermissionRules) || !slices.Equal(inv.AdditionalGroups, want.AdditionalGroups) ||
			inv.SendNotification != want.SendNotification || inv.NotificationText != want.NotificationText || inv.Status != 200 {
			t.Fatalf("call = %+v, want %+v", inv, want)
		}
		sizes = append(sizes, len(inv.Emails))
		got = append(got, inv.Emails...)
	}
	slices.Sort(got)
	if !slices.Equal(sizes, []int{25, 25, 10}) || !slices.Equal(got, all) {
		t.Fatalf("sizes %v, emails %v", sizes, got)
	}
	if n := len(s.CallsTo("POST", path("/users/invite"))); n != 3 {
		t.Fatalf("%d invite calls, want 3", n)
	}

	for i, r := range results {
		if r.Email != all[i] {
			t.Fatalf("result %d is %q, want %q (the order sent)", i, r.Email, all[i])
		}
		if r.Email == "p31@acme.com" {
			if !r.Failed || r.Reason != "User is suspended" || r.AccountID != "" {
				t.Fatalf("refused person: %+v", r)
			}
			continue
		}
		id, ok := s.OrgUserByEmail(r.Email)
		if r.Failed || r.Reason != "" || !ok || r.AccountID != id {
			t.Fatalf("result %+v, directory has %q", r, id)
		}
	}
	if results[0].AccountID != "557058:existing" {
		t.Fatalf("an existing account is reused: %+v", results[0])
	}
	if members := s.OrgGroupMembers("developers"); len(members) != 59 || slices.Contains(members, "") {
		t.Fatalf("%d group members, want 59", len(members))
	}
}

// Without a resource nor text the body carries neither; an unknown group
// fails each person with the group named.
func TestInviteGroupsOnly(t *testing.T) {
	s, c := start(t)
	dev := s.AddOrgGroup("developers", false)
	results, sent, err := c.Invite(ctx, organization.Invitation{Emails: []string{"a@acme.com", "A@acme.com", "b@acme.com"}, GroupIDs: []string{dev, "gone-group"}})
	if err != nil || sent != 2 || len(results) != 2 {
		t.Fatalf("Invite = %+v, %d, %v (duplicates are sent once)", results, sent, err)
	}
	for _, r := range results {
		if !r.Failed || r.Reason != "group gone-group: Group not found" {
			t.Fatalf("result %+v", r)
		}
	}
	calls := s.CallsTo("POST", path("/users/invite"))
	b := bodyOf(t, calls[0])
	if len(calls) != 1 || b["permissionRules"] != nil || b["notificationText"] != nil || b["sendNotification"] != true {
		t.Fatalf("body %v", b)
	}
}

// A failing second call stops the run: the first 25 went out and have results.
func TestInviteStopsAtTheFailingCall(t *testing.T) {
	s, c := start(t)
	s.InjectFault(fake.Fault{PathPrefix: path("/users/invite"), Status: 500, Times: 1, Rate: 0.5, Rand: sequence(0.9, 0)})
	all := emails(60)
	results, sent, err := c.Invite(ctx, organization.Invitation{Emails: all, PerCall: 25})
	if sent != 25 || atlassian.StatusOf(err) != 500 || !atlassian.IsTemporary(err) {
		t.Fatalf("Invite = %d sent, %v; want 25 sent, then a temporary 500", sent, err)
	}
	var got []string
	for _, r := range results {
		got = append(got, r.Email)
	}
	if !slices.Equal(got, all[:25]) {
		t.Fatalf("results for %v, want the first 25", got)
	}
	if n := len(s.CallsTo("POST", path("/users/invite"))); n != 2 || len(s.OrgInvites()) != 1 {
		t.Fatalf("%d calls, %d reached the fake; want 2 and 1", n, len(s.OrgInvites()))
	}
}

func TestInviteWithoutPaidSubscription(t *testing.T) {
	s, c := start(t)
	s.SetOrgPaid(false)
	results, sent, err := c.Invite(ctx, organization.Invitation{Emails: emails(3)})
	if !errors.Is(err, organization.ErrPaymentRequired) || atlassian.IsTemporary(err) || atlassian.StatusOf(err) != 402 || sent != 0 || len(results) != 0 {
		t.Fatalf("Invite = %v, %d, %v; want ErrPaymentRequired, permanent", results, sent, err)
	}
	if !strings.Contains(err.Error(), "no paid subscription") {
		t.Fatalf("message %q", err)
	}
}

func TestWrongKey(t *testing.T) {
	s, _ := start(t)
	c := client(s.URL, orgID, "some-other-key")
	_, err := c.Directories(ctx)
	if !errors.Is(err, organization.ErrUnauthorized) || atlassian.IsTemporary(err) || atlassian.StatusOf(err) != 401 {
		t.Fatalf("err = %v, want ErrUnauthorized", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "$"+keyEnv) || !strings.Contains(msg, "admin.atlassian.com → Settings → API keys") {
		t.Fatalf("message %q: want the variable and where to create a key", msg)
	}
}

func TestWrongOrganization(t *testing.T) {
	s, _ := start(t)
	c := client(s.URL, "0000-not-ours", apiKey)
	_, err := c.FindGroups(ctx, []string{"developers"})
	if !errors.Is(err, organization.ErrOrgNotFound) || !strings.Contains(err.Error(), "organization 0000-not-ours not found: check workspaces[].organization.id") {
		t.Fatalf("err = %v", err)
	}
	err = c.RemoveFromGroup(ctx, dirID, "g", "a")
	if !errors.Is(err, organization.ErrOrgNotFound) || errors.Is(err, organization.ErrGroupNotFound) {
		t.Fatalf("remove: %v", err)
	}
}

// A 429 carries the reset time, which becomes the APIError's RetryAfter.
func TestRateLimitResetBecomesRetryAfter(t *testing.T) {
	s, c := start(t)
	reset := time.Now().Add(90 * time.Second).UTC()
	s.InjectFault(fake.Fault{PathPrefix: path("/"), Status: 429, Times: 1, Body: `{"errors":[{"code":"ADMIN-429-1","title":"Rate limit exceeded"}]}`,
		Header: map[string]string{"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset.Format("2006-01-02T15:04:05.000Z")}})
	_, err := c.FindUsers(ctx, dirID, []string{"557058:ann"})
	apiErr, ok := atlassian.AsAPIError(err)
	if !ok || apiErr.Status != 429 || !atlassian.IsTemporary(err) {
		t.Fatalf("err = %v", err)
	}
	if d := apiErr.RetryAfter; d < 85*time.Second || d > 90*time.Second {
		t.Fatalf("RetryAfter = %v, want about 90s", d)
	}
}

// The client takes a 206 and a person missing from the answer in its stride;
// a bare links.next and a full URL both page. (A stand-in server: the fake
// answers 200 with everyone.)
func TestInvitePartialAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(206)
		fmt.Fprint(w, `{"data":[{"id":"acc-a","email":"A@acme.com","results":[{"roleAssignmentResult":[{"resource":"r","role":"atlassian/user","status":"ERROR","statusReason":"Seat limit"}],
			"groupAssignmentResult":[{"group":"g1","status":"ERROR","statusReason":null},{"group":"g2","status":"INVITED"}]}]}]}`)
	}))
	defer srv.Close()
	c := client(srv.URL, orgID, apiKey)
	results, sent, err := c.Invite(ctx, organization.Invitation{Emails: []string{"a@acme.com", "b@acme.com"}, Resource: "r"})
	want := []organization.InviteResult{
		{Email: "a@acme.com", AccountID: "acc-a", Failed: true, Reason: "Seat limit; group g1: ERROR without a reason"},
		{Email: "b@acme.com", Reason: "no per-person result in the answer"},
	}
	if err != nil || sent != 2 || !slices.Equal(results, want) {
		t.Fatalf("Invite = %+v, %d, %v; want %+v", results, sent, err, want)
	}
}

func TestDirectoriesFollowNextLinks(t *testing.T) {
	var cursors []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cur := r.URL.Query().Get("cursor")
		cursors = append(cursors, cur)
		w.Header().Set("Content-Type", "application/json")
		switch cur {
		case "":
			fmt.Fprint(w, `{"data":[{"directoryId":"d1","name":"one"}],"links":{"next":"c2"}}`)
		case "c2":
			fmt.Fprintf(w, `{"data":[{"directoryId":"d2","name":"two"}],"links":{"next":"https://api.atlassian.com%s?cursor=c3"}}`, r.URL.Path)
		default:
			fmt.Fprint(w, `{"data":[{"directoryId":"d3","name":"three"}],"links":{"next":null}}`)
		}
	}))
	defer srv.Close()
	dirs, err := client(srv.URL, orgID, apiKey).Directories(ctx)
	if err != nil || len(dirs) != 3 || dirs[2].ID != "d3" || !slices.Equal(cursors, []string{"", "c2", "c3"}) {
		t.Fatalf("Directories = %+v, %v; cursors %q", dirs, err, cursors)
	}
}

// The validator records a request that breaks the Admin API contract (here
// without faketest, whose cleanup would fail this test for it).
func TestContractCatchesABadAdminRequest(t *testing.T) {
	dir := contract.FindDir()
	if dir == "" {
		t.Skip("shared/contracts not found")
	}
	v, err := contract.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := fake.New(fake.WithValidator(v.Validate))
	f.AddOrganization(orgID, dirID, "Acme")
	srv := httptest.NewServer(f)
	defer srv.Close()

	send := func(auth, body string) int {
		req, _ := http.NewRequest("POST", srv.URL+path("/users/invite"), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := send("Bearer k", `{"additionalGroups":["g"]}`); st != 400 {
		t.Fatalf("invite without emails: %d", st)
	}
	if st := send("Basic dTpw", `{"emails":["a@acme.com"]}`); st != 400 {
		t.Fatalf("invite with Basic auth: %d", st)
	}
	if st := send("Bearer k", `{"emails":["a@acme.com"]}`); st != 200 {
		t.Fatalf("good invite: %d", st)
	}
	got := f.Violations()
	if len(got) != 2 || !strings.Contains(got[0], "emails") || !strings.Contains(got[1], "Bearer") {
		t.Fatalf("violations %q", got)
	}
	if n := len(f.OrgInvites()); n != 1 {
		t.Fatalf("%d invites reached the fake, want 1", n)
	}
}

// Answers are checked too: a body missing a required field is refused.
func TestContractCatchesABadAdminAnswer(t *testing.T) {
	dir := contract.FindDir()
	if dir == "" {
		t.Skip("shared/contracts not found")
	}
	v, err := contract.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", path("/directories/-/groups/search"), strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer k")
	h := http.Header{"Content-Type": {"application/json"}}
	if err := v.ValidateResponse(req, 200, h, []byte(`{"data":[],"links":{}}`)); err != nil {
		t.Fatalf("good answer: %v", err)
	}
	if err := v.ValidateResponse(req, 200, h, []byte(`{"links":{}}`)); err == nil {
		t.Fatal("an answer without data passed")
	}
	if err := v.ValidateResponse(req, 418, h, []byte(`{}`)); err == nil {
		t.Fatal("an undocumented status passed")
	}
}

// sequence returns the given values in turn: the fault skips the first call
// (0.9 >= rate) and hits the second.
func sequence(values ...float64) func() float64 {
	i := 0
	return func() float64 {
		v := values[min(i, len(values)-1)]
		i++
		return v
	}
}
