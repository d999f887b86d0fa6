package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/autoinvite/autoinvite/integrations/atlassian"
	"github.com/autoinvite/autoinvite/integrations/bitbucket"
	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/integrations/fake/faketest"
	"github.com/autoinvite/autoinvite/integrations/ratelimit"
	"github.com/autoinvite/autoinvite/internal/testenv"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
	"github.com/autoinvite/autoinvite/membership"
	"github.com/autoinvite/autoinvite/worker"
)

const memberRules = `
bitbucket: {member_cache: {max_size: 1000, max_age: 2h}}
invitations: {expire_after: 1h, early_check_interval: 30m}
workspaces:
  - workspace: acme
    rules: [{name: everyone, match: {}, groups: [developers, readers]}]
`

// memberCalls sorts the fake's Bitbucket membership calls: pages of the
// member listing, one-person checks, member counts (the listing's path
// without pagelen), invitation listings and invitations sent.
type memberCalls struct{ pages, checks, counts, invitationLists, invitations, adds int }

func countMemberCalls(f *fake.Fake) memberCalls {
	var c memberCalls
	for _, call := range f.Calls() {
		switch {
		case call.Method == "GET" && call.Path == "/2.0/workspaces/acme/members" && strings.Contains(call.Query, "pagelen=100"):
			c.pages++
		case call.Method == "GET" && call.Path == "/2.0/workspaces/acme/members":
			c.counts++
		case call.Method == "GET" && strings.HasPrefix(call.Path, "/2.0/workspaces/acme/members/"):
			c.checks++
		case call.Method == "GET" && call.Path == "/1.0/users/acme/invitations":
			c.invitationLists++
		case call.Method == "PUT" && call.Path == "/1.0/users/acme/invitations":
			c.invitations++
		case call.Method == "PUT" && strings.HasPrefix(call.Path, "/1.0/groups/acme/"):
			c.adds++
		}
	}
	return c
}

type memberEnv struct {
	*harness
	clock *testenv.Clock
	cache *membership.Cache
}

func newMemberEnv(t *testing.T, rules string, extra ...func(*worker.Options, *faketest.Server)) *memberEnv {
	clock := testenv.NewClock(time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC))
	h := newHarness(t, rules, 10*time.Second, append([]func(*worker.Options, *faketest.Server){func(o *worker.Options, _ *faketest.Server) { o.Now = clock.Now }}, extra...)...)
	return &memberEnv{harness: h, clock: clock, cache: membership.New(h.rdb, h.redis.Prefix)}
}

// waiting registers people as waiting for a membership answer (as signups
// queued behind the budget are).
func (e *memberEnv) waiting(t *testing.T, ids ...string) {
	for _, id := range ids {
		if _, err := e.cache.Demand(context.Background(), "acme", "acct:"+id, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *memberEnv) served(t *testing.T, ids ...string) {
	for _, id := range ids {
		if err := e.cache.Served(context.Background(), "acme", "acct:"+id); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *memberEnv) signup(t *testing.T, id string) {
	t.Helper()
	if err := e.w.ProcessUserEvent(context.Background(), signup(id, strings.ReplaceAll(id, ":", "-")+"@acme.com")); err != nil {
		t.Fatalf("signup %s: %v", id, err)
	}
}

func (e *memberEnv) status(t *testing.T, id string) ledger.Status {
	t.Helper()
	en, err := e.ledger.Get(context.Background(), "acme", "acct:"+id)
	if err != nil || en == nil {
		t.Fatalf("entry of %s: %+v, %v", id, en, err)
	}
	return en.Status
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("557058:%s%03d", prefix, i)
	}
	return out
}

// Twenty signups pending in a workspace of 251 members: one listing (3
// pages) answers all of them instead of twenty checks; members are added,
// newcomers invited, and nobody is asked about alone.
func TestBurstListsMembersOnceInsteadOfCheckingEach(t *testing.T) {
	e := newMemberEnv(t, memberRules)
	for _, id := range ids("m", 250) {
		e.fake.AddMember("acme", id)
	}
	members, newcomers := ids("m", 10), ids("n", 10)
	e.waiting(t, append(members, newcomers...)...)
	e.fake.ResetCalls()
	for i := range members {
		e.signup(t, members[i])
		e.signup(t, newcomers[i])
	}
	if got, want := countMemberCalls(e.fake.Fake), (memberCalls{pages: 3, adds: 20, invitations: 10}); got != want {
		t.Fatalf("calls = %+v, want %+v (3 pages = ceil(251/100) instead of 20 checks)", got, want)
	}
	for i := range members {
		if s := e.status(t, members[i]); s != ledger.StatusGranted {
			t.Errorf("member %s: %s", members[i], s)
		}
		if s := e.status(t, newcomers[i]); s != ledger.StatusInvited {
			t.Errorf("newcomer %s: %s", newcomers[i], s)
		}
	}
	if v := e.fake.Violations(); len(v) > 0 {
		t.Fatalf("contract violations: %v", v)
	}
}

// Fewer signups pending than the listing has pages: each is checked alone.
func TestFewSignupsAreCheckedOneByOne(t *testing.T) {
	e := newMemberEnv(t, memberRules)
	for _, id := range ids("m", 250) {
		e.fake.AddMember("acme", id)
	}
	// The size is known from an earlier listing that did not pay.
	e.waiting(t, "557058:a", "557058:b")
	if listed, err := e.cache.Refresh(context.Background(), membership.Listing{Workspace: "acme", Source: bitbucket.New(bbOptions(e.fake)),
		PageLen: bitbucket.MemberPageLen, Pending: 2, Limits: membership.Limits{MaxSize: 1000, MaxAge: time.Hour}, Now: e.clock.Now}); err != nil || listed {
		t.Fatalf("probe listed %v, %v", listed, err)
	}
	e.served(t, "557058:a", "557058:b")
	e.fake.ResetCalls()
	e.signup(t, "557058:m001")
	if got, want := countMemberCalls(e.fake.Fake), (memberCalls{checks: 1, adds: 2}); got != want {
		t.Fatalf("calls = %+v, want %+v", got, want)
	}
}

func bbOptions(f *faketest.Server) atlassian.Options {
	return atlassian.Options{BaseURL: f.URL, Auth: atlassian.Auth{Email: "bot@acme.com", Token: testenv.BitbucketToken}, Timeout: 5 * time.Second}
}

// A listing is trusted for max age only: past it, someone who joined after
// the listing is asked about (one check), found a member and added to the
// cache; they are never invited.
func TestStaleListingIsNotTrusted(t *testing.T) {
	e := newMemberEnv(t, memberRules)
	for _, id := range ids("m", 250) {
		e.fake.AddMember("acme", id)
	}
	e.waiting(t, "557058:a", "557058:b", "557058:c")
	e.signup(t, "557058:a") // lists (3 questions, 3 pages)
	e.served(t, "557058:b", "557058:c")
	e.fake.AddMember("acme", "557058:late")
	e.clock.Advance(2*time.Hour + time.Second)
	e.fake.ResetCalls()
	e.signup(t, "557058:late")
	if got, want := countMemberCalls(e.fake.Fake), (memberCalls{checks: 1, adds: 2}); got != want {
		t.Fatalf("calls = %+v, want %+v (a stale listing answers nothing)", got, want)
	}
	if s := e.status(t, "557058:late"); s != ledger.StatusGranted {
		t.Fatalf("late joiner: %s, want granted", s)
	}
}

// Within max age the listing says "not a member" of someone who joined since;
// Bitbucket answers their invitation 409 (it already holds one): they are
// asked about, found a member, added to the groups instead, and the cache
// learns it.
func TestInvitationAnswerMakesAListingDoubtful(t *testing.T) {
	e := newMemberEnv(t, memberRules)
	e.waiting(t, "557058:a", "557058:b")
	e.signup(t, "557058:a") // lists
	e.fake.AddMember("acme", "557058:late")
	if _, err := bitbucket.New(bbOptions(e.fake)).Invite(context.Background(), "acme", "557058-late@acme.com", "developers"); err != nil {
		t.Fatal(err)
	}
	e.fake.ResetCalls()
	e.signup(t, "557058:late")
	if got, want := countMemberCalls(e.fake.Fake), (memberCalls{invitations: 1, checks: 1, adds: 2}); got != want {
		t.Fatalf("calls = %+v, want %+v", got, want)
	}
	if s := e.status(t, "557058:late"); s != ledger.StatusGranted {
		t.Fatalf("late joiner: %s, want granted", s)
	}
	a, err := e.cache.Lookup(context.Background(), "acme", "557058:late", e.clock.Now(), time.Hour)
	if err != nil || !a.Fresh || !a.Member {
		t.Fatalf("cache after the check: %+v, %v; want a fresh member", a, err)
	}
}

// An invitee who accepted after the listing is not re-sent an invitation on
// the listing's word: the re-send asks about them, finds them joined, grants
// the waiting group, and the cache learns it.
func TestResendAsksWhenTheListingSaysNotAMember(t *testing.T) {
	e := newMemberEnv(t, memberRules)
	e.waiting(t, "557058:a", "557058:n")
	e.signup(t, "557058:n") // lists; invited
	if s := e.status(t, "557058:n"); s != ledger.StatusInvited {
		t.Fatalf("newcomer: %s", s)
	}
	e.fake.Accept("acme", "557058-n@acme.com", "557058:n")
	e.clock.Advance(time.Hour + time.Minute) // the invitation expired, the listing is still fresh
	e.fake.ResetCalls()
	out, err := e.w.FollowUp(context.Background(), ledger.Ref{Workspace: "acme", PersonID: "acct:557058:n"}, false, "sweep")
	if err != nil || out != worker.OutcomeAccepted {
		t.Fatalf("follow-up = %s, %v; want accepted", out, err)
	}
	if got, want := countMemberCalls(e.fake.Fake), (memberCalls{checks: 1, adds: 2}); got != want {
		t.Fatalf("calls = %+v, want %+v (no re-send)", got, want)
	}
	if a, _ := e.cache.Lookup(context.Background(), "acme", "557058:n", e.clock.Now(), 2*time.Hour); !a.Member {
		t.Fatalf("cache after acceptance: %+v, want a member", a)
	}
}

// With max_members, a listing also takes the seat count's snapshot (the
// pending invitations, listed first): invitations then cost no member count
// and no invitation listing each, and the limit holds exactly.
func TestSeatGuardCountsFromTheListing(t *testing.T) {
	e := newMemberEnv(t, `
bitbucket: {member_cache: {max_size: 1000, max_age: 1h}}
workspaces:
  - workspace: acme
    max_members: 4
    rules: [{name: everyone, match: {}, groups: [developers]}]
`)
	e.fake.AddMember("acme", "557058:m1") // with the demo member: 2 members
	if _, err := bitbucket.New(bbOptions(e.fake)).Invite(context.Background(), "acme", "someone@else.com", "developers"); err != nil {
		t.Fatal(err) // 1 pending invitation: 3 seats
	}
	newcomers := ids("n", 3)
	e.waiting(t, newcomers...)
	e.fake.ResetCalls()
	for _, id := range newcomers {
		e.signup(t, id)
	}
	if got, want := countMemberCalls(e.fake.Fake), (memberCalls{pages: 1, invitationLists: 1, invitations: 1}); got != want {
		t.Fatalf("calls = %+v, want %+v (no count per invitation)", got, want)
	}
	want := []ledger.Status{ledger.StatusInvited, ledger.StatusSeatLimit, ledger.StatusSeatLimit}
	for i, id := range newcomers {
		if s := e.status(t, id); s != want[i] {
			t.Errorf("%s: %s, want %s", id, s, want[i])
		}
	}
}

// Early checks wait while signups wait for the Bitbucket budget: no call,
// nothing written, the check stays due; once nobody waits, they run.
func TestEarlyChecksYieldToWaitingSignups(t *testing.T) {
	e := newMemberEnv(t, `
bitbucket: {member_cache: {max_size: 0}}
invitations: {early_check_interval: 30m}
workspaces:
  - workspace: acme
    rules: [{name: everyone, match: {}, groups: [developers]}]
`)
	ctx := context.Background()
	e.signup(t, fake.DemoNewcomerAccountID)
	e.clock.Advance(31 * time.Minute)
	before, err := e.ledger.Get(ctx, "acme", "acct:"+fake.DemoNewcomerAccountID)
	if err != nil || before.NextCheckAt.IsZero() {
		t.Fatalf("entry %+v, %v", before, err)
	}

	// A signup waits for the budget.
	l := ratelimit.New(e.rdb, ratelimit.Options{API: ratelimit.APIBitbucket, Credential: "bot", Prefix: e.redis.Prefix, MaxInPlaceWait: -1,
		Budgets: []ratelimit.Budget{{Name: "requests", Requests: 1, Per: time.Hour}}})
	_ = l.Take(ctx, "GET", "/x")
	wait, ok := ratelimit.AsWait(l.Take(ctx, "GET", "/x"))
	if !ok {
		t.Fatal("no wait")
	}
	backlog := ratelimit.NewBacklog(e.rdb, e.redis.Prefix)
	if err := backlog.Queue(ctx, "delivery:signup", time.Now(), wait); err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		p, _ := json.Marshal(jobs.FollowUp{Workspace: "acme", PersonID: "acct:" + fake.DemoNewcomerAccountID, Reason: jobs.ReasonCheck})
		if err := e.w.HandleFollowUp(ctx, asynq.NewTask(jobs.TypeFollowUp, p)); err != nil {
			t.Fatalf("early check: %v", err)
		}
	}
	e.fake.ResetCalls()
	check()
	after, _ := e.ledger.Get(ctx, "acme", "acct:"+fake.DemoNewcomerAccountID)
	if got := countMemberCalls(e.fake.Fake); got != (memberCalls{}) || !after.NextCheckAt.Equal(before.NextCheckAt) {
		t.Fatalf("while a signup waits: calls %+v, next check %v (was %v); want none, unchanged", got, after.NextCheckAt, before.NextCheckAt)
	}

	if err := backlog.Done(ctx, "delivery:signup"); err != nil {
		t.Fatal(err)
	}
	check()
	after, _ = e.ledger.Get(ctx, "acme", "acct:"+fake.DemoNewcomerAccountID)
	if got := countMemberCalls(e.fake.Fake); got != (memberCalls{checks: 1}) || !after.NextCheckAt.After(before.NextCheckAt) {
		t.Fatalf("nobody waiting: calls %+v, next check %v; want one check, pushed out", got, after.NextCheckAt)
	}
}

// An early check whose share of the budget is spent is deferred, not failed:
// nothing is written and the check stays due.
func TestEarlyCheckOverItsShareIsDeferred(t *testing.T) {
	var bb *waitingBitbucket
	e := newMemberEnv(t, `
invitations: {early_check_interval: 30m}
workspaces:
  - workspace: acme
    rules: [{name: everyone, match: {}, groups: [developers]}]
`, func(o *worker.Options, _ *faketest.Server) {
		bb = &waitingBitbucket{Bitbucket: o.Bitbucket, next: &ratelimit.WaitError{API: "bitbucket", Budget: "early-checks", RetryAfter: time.Minute, Position: -1}}
		o.Bitbucket = bb
	})
	ctx := context.Background()
	e.signup(t, fake.DemoNewcomerAccountID)
	e.clock.Advance(31 * time.Minute)
	before, _ := e.ledger.Get(ctx, "acme", "acct:"+fake.DemoNewcomerAccountID)
	bb.memberWaits = 1
	p, _ := json.Marshal(jobs.FollowUp{Workspace: "acme", PersonID: "acct:" + fake.DemoNewcomerAccountID, Reason: jobs.ReasonCheck})
	if err := e.w.HandleFollowUp(ctx, asynq.NewTask(jobs.TypeFollowUp, p)); err != nil {
		t.Fatalf("early check over its share: %v, want deferred (nil)", err)
	}
	after, _ := e.ledger.Get(ctx, "acme", "acct:"+fake.DemoNewcomerAccountID)
	if bb.waits != 1 || !after.UpdatedAt.Equal(before.UpdatedAt) || !after.NextCheckAt.Equal(before.NextCheckAt) {
		t.Fatalf("waits %d; entry updated %v (was %v), next check %v (was %v)", bb.waits, after.UpdatedAt, before.UpdatedAt, after.NextCheckAt, before.NextCheckAt)
	}
}

// Signups queued and not yet started count as questions to come: twenty
// queued in a one-workspace site make the first signup list the 251 members
// (3 pages) instead of asking about itself; with the count unreadable it asks
// about itself alone.
func TestQueuedSignupsMakeTheFirstOneList(t *testing.T) {
	for _, tc := range []struct {
		name   string
		queued func(context.Context) (int, error)
		want   memberCalls
	}{
		{"twenty queued", func(context.Context) (int, error) { return 20, nil }, memberCalls{pages: 3, adds: 2}},
		{"two queued", func(context.Context) (int, error) { return 2, nil }, memberCalls{checks: 1, adds: 2}},
		{"count unreadable", func(context.Context) (int, error) { return 0, errors.New("redis down") }, memberCalls{checks: 1, adds: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newMemberEnv(t, memberRules, func(o *worker.Options, _ *faketest.Server) { o.Queued = tc.queued })
			for _, id := range ids("m", 250) {
				e.fake.AddMember("acme", id)
			}
			// The size is known from an earlier listing.
			if _, err := e.cache.Refresh(context.Background(), membership.Listing{Workspace: "acme", Source: bitbucket.New(bbOptions(e.fake)),
				PageLen: bitbucket.MemberPageLen, Pending: 1, Limits: membership.Limits{MaxSize: 1000, MaxAge: time.Hour}, Now: e.clock.Now}); err != nil {
				t.Fatal(err)
			}
			e.fake.ResetCalls()
			e.signup(t, "557058:m001")
			if got := countMemberCalls(e.fake.Fake); got != tc.want {
				t.Fatalf("calls = %+v, want %+v", got, tc.want)
			}
			if s := e.status(t, "557058:m001"); s != ledger.StatusGranted {
				t.Fatalf("status %s, want granted", s)
			}
		})
	}
}
