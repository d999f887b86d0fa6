package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/integrations/fake/faketest"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
	"github.com/autoinvite/autoinvite/worker"
)

// Acceptance questions in an Atlassian-administered workspace (globex):
// the sweep's early checks are answered by one users/search per
// organization and 100 people, not one Bitbucket member check each.

const orgCheckRules = `
bitbucket: {member_cache: {max_size: 1000, max_age: 2h}}
invitations: {expire_after: 24h, early_check_interval: 6h}
workspaces:
  - workspace: globex
    administration: atlassian
    organization: {id: ` + fake.DemoOrgID + `, base_url: $FAKE_URL}
    rules: [{name: all, match: {}, groups: [developers, readers]}]
`

const orgSearchPath = "/admin/v2/orgs/" + fake.DemoOrgID + "/directories/-/users/search"

// queues records what the worker queues: batch items and follow-ups.
type queues struct {
	mu        sync.Mutex
	items     []jobs.BatchItem
	followUps []jobs.FollowUp
}

func (q *queues) EnqueueBatchItem(_ context.Context, it jobs.BatchItem) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items = append(q.items, it)
	return nil
}

func (q *queues) EnqueueFollowUp(_ context.Context, f jobs.FollowUp) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.followUps = append(q.followUps, f)
	return nil
}

// take empties the queues.
func (q *queues) take() (items []jobs.BatchItem, followUps []jobs.FollowUp) {
	q.mu.Lock()
	defer q.mu.Unlock()
	items, followUps, q.items, q.followUps = q.items, q.followUps, nil, nil
	return items, followUps
}

type orgEnv struct {
	*memberEnv
	q *queues
}

func newOrgEnv(t *testing.T, rules string) *orgEnv {
	q := &queues{}
	e := newMemberEnv(t, rules, withOrganization, func(o *worker.Options, _ *faketest.Server) { o.Batches, o.FollowUps = q, q })
	return &orgEnv{memberEnv: e, q: q}
}

// person is an invitee of globex: the account the organization invitation
// gives their email is the one Jira names.
type person struct{ email, account string }

func people(prefix string, n int) []person {
	out := make([]person, n)
	for i := range out {
		email := fmt.Sprintf("%s%03d@globex.com", prefix, i)
		out[i] = person{email: email, account: fake.InvitedAccountID(email)}
	}
	return out
}

// invite signs the people up and runs their batch: one organization
// invitation each.
func (e *orgEnv) invite(t *testing.T, ps []person) {
	t.Helper()
	for _, p := range ps {
		if err := e.w.ProcessUserEvent(context.Background(), signup(p.account, p.email)); err != nil {
			t.Fatalf("signup %s: %v", p.email, err)
		}
	}
	items, _ := e.q.take()
	if err := e.w.RunBatch(context.Background(), jobs.Batch{Items: items}, fmt.Sprintf("batch-%d", e.clock.Now().UnixNano())); err != nil {
		t.Fatalf("batch: %v", err)
	}
	for _, p := range ps {
		if s := e.orgStatus(t, p); s != ledger.StatusInvited {
			t.Fatalf("%s: %s, want invited", p.email, s)
		}
	}
}

// checksDue invites n people and brings the clock to their early check.
func checksDue(t *testing.T, prefix string, n int) (*orgEnv, []person) {
	e := newOrgEnv(t, orgCheckRules)
	ps := people(prefix, n)
	e.invite(t, ps)
	e.clock.Advance(6*time.Hour + time.Minute)
	return e, ps
}

// active makes the people's last activity in globex's Bitbucket now.
func (e *orgEnv) active(ps ...person) {
	for _, p := range ps {
		e.fake.SetOrgUserActivity(p.account, "bitbucket", fake.DemoGlobexResourceID, e.clock.Now())
	}
}

// sweep queues the follow-ups due and runs each as Asynq would hand it over.
func (e *orgEnv) sweep(t *testing.T) []jobs.FollowUp {
	t.Helper()
	if _, _, err := e.w.QueueFollowUps(context.Background(), e.clock.Now()); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	_, followUps := e.q.take()
	for _, f := range followUps {
		payload, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.w.HandleFollowUp(context.Background(), asynq.NewTask(jobs.TypeFollowUp, payload)); err != nil {
			t.Fatalf("follow-up of %s: %v", f.PersonID, err)
		}
	}
	return followUps
}

func (e *orgEnv) entry(t *testing.T, p person) *ledger.Entry {
	t.Helper()
	en, err := e.ledger.Get(context.Background(), "globex", "acct:"+p.account)
	if err != nil || en == nil {
		t.Fatalf("entry of %s: %+v, %v", p.email, en, err)
	}
	return en
}

func (e *orgEnv) orgStatus(t *testing.T, p person) ledger.Status {
	t.Helper()
	return e.entry(t, p).Status
}

// orgCalls sorts the fake's calls of the acceptance questions: users
// searches, lookups of the workspace's resource id (cached an hour per
// process), Bitbucket member checks, the workspace check that follows a
// first "not a member" (cached per client), member listing pages.
type orgCalls struct{ searches, resources, checks, workspace, pages, other int }

func countOrgCalls(f *fake.Fake) (c orgCalls, searched [][]string) {
	for _, call := range f.Calls() {
		switch {
		case call.Method == "POST" && call.Path == orgSearchPath:
			c.searches++
			var body struct {
				AccountIDs []string `json:"accountIds"`
				Expand     []string `json:"expand"`
			}
			_ = json.Unmarshal([]byte(call.Body), &body)
			if !slices.Equal(body.Expand, []string{"productAccess"}) {
				body.AccountIDs = nil // not the acceptance search
			}
			searched = append(searched, body.AccountIDs)
		case call.Method == "POST" && call.Path == "/admin/v2/orgs/"+fake.DemoOrgID+"/workspaces":
			c.resources++
		case call.Method == "GET" && strings.HasPrefix(call.Path, "/2.0/workspaces/globex/members/"):
			c.checks++
		case call.Method == "GET" && call.Path == "/2.0/workspaces/globex":
			c.workspace++
		case call.Method == "GET" && call.Path == "/2.0/workspaces/globex/members":
			c.pages++
		default:
			c.other++
		}
	}
	return c, searched
}

// Thirty early checks due in an Atlassian-administered workspace cost one
// users/search (30 ids, expand productAccess), not thirty Bitbucket member
// checks: the ten seen active in globex's Bitbucket since their invitation
// are accepted, the twenty others stay invited until the next check.
func TestOrgEarlyChecksShareOneSearch(t *testing.T) {
	e, ps := checksDue(t, "early", 30)
	e.active(ps[:10]...)
	e.fake.ResetCalls()

	followUps := e.sweep(t)

	// The workspace's resource id (which productAccess names) was cached
	// an hour by the invitations: six hours on it is looked up once.
	calls, searched := countOrgCalls(e.fake.Fake)
	if calls != (orgCalls{searches: 1, resources: 1}) || len(searched) != 1 || len(searched[0]) != 30 {
		t.Fatalf("calls = %+v, searched %v; want one search of 30, one resource lookup and nothing else (%q)", calls, searched, e.fake.CallStrings())
	}
	if len(followUps) != 30 {
		t.Fatalf("%d follow-ups, want 30", len(followUps))
	}
	for i, p := range ps {
		en := e.entry(t, p)
		switch {
		case i < 10 && (en.Status != ledger.StatusGranted || en.AnyPendingInvitation() || len(en.Granted) != 2):
			t.Fatalf("%s (active): %+v, want granted, invitation accepted", p.email, en)
		case i >= 10 && (en.Status != ledger.StatusInvited || !en.NextCheckAt.Equal(e.clock.Now().Add(6*time.Hour))):
			t.Fatalf("%s (not active): status %s, next check %v; want invited, checked again in 6h", p.email, en.Status, en.NextCheckAt)
		}
	}
	if v := e.fake.Violations(); len(v) != 0 {
		t.Fatalf("contract violations: %q", v)
	}
}

// One early check alone asks Bitbucket about its person, as before: a
// search would cost as much and only prove activity, not its absence.
func TestOrgSingleEarlyCheckAsksBitbucket(t *testing.T) {
	e, ps := checksDue(t, "one", 1)
	e.fake.Accept("globex", ps[0].email, ps[0].account)
	e.fake.ResetCalls()

	e.sweep(t)

	if calls, _ := countOrgCalls(e.fake.Fake); calls != (orgCalls{checks: 1}) {
		t.Fatalf("calls = %+v, want one member check (%q)", calls, e.fake.CallStrings())
	}
	if s := e.orgStatus(t, ps[0]); s != ledger.StatusGranted {
		t.Fatalf("status %s, want granted", s)
	}
}

// Activity elsewhere proves nothing: in another product, in another
// workspace of the organization, or before the invitation was sent.
func TestOrgActivityElsewhereIsNoAcceptance(t *testing.T) {
	e, ps := checksDue(t, "elsewhere", 4)
	e.fake.SetOrgUserActivity(ps[0].account, "jira", fake.DemoGlobexResourceID, e.clock.Now())
	e.fake.SetOrgUserActivity(ps[1].account, "bitbucket", "ari:cloud:bitbucket::workspace/another", e.clock.Now())
	e.fake.SetOrgUserActivity(ps[2].account, "bitbucket", fake.DemoGlobexResourceID, e.clock.Now().Add(-7*time.Hour))
	// Named by the bare id instead of the ARI: the same workspace.
	e.fake.SetOrgUserActivity(ps[3].account, "bitbucket", fake.DemoGlobexResourceID[strings.LastIndex(fake.DemoGlobexResourceID, "/")+1:], e.clock.Now())
	e.fake.ResetCalls()

	e.sweep(t)

	if calls, _ := countOrgCalls(e.fake.Fake); calls != (orgCalls{searches: 1, resources: 1}) {
		t.Fatalf("calls = %+v, want one search", calls)
	}
	for i, want := range []ledger.Status{ledger.StatusInvited, ledger.StatusInvited, ledger.StatusInvited, ledger.StatusGranted} {
		if s := e.orgStatus(t, ps[i]); s != want {
			t.Errorf("%s: %s, want %s", ps[i].email, s, want)
		}
	}
}

// A search that fails for now (503) queues none of its early checks: they
// stay due, nothing is written, nobody is asked about alone; the next sweep
// searches again and answers them all. A search refused for good (403)
// leaves each check to ask Bitbucket about its person, as before.
func TestOrgEarlyCheckSearchFailure(t *testing.T) {
	t.Run("temporary: retried by the next sweep", func(t *testing.T) {
		e, ps := checksDue(t, "retry", 5)
		e.active(ps[0])
		before := e.entry(t, ps[1])
		e.fake.InjectFault(fake.Fault{Method: "POST", PathPrefix: orgSearchPath, Status: 503, Times: 1})
		e.fake.ResetCalls()

		if queued := e.sweep(t); len(queued) != 0 {
			t.Fatalf("%d follow-ups queued after a failed search, want none", len(queued))
		}
		if calls, _ := countOrgCalls(e.fake.Fake); calls != (orgCalls{searches: 1, resources: 1}) {
			t.Fatalf("calls = %+v, want the one failed search", calls)
		}
		if after := e.entry(t, ps[1]); !after.UpdatedAt.Equal(before.UpdatedAt) || !after.NextCheckAt.Equal(before.NextCheckAt) {
			t.Fatalf("entry written after a failed search: %+v (was %+v)", after, before)
		}

		e.clock.Advance(15 * time.Minute)
		e.fake.ResetCalls()
		if queued := e.sweep(t); len(queued) != 5 {
			t.Fatalf("%d follow-ups on the next sweep, want 5", len(queued))
		}
		if calls, _ := countOrgCalls(e.fake.Fake); calls != (orgCalls{searches: 1}) {
			t.Fatalf("calls = %+v, want one search (the resource id is cached now)", calls)
		}
		if s := e.orgStatus(t, ps[0]); s != ledger.StatusGranted {
			t.Fatalf("active invitee: %s, want granted", s)
		}
		for _, p := range ps[1:] {
			if en := e.entry(t, p); en.Status != ledger.StatusInvited || !en.NextCheckAt.After(e.clock.Now()) {
				t.Fatalf("%s: %s, next check %v", p.email, en.Status, en.NextCheckAt)
			}
		}
	})
	t.Run("permanent: each asks Bitbucket", func(t *testing.T) {
		e, ps := checksDue(t, "refused", 3)
		e.fake.Accept("globex", ps[0].email, ps[0].account)
		e.fake.InjectFault(fake.Fault{Method: "POST", PathPrefix: orgSearchPath, Status: 403, Times: 1,
			Body: `{"errors":[{"code":"ADMIN-403-1","title":"Forbidden"}]}`})
		e.fake.ResetCalls()

		if queued := e.sweep(t); len(queued) != 3 {
			t.Fatalf("%d follow-ups, want 3", len(queued))
		}
		calls, _ := countOrgCalls(e.fake.Fake)
		// The workspace check follows a first "not a member" unless a member
		// was found before it (the follow-ups run in the order queued).
		if calls.workspace <= 1 {
			calls.workspace = 0
		}
		if calls != (orgCalls{searches: 1, resources: 1, checks: 3}) {
			t.Fatalf("calls = %+v, want the refused search, then a Bitbucket check each", calls)
		}
		if s := e.orgStatus(t, ps[0]); s != ledger.StatusGranted {
			t.Fatalf("the one who joined: %s, want granted", s)
		}
	})
}

// Re-sends due in the same organization ride along in the search while
// they fill no extra call: one seen active is accepted without a Bitbucket
// check; the others get the exact check before their re-send, as always
// (activity lags, so its absence never justifies a re-send).
func TestOrgResendsRideAlongTheSearch(t *testing.T) {
	e := newOrgEnv(t, orgCheckRules)
	expiring, early := people("expiring", 3), people("early", 2)
	e.invite(t, expiring)
	e.clock.Advance(19 * time.Hour)
	e.invite(t, early)
	e.clock.Advance(6*time.Hour + time.Minute) // expiring: 25 h old, past expire_after; early: check due
	e.active(expiring[0], early[0])
	e.fake.ResetCalls()

	e.sweep(t)

	calls, searched := countOrgCalls(e.fake.Fake)
	if calls != (orgCalls{searches: 1, resources: 1, checks: 2, workspace: 1}) || len(searched) != 1 || len(searched[0]) != 5 {
		t.Fatalf("calls = %+v, searched %v; want one search of 5 and the 2 exact checks before re-sending (%q)", calls, searched, e.fake.CallStrings())
	}
	if items, _ := e.q.take(); len(items) != 2 || items[0].Kind != jobs.BatchOrgInvite {
		t.Fatalf("queued %+v, want the 2 re-sends", items)
	}
	for _, c := range []struct {
		p      person
		want   ledger.Status
		resent bool
	}{{expiring[0], ledger.StatusGranted, false}, {expiring[1], ledger.StatusInvited, true}, {expiring[2], ledger.StatusInvited, true}, {early[0], ledger.StatusGranted, false}, {early[1], ledger.StatusInvited, false}} {
		if en := e.entry(t, c.p); en.Status != c.want || (len(en.Batched) > 0) != c.resent {
			t.Errorf("%s: %s, queued for a re-send %v; want %s, %v", c.p.email, en.Status, len(en.Batched) > 0, c.want, c.resent)
		}
	}
}
