package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/internal/testenv"
	"github.com/autoinvite/autoinvite/ledger"
)

// Workspace globex is administered in Atlassian Administration: its 1.0
// writes are refused, its groups live in organization org-1.
const atlassianRules = `
worker: {batch_wait: 1s, batch_max_delay: 10s, batch_size: 40}
workspaces:
  - workspace: globex
    administration: atlassian
    organization: {id: org-1, base_url: $FAKE_URL, notification_text: "Welcome to Globex"}
    rules:
      - name: staff
        match: {email_domains: [globex.com]}
        groups: [developers, readers]
`

const globexResource = "ari:cloud:bitbucket::workspace/6a1f0c2e-globex"

type orgFixture struct {
	e         *testenv.Env
	dev, read string // organization group ids
}

// atlassianEnv starts the service with rules and an organization holding
// globex (and initech, administered in Atlassian too but configured auto).
func atlassianEnv(t *testing.T, rules string, opts ...testenv.Option) orgFixture {
	t.Helper()
	e := testenv.New(t, append(opts, testenv.WithRules(rules))...)
	f := e.Fake
	for _, ws := range []string{"globex", "initech"} {
		f.AddWorkspace(ws, "developers", "readers")
	}
	f.AddOrganization("org-1", "dir-1", "Globex")
	f.SetOrgAPIKey(testenv.OrgAPIKey)
	fx := orgFixture{e: e, dev: f.AddOrgGroup("developers", false), read: f.AddOrgGroup("readers", false)}
	f.AddOrgWorkspace("globex", globexResource)
	f.AddOrgWorkspace("initech", "ari:cloud:bitbucket::workspace/initech")
	return fx
}

func atlassianUser(id, email string) map[string]any {
	return map[string]any{"accountId": id, "emailAddress": email, "active": true, "accountType": "atlassian"}
}

// noCloudWrites fails when anything wrote through Bitbucket's 1.0 API.
func noCloudWrites(t *testing.T, f *fake.Fake) {
	t.Helper()
	for _, c := range f.Calls() {
		if strings.HasPrefix(c.Path, "/1.0/") && c.Method != http.MethodGet {
			t.Fatalf("a 1.0 write was sent to an Atlassian-administered workspace: %s %s", c.Method, c.Path)
		}
	}
}

func callBodies(f *fake.Fake, method, path string) []string {
	var out []string
	for _, c := range f.CallsTo(method, path) {
		out = append(out, c.Body)
	}
	return out
}

func callsUnder(f *fake.Fake, method, prefix string) []fake.Call {
	var out []fake.Call
	for _, c := range f.CallsTo(method, "") {
		if strings.HasPrefix(c.Path, prefix) {
			out = append(out, c)
		}
	}
	return out
}

func membershipPath(groupID string) string {
	return "/admin/v2/orgs/org-1/directories/dir-1/groups/" + groupID + "/memberships"
}

// A person already in the organization's directory is added to both groups by
// id: one user search, two membership calls, no 1.0 write and no invitation.
func TestAtlassianDirectoryMemberIsAddedToGroupsByID(t *testing.T) {
	fx := atlassianEnv(t, atlassianRules)
	e, f := fx.e, fx.e.Fake
	f.AddOrgUser("557058:ann", "ann@globex.com")
	assertAccepted(t, e.Webhook("user_created", "atl-ann", atlassianUser("557058:ann", "ann@globex.com")), "accepted")
	e.WaitIdle()

	noCloudWrites(t, f.Fake)
	if got := callBodies(f.Fake, "POST", "/admin/v2/orgs/org-1/directories/-/groups/search"); len(got) != 1 {
		t.Fatalf("group searches = %q, want 1", got)
	}
	if got := callBodies(f.Fake, "POST", "/admin/v2/orgs/org-1/directories/dir-1/users/search"); len(got) != 1 || !strings.Contains(got[0], `"557058:ann"`) {
		t.Fatalf("user searches = %q, want one naming the account", got)
	}
	for _, id := range []string{fx.dev, fx.read} {
		got := callBodies(f.Fake, "POST", membershipPath(id))
		if !slices.Equal(got, []string{`{"accountId":"557058:ann"}`}) {
			t.Fatalf("memberships of %s = %q", id, got)
		}
	}
	if len(f.OrgInvites()) != 0 {
		t.Fatalf("invitations = %+v, want none", f.OrgInvites())
	}
	if !slices.Contains(f.OrgGroupMembers("developers"), "557058:ann") || !slices.Contains(f.OrgGroupMembers("readers"), "557058:ann") {
		t.Fatal("the organization groups do not hold the person")
	}
	got := e.Entry("globex", "acct:557058:ann")
	if got.Status != ledger.StatusGranted || !slices.Equal(slices.Sorted(slices.Values(got.Granted)), []string{"developers", "readers"}) || len(got.Batched) != 0 || len(got.Invitations) != 0 {
		t.Fatalf("ledger = %+v", got)
	}
}

// Someone outside the directory gets one invitation carrying the workspace's
// resource id, the role and both group ids; once they join, the follow-up
// records the groups as granted without another call.
func TestAtlassianNewcomerIsInvitedOnceWithResourceAndGroups(t *testing.T) {
	fx := atlassianEnv(t, atlassianRules)
	e, f := fx.e, fx.e.Fake
	assertAccepted(t, e.Webhook("user_created", "atl-bob", atlassianUser("557058:bob", "bob@globex.com")), "accepted")
	e.WaitIdle()

	noCloudWrites(t, f.Fake)
	invites := f.OrgInvites()
	if len(invites) != 1 {
		t.Fatalf("invitations = %+v, want 1", invites)
	}
	inv := invites[0]
	wantGroups := slices.Sorted(slices.Values([]string{fx.dev, fx.read}))
	if inv.OrgID != "org-1" || !slices.Equal(inv.Emails, []string{"bob@globex.com"}) || !inv.SendNotification || inv.NotificationText != "Welcome to Globex" ||
		!slices.Equal(slices.Sorted(slices.Values(inv.AdditionalGroups)), wantGroups) ||
		len(inv.PermissionRules) != 1 || inv.PermissionRules[0].Resource != globexResource || inv.PermissionRules[0].Role != "atlassian/user" {
		t.Fatalf("invitation = %+v", inv)
	}
	for _, id := range []string{fx.dev, fx.read} {
		if n := len(f.CallsTo("POST", membershipPath(id))); n != 0 {
			t.Fatalf("%d membership calls for an invitee", n)
		}
	}
	got := e.Entry("globex", "acct:557058:bob")
	if got.Status != ledger.StatusInvited || got.PendingInvitation("developers") == nil || got.PendingInvitation("readers") == nil || len(got.Batched) != 0 {
		t.Fatalf("ledger = %+v", got)
	}

	// They accept: Bitbucket's 2.0 member check says so, and the invitation
	// already put them in both groups.
	account, _ := f.OrgUserByEmail("bob@globex.com")
	f.Accept("globex", "bob@globex.com", "557058:bob")
	f.ResetCalls()
	if out, err := e.App.Worker().FollowUp(context.Background(), ledger.Ref{Workspace: "globex", PersonID: "acct:557058:bob"}, false, "sweep"); err != nil || out != "accepted" {
		t.Fatalf("follow-up = %s, %v", out, err)
	}
	if calls := f.CallStrings(); !slices.Equal(calls, []string{"GET /2.0/workspaces/globex/members/557058:bob"}) {
		t.Fatalf("follow-up calls = %q, want the member check only", calls)
	}
	got = e.Entry("globex", "acct:557058:bob")
	if got.Status != ledger.StatusGranted || len(got.Granted) != 2 || got.AnyPendingInvitation() {
		t.Fatalf("after joining: ledger = %+v", got)
	}
	if !slices.Contains(f.OrgGroupMembers("developers"), account) {
		t.Fatalf("the invitation did not put %s in developers", account)
	}
}

// An expired invitation is re-sent through the Admin API: one call with every
// group again, counted as a re-send.
func TestAtlassianInvitationsAreResentBySweep(t *testing.T) {
	clock := testenv.NewClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	fx := atlassianEnv(t, atlassianRules, testenv.WithClock(clock))
	e, f := fx.e, fx.e.Fake
	assertAccepted(t, e.Webhook("user_created", "atl-rex", atlassianUser("557058:rex", "rex@globex.com")), "accepted")
	e.WaitIdle()
	clock.Advance(169 * time.Hour)
	if _, err := e.App.Worker().SweepOnce(context.Background(), "sweep"); err != nil {
		t.Fatal(err)
	}
	e.WaitIdle()
	noCloudWrites(t, f.Fake)
	invites := f.OrgInvites()
	if len(invites) != 2 || !slices.Equal(invites[1].Emails, []string{"rex@globex.com"}) || len(invites[1].AdditionalGroups) != 2 || invites[1].PermissionRules[0].Resource != globexResource {
		t.Fatalf("organization invitation calls = %+v, want the first and one re-send with both groups", invites)
	}
	got := e.Entry("globex", "acct:557058:rex")
	inv := got.PendingInvitation("developers")
	if got.Status != ledger.StatusInvited || inv == nil || inv.Resends != 1 || !inv.ExpiresAt.After(clock.Now()) {
		t.Fatalf("ledger = %+v", got)
	}
	hist := e.History("globex", "acct:557058:rex")
	if last := hist[len(hist)-1]; last.Action != ledger.ActionInvitationResent || !strings.Contains(last.Detail, "re-send 1 of 3 through Atlassian organization org-1") {
		t.Fatalf("last event = %+v", last)
	}
}

// Early checks of invitees in an Atlassian-administered workspace, through
// the queue: the sweep's one users/search (expand productAccess) answers all
// of them, and no Bitbucket member check is made. The one seen active in
// globex's Bitbucket since the invitation is accepted; the others wait for
// their next check.
func TestAtlassianEarlyChecksShareOneSearch(t *testing.T) {
	clock := testenv.NewClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	fx := atlassianEnv(t, "invitations: {early_check_interval: 6h}\n"+atlassianRules, testenv.WithClock(clock))
	e, f := fx.e, fx.e.Fake
	var accounts []string
	for _, name := range []string{"ida", "jon", "kim", "lou"} {
		email := name + "@globex.com"
		account := fake.InvitedAccountID(email) // the account the invitation gives the email
		accounts = append(accounts, account)
		assertAccepted(t, e.Webhook("user_created", "atl-"+name, atlassianUser(account, email)), "accepted")
	}
	e.WaitIdle()
	clock.Advance(6*time.Hour + time.Minute)
	f.SetOrgUserActivity(accounts[0], "bitbucket", globexResource, clock.Now())
	f.ResetCalls()

	due, checks, err := e.App.Worker().QueueFollowUps(context.Background(), clock.Now())
	if err != nil || due != 0 || checks != 4 {
		t.Fatalf("sweep queued %d due, %d checks, %v; want 4 checks", due, checks, err)
	}
	e.WaitIdle()
	searches := f.CallsTo("POST", "/admin/v2/orgs/org-1/directories/-/users/search")
	if len(searches) != 1 || !strings.Contains(searches[0].Body, `"productAccess"`) {
		t.Fatalf("user searches = %+v, want one with expand productAccess", searches)
	}
	for _, c := range f.Calls() {
		if strings.HasPrefix(c.Path, "/2.0/workspaces/globex/members") {
			t.Fatalf("a Bitbucket member call: %s", c)
		}
	}
	for i, account := range accounts {
		want := ledger.StatusInvited
		if i == 0 {
			want = ledger.StatusGranted
		}
		if got := e.Entry("globex", "acct:"+account); got.Status != want {
			t.Fatalf("%s: ledger = %+v, want %s", account, got, want)
		}
	}
}

// Thirty invitees: calls of at most 25 emails, every email exactly once.
func TestAtlassianInvitationsAreBatchedAtMost25PerCall(t *testing.T) {
	fx := atlassianEnv(t, strings.Replace(atlassianRules, "batch_wait: 1s", "batch_wait: 3s", 1))
	e, f := fx.e, fx.e.Fake
	var emails []string
	for i := range 30 {
		email := fmt.Sprintf("new%02d@globex.com", i)
		emails = append(emails, email)
		assertAccepted(t, e.Webhook("user_created", fmt.Sprintf("atl-%02d", i), atlassianUser(fmt.Sprintf("557058:new-%02d", i), email)), "accepted")
	}
	e.WaitIdle()
	var all []string
	for _, inv := range f.OrgInvites() {
		if len(inv.Emails) > 25 {
			t.Fatalf("an invitation call carried %d emails", len(inv.Emails))
		}
		all = append(all, inv.Emails...)
	}
	slices.Sort(all)
	if !slices.Equal(all, emails) {
		t.Fatalf("invited %q, want each of the 30 exactly once", all)
	}
	if n := len(f.OrgInvites()); n < 2 || n > 4 {
		t.Fatalf("%d invitation calls, want 2 (25 + 5) or a few more if the batch split", n)
	}
	for i := range 30 {
		if got := e.Entry("globex", fmt.Sprintf("acct:557058:new-%02d", i)); got.Status != ledger.StatusInvited {
			t.Fatalf("person %d: ledger = %+v", i, got)
		}
	}
}

// The answer is read per person: an ERROR fails that person only, with the
// reason in the ledger and the audit trail.
func TestAtlassianPerPersonInviteErrorIsRecordedForThatPersonOnly(t *testing.T) {
	fx := atlassianEnv(t, strings.Replace(atlassianRules, "batch_wait: 1s", "batch_wait: 2s", 1))
	e, f := fx.e, fx.e.Fake
	f.FailOrgInvite("eve@globex.com", "Product license limit reached")
	for _, name := range []string{"cat", "eve", "fay"} {
		assertAccepted(t, e.Webhook("user_created", "atl-"+name, atlassianUser("557058:"+name, name+"@globex.com")), "accepted")
	}
	e.WaitIdle()
	for _, name := range []string{"cat", "fay"} {
		if got := e.Entry("globex", "acct:557058:"+name); got.Status != ledger.StatusInvited || got.LastError != "" {
			t.Fatalf("%s: ledger = %+v", name, got)
		}
	}
	eve := e.Entry("globex", "acct:557058:eve")
	if eve.Status != ledger.StatusFailed || !strings.Contains(eve.LastError, "Product license limit reached") || len(eve.Invitations) != 0 {
		t.Fatalf("eve: ledger = %+v", eve)
	}
	assertAudited(t, e, "acct:557058:eve", ledger.ActionError, "Product license limit reached")
}

// A group synced from an identity provider and a group name the organization
// does not have: each is explained, costs no write, and the good group is granted.
func TestAtlassianSyncedAndUnknownGroupsAreExplained(t *testing.T) {
	rules := strings.Replace(atlassianRules, "groups: [developers, readers]", "groups: [developers, hr-synced, ghosts]", 1)
	fx := atlassianEnv(t, rules)
	e, f := fx.e, fx.e.Fake
	synced := f.AddOrgGroup("hr-synced", true)
	f.AddOrgUser("557058:gil", "gil@globex.com")
	assertAccepted(t, e.Webhook("user_created", "atl-gil", atlassianUser("557058:gil", "gil@globex.com")), "accepted")
	e.WaitIdle()

	if n := len(f.CallsTo("POST", membershipPath(synced))); n != 0 {
		t.Fatalf("%d membership calls to the synced group", n)
	}
	var writes []string
	for _, c := range f.Calls() {
		if c.Method != http.MethodGet && !strings.HasSuffix(c.Path, "/search") {
			writes = append(writes, c.String())
		}
	}
	if !slices.Equal(writes, []string{"POST " + membershipPath(fx.dev)}) {
		t.Fatalf("writes = %q, want the developers membership only", writes)
	}
	got := e.Entry("globex", "acct:557058:gil")
	if got.Status != ledger.StatusFailed || !slices.Equal(got.Granted, []string{"developers"}) {
		t.Fatalf("ledger = %+v", got)
	}
	for _, want := range []string{`group "hr-synced" is managed by your identity provider`, `group "ghosts" not found in Atlassian organization org-1`} {
		if !strings.Contains(got.LastError, want) {
			t.Fatalf("last error %q lacks %q", got.LastError, want)
		}
		assertAudited(t, e, "acct:557058:gil", ledger.ActionError, want)
	}
}

// A 429 with X-RateLimit-Reset is waited out: the next call goes after the reset.
func TestAtlassianRateLimitResetIsWaitedOut(t *testing.T) {
	fx := atlassianEnv(t, atlassianRules)
	e, f := fx.e, fx.e.Fake
	reset := time.Now().Add(3 * time.Second).UTC().Truncate(time.Second) // the header has whole seconds
	f.InjectFault(fake.Fault{Method: "POST", PathPrefix: "/admin/v2/orgs/org-1/users/invite", Status: http.StatusTooManyRequests, Times: 1,
		Body:   `{"code":429,"message":"Too Many Requests"}`,
		Header: map[string]string{"X-RateLimit-Reset": reset.Format(time.RFC3339), "X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0"}})
	assertAccepted(t, e.Webhook("user_created", "atl-hal", atlassianUser("557058:hal", "hal@globex.com")), "accepted")
	e.WaitIdle()
	calls := f.CallsTo("POST", "/admin/v2/orgs/org-1/users/invite")
	if len(calls) != 2 || calls[0].Status != http.StatusTooManyRequests || calls[1].Status != http.StatusOK {
		t.Fatalf("invite calls = %+v, want a 429 then one success", calls)
	}
	if calls[1].At.Before(reset) {
		t.Fatalf("retried at %s, before the reset %s", calls[1].At, reset)
	}
	if got := e.Entry("globex", "acct:557058:hal"); got.Status != ledger.StatusInvited {
		t.Fatalf("ledger = %+v", got)
	}
}

// Deactivation removes only what autoinvite granted: a group the person was
// already in (given by hand) stays.
func TestAtlassianDeactivationRemovesOnlyGrantedGroups(t *testing.T) {
	fx := atlassianEnv(t, atlassianRules)
	e, f := fx.e, fx.e.Fake
	f.AddOrgUser("557058:ivy", "ivy@globex.com")
	f.AddOrgGroupMember("readers", "557058:ivy") // an admin gave it
	assertAccepted(t, e.Webhook("user_created", "atl-ivy", atlassianUser("557058:ivy", "ivy@globex.com")), "accepted")
	e.WaitIdle()
	got := e.Entry("globex", "acct:557058:ivy")
	if !slices.Equal(got.Granted, []string{"developers"}) || !slices.Equal(got.HandGiven, []string{"readers"}) {
		t.Fatalf("after signup: ledger = %+v", got)
	}

	f.ResetCalls()
	assertAccepted(t, e.Webhook("user_deleted", "atl-ivy-del", map[string]any{"accountId": "557058:ivy", "active": false}), "accepted")
	e.WaitIdle()
	noCloudWrites(t, f.Fake)
	var deletes []string
	for _, c := range f.Calls() {
		if c.Method == http.MethodDelete {
			deletes = append(deletes, c.Path)
		}
	}
	if !slices.Equal(deletes, []string{membershipPath(fx.dev) + "/557058:ivy"}) {
		t.Fatalf("deletes = %q, want developers only", deletes)
	}
	if slices.Contains(f.OrgGroupMembers("developers"), "557058:ivy") || !slices.Contains(f.OrgGroupMembers("readers"), "557058:ivy") {
		t.Fatalf("developers %v, readers %v", f.OrgGroupMembers("developers"), f.OrgGroupMembers("readers"))
	}
	if got := e.Entry("globex", "acct:557058:ivy"); got.Status != ledger.StatusRevoked || len(got.Granted) != 0 {
		t.Fatalf("after deactivation: ledger = %+v", got)
	}
}

const autoRules = `
worker: {batch_wait: 1s, batch_max_delay: 10s, batch_size: 40}
workspaces:
  - workspace: initech
    organization: {id: org-1, base_url: $FAKE_URL}
    rules:
      - name: staff
        match: {email_domains: [initech.com]}
        groups: [developers, readers]
`

// administration: auto. A member's 1.0 group write is refused (405): the
// workspace is remembered as Atlassian-administered in Redis and the same
// task carries on through the Admin API; the next person never tries 1.0.
func TestAutoSwitchesToAdminAPIAfterRefusedWrite(t *testing.T) {
	fx := atlassianEnv(t, autoRules)
	e, f := fx.e, fx.e.Fake
	f.AdministerInAtlassian("initech", http.StatusMethodNotAllowed)
	for _, name := range []string{"jon", "kim"} {
		f.AddMember("initech", "557058:"+name)
		f.AddOrgUser("557058:"+name, name+"@initech.com")
	}
	assertAccepted(t, e.Webhook("user_created", "auto-jon", atlassianUser("557058:jon", "jon@initech.com")), "accepted")
	e.WaitIdle()
	puts := callsUnder(f.Fake, "PUT", "/1.0/groups/initech/")
	if len(puts) != 1 || puts[0].Status != http.StatusMethodNotAllowed {
		t.Fatalf("1.0 group writes = %+v, want the one refused", puts)
	}
	if got := e.Entry("globex", "acct:557058:jon"); got != nil {
		t.Fatalf("unexpected globex entry %+v", got)
	}
	jon := e.Entry("initech", "acct:557058:jon")
	if jon.Status != ledger.StatusGranted || len(jon.Granted) != 2 {
		t.Fatalf("jon: ledger = %+v", jon)
	}
	adm, err := e.App.Ledger().GetAdministration(context.Background(), "initech")
	if err != nil || adm == nil || adm.Kind != "atlassian" || !strings.Contains(adm.Reason, "405") {
		t.Fatalf("remembered administration = %+v, %v", adm, err)
	}

	assertAccepted(t, e.Webhook("user_created", "auto-kim", atlassianUser("557058:kim", "kim@initech.com")), "accepted")
	e.WaitIdle()
	if n := len(callsUnder(f.Fake, "PUT", "/1.0/groups/initech/")); n != 1 {
		t.Fatalf("%d 1.0 group writes after the switch, want still 1", n)
	}
	if kim := e.Entry("initech", "acct:557058:kim"); kim.Status != ledger.StatusGranted || len(kim.Granted) != 2 {
		t.Fatalf("kim: ledger = %+v", kim)
	}
}

// administration: auto, an invitation answered 404 while the group exists:
// that too means Atlassian Administration (the newcomer is invited there).
func TestAutoReads404WithExistingGroupAsAtlassianAdministration(t *testing.T) {
	fx := atlassianEnv(t, autoRules)
	e, f := fx.e, fx.e.Fake
	f.AdministerInAtlassian("initech", http.StatusNotFound)
	assertAccepted(t, e.Webhook("user_created", "auto-lou", atlassianUser("557058:lou", "lou@initech.com")), "accepted")
	e.WaitIdle()
	if n := len(f.CallsTo("PUT", "/1.0/users/initech/invitations")); n != 1 {
		t.Fatalf("%d 1.0 invitation calls, want 1", n)
	}
	if n := len(f.CallsTo("GET", "/1.0/groups/initech")); n != 1 {
		t.Fatalf("%d confirming group reads, want 1", n)
	}
	invites := f.OrgInvites()
	if len(invites) != 1 || !slices.Equal(invites[0].Emails, []string{"lou@initech.com"}) || len(invites[0].AdditionalGroups) != 2 {
		t.Fatalf("organization invitations = %+v", invites)
	}
	if got := e.Entry("initech", "acct:557058:lou"); got.Status != ledger.StatusInvited {
		t.Fatalf("ledger = %+v", got)
	}
}

// administration: auto without an organization block: a refused write fails
// the person for good, with what to configure; the next person costs no write.
func TestAutoWithoutOrganizationSaysWhatToAdd(t *testing.T) {
	fx := atlassianEnv(t, strings.Replace(autoRules, "    organization: {id: org-1, base_url: $FAKE_URL}\n", "", 1))
	e, f := fx.e, fx.e.Fake
	f.AdministerInAtlassian("initech", http.StatusForbidden)
	for _, name := range []string{"max", "ned"} {
		f.AddMember("initech", "557058:"+name)
		assertAccepted(t, e.Webhook("user_created", "auto-"+name, atlassianUser("557058:"+name, name+"@initech.com")), "accepted")
		e.WaitIdle()
	}
	if n := len(callsUnder(f.Fake, "PUT", "/1.0/groups/initech/")); n != 1 {
		t.Fatalf("%d 1.0 group writes, want 1 (the second person is not tried)", n)
	}
	if len(f.OrgInvites()) != 0 {
		t.Fatal("an organization call without an organization block")
	}
	for _, name := range []string{"max", "ned"} {
		got := e.Entry("initech", "acct:557058:"+name)
		for _, want := range []string{"administered in Atlassian Administration", "add to workspaces[0] `organization: {id:", "AUTOINVITE_ORG_API_KEY"} {
			if got.Status != ledger.StatusFailed || !strings.Contains(got.LastError, want) {
				t.Fatalf("%s: status %s, last error %q; want failed with %q", name, got.Status, got.LastError, want)
			}
		}
		assertAudited(t, e, "acct:557058:"+name, ledger.ActionError, "administered in Atlassian Administration")
	}
	if info := e.QueueInfo(); info.Archived != 2 {
		t.Fatalf("archived %d tasks, want 2 (permanent)", info.Archived)
	}
}

// A misspelled workspace slug: the member check's 404 is confirmed against
// the workspace itself, nothing is sent, and the reason is recorded.
func TestMisspelledWorkspaceSendsNothing(t *testing.T) {
	e := testenv.New(t, testenv.WithRules(`
workspaces:
  - workspace: acmee
    rules:
      - name: staff
        match: {email_domains: [acme.com]}
        groups: [developers]
`))
	assertAccepted(t, e.Webhook("user_created", "typo-noah", cloudUser(noah, "noah@acme.com")), "accepted")
	e.WaitIdle()
	if calls := e.Fake.CallStrings(); !slices.Equal(calls, []string{"GET /2.0/workspaces/acmee/members/" + noah, "GET /2.0/workspaces/acmee"}) {
		t.Fatalf("calls = %q, want the member check and the workspace check only", calls)
	}
	got := e.Entry("acmee", "acct:"+noah)
	if got.Status != ledger.StatusFailed || !strings.Contains(got.LastError, `workspace "acmee" does not exist`) {
		t.Fatalf("ledger = %+v", got)
	}
	if info := e.QueueInfo(); info.Archived != 1 {
		t.Fatalf("archived %d, want 1", info.Archived)
	}
}

// Atlassian's documented sample sends "active": "true" as a string: accepted
// and processed like a boolean.
func TestActiveAsStringIsProcessed(t *testing.T) {
	e := testenv.New(t)
	u := cloudUser(noah, "noah@acme.com")
	u["active"] = "true"
	assertAccepted(t, e.Webhook("user_created", "str-noah", u), "accepted")
	e.WaitIdle()
	if got := e.Entry("acme", "acct:"+noah); got == nil || got.Status != ledger.StatusInvited {
		t.Fatalf("ledger = %+v", got)
	}
}

// assertAudited fails unless the audit stream holds action for the person
// with detail containing want.
func assertAudited(t *testing.T, e *testenv.Env, personID, action, want string) {
	t.Helper()
	recs, err := e.App.Ledger().ReadAudit(context.Background(), time.Time{}, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.PersonID == personID && r.Action == action && strings.Contains(r.Detail, want) {
			return
		}
	}
	raw, _ := json.Marshal(recs)
	t.Fatalf("no %s audit record for %s containing %q in %s", action, personID, want, raw)
}
