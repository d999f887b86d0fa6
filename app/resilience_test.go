package app_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/internal/redistest"
	"github.com/autoinvite/autoinvite/internal/testenv"
	"github.com/autoinvite/autoinvite/ledger"
)

// bitbucketCalls returns the calls the fake Bitbucket answered (any status).
func bitbucketCalls(f *fake.Fake) []fake.Call {
	var out []fake.Call
	for _, c := range f.Calls() {
		if !strings.HasPrefix(c.Path, "/rest/") {
			out = append(out, c)
		}
	}
	return out
}

// maxInWindow is the most calls that fell within any window of length w.
func maxInWindow(calls []fake.Call, w time.Duration) int {
	best := 0
	for i := range calls {
		n := 0
		for j := i; j < len(calls) && calls[j].At.Sub(calls[i].At) < w; j++ {
			n++
		}
		best = max(best, n)
	}
	return best
}

func TestRateBudgetIsNeverExceededAndWaitingIsNotFailing(t *testing.T) {
	e := testenv.New(t, testenv.WithRules(`
bitbucket: {member_cache: {max_size: 0}} # a check each, whatever the timing
rate_limits:
  bitbucket: {requests: 4, per: 1s}
workspaces:
  - workspace: acme
    rules:
      - {name: everyone, match: {}, groups: [readers]}
`))
	var ids []string
	for i := 0; i < 6; i++ {
		id := fmt.Sprintf("557058:member-%d", i)
		ids = append(ids, id)
		e.Fake.AddMember("acme", id)
		assertAccepted(t, e.Webhook("user_created", "d-"+id, cloudUser(id, "")), "accepted")
	}
	e.WaitIdle()
	calls := bitbucketCalls(e.Fake.Fake)
	if len(calls) != 12 { // a membership check and one add each: nothing twice
		t.Fatalf("bitbucket calls = %d, want 12", len(calls))
	}
	// GCRA with a burst of 4 and 4/s: never more than 4 + 4 in any second.
	if n := maxInWindow(calls, time.Second); n > 8 {
		t.Fatalf("%d calls within one second: budget exceeded", n)
	}
	if elapsed := calls[len(calls)-1].At.Sub(calls[0].At); elapsed < 1500*time.Millisecond {
		t.Fatalf("12 calls at 4/s with a burst of 4 took only %s", elapsed)
	}
	for _, id := range ids {
		if got := e.Entry("acme", "acct:"+id); got.Status != ledger.StatusGranted {
			t.Fatalf("%s: %+v", id, got)
		}
	}
	info := e.QueueInfo()
	if info.Failed != 0 || info.Archived != 0 {
		t.Fatalf("waiting for budget counted as failure: failed %d archived %d", info.Failed, info.Archived)
	}
	body := scrape(t, e)
	if strings.Contains(body, "\nautoinvite_rate_limit_waits_total{api=\"bitbucket\"} 0\n") {
		t.Fatal("no rate-limit wait was counted")
	}
}

func TestRetryAfterOn429IsHonoured(t *testing.T) {
	e := testenv.New(t, testenv.DataCenter())
	e.Fake.InjectFault(fake.Fault{Method: "PUT", PathPrefix: "/1.0/users/acme/invitations", Status: 429, Times: 1,
		Body: "Rate limit for this resource has been exceeded", Header: map[string]string{"Retry-After": "2"}})
	assertAccepted(t, e.Webhook("user_created", "d1", map[string]any{"name": "dave", "key": "JIRAUSER10100", "emailAddress": "dave@acme.com"}), "accepted")
	e.WaitIdle()
	puts := e.Fake.CallsTo("PUT", "")
	if len(puts) != 3 || puts[0].Status != 429 || puts[1].Status != 200 || puts[2].Status != 200 {
		t.Fatalf("invitation calls = %+v", puts)
	}
	if gap := puts[1].At.Sub(puts[0].At); gap < 1900*time.Millisecond {
		t.Fatalf("retried %s after a 429 with Retry-After: 2", gap)
	}
	if n := len(e.Fake.Invitations("acme")); n != 2 {
		t.Fatalf("invitations = %d", n)
	}
}

func TestCredentialsRefusedFailPermanentlyWithAClearMessage(t *testing.T) {
	e := testenv.New(t)
	e.Fake.InjectFault(fake.Fault{PathPrefix: "/2.0/", Status: 401, Body: "Unauthorized"})
	assertAccepted(t, e.Webhook("user_created", "d1", cloudUser(mia, "mia@acme.com")), "accepted")
	e.WaitIdle()
	got := e.Entry("acme", "acct:"+mia)
	if got.Status != ledger.StatusFailed || !strings.Contains(got.LastError, "HTTP 401") || !strings.Contains(got.LastError, "check the credentials in the environment") {
		t.Fatalf("ledger = %+v", got)
	}
	if info := e.QueueInfo(); info.Archived != 1 || info.Retry != 0 {
		t.Fatalf("a 401 must be archived at once, not retried: %+v", info)
	}
	assertMetrics(t, scrape(t, e), `autoinvite_atlassian_auth_failures_total{api="bitbucket",status="401"} 1`)
}

func TestInvalidEmailIsNeverSent(t *testing.T) {
	e := testenv.New(t, testenv.WithRules(readersOnly))
	assertAccepted(t, e.Webhook("user_created", "d1", cloudUser(noah, "noah@acme.com,boss@acme.com")), "accepted")
	e.WaitIdle()
	if puts := invitationPuts(e.Fake.Fake); len(puts) != 0 {
		t.Fatalf("an email list reached Bitbucket: %v", puts)
	}
	got := e.Entry("acme", "acct:"+noah)
	if got.Status != ledger.StatusFailed || !strings.Contains(got.LastError, "is not a single plain email address") {
		t.Fatalf("ledger = %+v", got)
	}
}

// The fake Bitbucket flaps: random 500s and 429s, and slow answers past the
// client timeout that it still applies. Everything completes, nothing twice.
func TestFlappingBitbucketCompletesEverythingOnce(t *testing.T) {
	e := testenv.New(t, testenv.WithRules(`
bitbucket: {timeout: 200ms}
rate_limits:
  bitbucket: {requests: 40, per: 1s}
workspaces:
  - workspace: acme
    rules:
      - {name: everyone, match: {}, groups: [readers, developers]}
`))
	rng := rand.New(rand.NewPCG(7, 11))
	var mu sync.Mutex
	roll := func() float64 { mu.Lock(); defer mu.Unlock(); return rng.Float64() }
	e.Fake.InjectFault(fake.Fault{PathPrefix: "/", Status: 500, Body: "flap", Rate: 0.15, Rand: roll})
	e.Fake.InjectFault(fake.Fault{PathPrefix: "/", Status: 429, Body: "Rate limit for this resource has been exceeded", Rate: 0.05, Rand: roll})
	e.Fake.InjectFault(fake.Fault{PathPrefix: "/", Delay: 400 * time.Millisecond, Apply: true, Rate: 0.1, Rand: roll})

	members, others := 8, 8
	// Members first: a member listing made by the first signups must find
	// them all (one added after it would be answered "not a member" for the
	// listing's max age, which is not what this test is about).
	for i := 0; i < members; i++ {
		e.Fake.AddMember("acme", fmt.Sprintf("557058:flap-%02d", i))
	}
	for i := 0; i < members+others; i++ {
		id := fmt.Sprintf("557058:flap-%02d", i)
		assertAccepted(t, e.Webhook("user_created", "d-"+id, cloudUser(id, fmt.Sprintf("f%02d@acme.com", i))), "accepted")
	}
	e.WaitIdle()

	adds, invites := map[string]int{}, map[string]int{}
	failures := 0
	for _, c := range bitbucketCalls(e.Fake.Fake) {
		switch {
		case c.Status >= 500 || c.Status == 429:
			failures++
		case c.Method == "PUT" && strings.HasPrefix(c.Path, "/1.0/groups/") && c.Status == 200:
			adds[c.Path]++
		case c.Method == "PUT" && c.Path == "/1.0/users/acme/invitations" && c.Status == 200:
			invites[c.Body]++
		}
	}
	if failures == 0 {
		t.Fatal("the fake did not flap")
	}
	if len(adds) != 2*members || len(invites) != others {
		t.Fatalf("adds %d (want %d), invitations %d (want %d)", len(adds), 2*members, len(invites), others)
	}
	for k, n := range adds {
		if n != 1 {
			t.Errorf("%s applied %d times", k, n)
		}
	}
	for k, n := range invites {
		if n != 1 {
			t.Errorf("invitation %s sent %d times", k, n)
		}
	}
	if n := len(e.Fake.Invitations("acme")); n != others {
		t.Fatalf("pending invitations in Bitbucket = %d, want %d", n, others)
	}
	for i := 0; i < members+others; i++ {
		got := e.Entry("acme", fmt.Sprintf("acct:557058:flap-%02d", i))
		want := ledger.StatusGranted
		if i >= members {
			want = ledger.StatusInvited
		}
		if got == nil || got.Status != want {
			t.Fatalf("person %d: %+v", i, got)
		}
	}
	if info := e.QueueInfo(); info.Archived != 0 {
		t.Fatalf("archived = %d", info.Archived)
	}
	if n := maxInWindow(bitbucketCalls(e.Fake.Fake), time.Second); n > 80 {
		t.Fatalf("%d calls within one second: budget exceeded", n)
	}
}

// Redis stops while webhooks arrive: the intake answers 503 (Jira re-delivers);
// every signup acknowledged before the outage is processed after it.
func TestRedisOutageLosesNoAcknowledgedSignup(t *testing.T) {
	srv := redistest.StartServer(t)
	// Workers start after the outage: the acknowledged signups must have
	// survived in Redis. (A task that was mid-completion when Redis died is
	// recovered by Asynq after its lease, about 90s: not lost, just slower.)
	e := testenv.New(t, testenv.WithRedisURL(srv.URL), testenv.WithRules(readersOnly), testenv.IntakeOnly())
	sendAll := func(from, to int) map[int]int {
		statuses := map[int]int{}
		for i := from; i < to; i++ {
			id := fmt.Sprintf("557058:outage-%02d", i)
			statuses[e.Webhook("user_created", "d-"+id, cloudUser(id, fmt.Sprintf("o%02d@acme.com", i))).Status]++
		}
		return statuses
	}
	if got := sendAll(0, 5); got[http.StatusAccepted] != 5 {
		t.Fatalf("before the outage: %v", got)
	}
	srv.Stop()
	if got := sendAll(5, 8); got[http.StatusServiceUnavailable] != 3 {
		t.Fatalf("during the outage: %v", got)
	}
	srv.Start()
	// Jira re-delivers for about 30 minutes; do so once the service is ready.
	deadline := time.Now().Add(20 * time.Second)
	for e.Do(http.MethodGet, "/readyz", "", "").Status != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("not ready 20s after Redis came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := sendAll(5, 8); got[http.StatusAccepted] != 3 { // Jira's re-deliveries
		t.Fatalf("after the outage: %v", got)
	}
	if err := e.App.StartWorkers(); err != nil {
		t.Fatal(err)
	}
	e.WaitIdle()
	perEmail := map[string]int{}
	for _, body := range invitationPuts(e.Fake.Fake) {
		perEmail[body]++
	}
	if len(perEmail) != 8 {
		t.Fatalf("people invited = %d, want 8: %v", len(perEmail), perEmail)
	}
	for body, n := range perEmail {
		if n != 1 {
			t.Errorf("%s sent %d times", body, n)
		}
	}
}

func TestEvictingRedisIsWarnedAboutLoudly(t *testing.T) {
	srv := redistest.StartServer(t, "--maxmemory-policy", "allkeys-lru")
	e := testenv.New(t, testenv.WithRedisURL(srv.URL), testenv.IntakeOnly())
	if !strings.Contains(e.Logs.String(), `"maxmemory_policy":"allkeys-lru","message":"REDIS MAY EVICT KEYS`) {
		t.Fatal("no eviction warning")
	}
}

func TestSeatGuardHoldsInvitationsBeyondMaxMembers(t *testing.T) {
	e := testenv.New(t, testenv.WithRules(`
workspaces:
  - workspace: acme
    max_members: 3
    rules:
      - {name: everyone, match: {}, groups: [readers]}
`))
	// The sandbox workspace has one member (Mia): two invitations fit, the third is held.
	for i := 0; i < 3; i++ {
		id := fmt.Sprintf("557058:seat-%d", i)
		assertAccepted(t, e.Webhook("user_created", "d-"+id, cloudUser(id, fmt.Sprintf("s%d@acme.com", i))), "accepted")
		e.WaitIdle()
	}
	if n := len(invitationPuts(e.Fake.Fake)); n != 2 {
		t.Fatalf("invitations sent = %d, want 2", n)
	}
	held := e.Entry("acme", "acct:557058:seat-2")
	if held.Status != ledger.StatusSeatLimit || len(held.Invitations) != 0 || fmt.Sprint(held.Waiting) != "[readers]" {
		t.Fatalf("held entry = %+v", held)
	}
	hist := e.History("acme", "acct:557058:seat-2")
	last := hist[len(hist)-1]
	if last.Action != "seat-limit" || last.Detail != "1 members + 2 pending invitations reach max_members 3" {
		t.Fatalf("history = %+v", last)
	}
	// A seat frees up (an invitation expires in Bitbucket); an admin resends.
	e.Fake.Accept("acme", "s0@acme.com", "557058:seat-0")
	e.Fake.Accept("acme", "s1@acme.com", "557058:seat-1")
	e.WriteRules("workspaces:\n  - workspace: acme\n    max_members: 4\n    rules:\n      - {name: everyone, match: {}, groups: [readers]}\n")
	if r := reload(e); r.Status != http.StatusOK {
		t.Fatal(r.Raw)
	}
	n, err := e.App.Worker().Resend(t.Context(), ledger.Ref{Workspace: "acme", PersonID: "acct:557058:seat-2"}, "cli:ops")
	if err != nil || n != 1 {
		t.Fatalf("resend = %d, %v", n, err)
	}
	if got := e.Entry("acme", "acct:557058:seat-2"); got.Status != ledger.StatusInvited {
		t.Fatalf("after resend: %+v", got)
	}
}

// Waiting for the budget is never a failure, however long past
// rate_limits.max_wait: the signup is served when its turn comes, and its
// waits leave no trace in the audit trail.
func TestWaitingForBudgetIsNeverAFailure(t *testing.T) {
	clock := testenv.NewClock(t0)
	e := testenv.New(t, testenv.WithClock(clock), testenv.WithRules(`
rate_limits:
  bitbucket: {requests: 1, per: 3s}
  max_wait: 1m
worker: {max_retry: 3}
workspaces:
  - workspace: acme
    rules:
      - {name: everyone, match: {}, groups: [readers]}
`))
	assertAccepted(t, e.Webhook("user_created", "d-mia", cloudUser(mia, "mia@acme.com")), "accepted")
	// The membership check spent the window's only request: the add waits.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(e.Logs.String(), "waiting for the Atlassian rate budget") {
		if time.Now().After(deadline) {
			t.Fatal("the task never waited for the budget")
		}
		time.Sleep(20 * time.Millisecond)
	}
	clock.Advance(2 * time.Minute) // past max_wait
	e.WaitIdle()
	if info := e.QueueInfo(); info.Archived != 0 || info.Failed != 0 {
		t.Fatalf("waiting for the budget failed the task: %+v", info)
	}
	if got := e.Entry("acme", "acct:"+mia); got == nil || got.Status != ledger.StatusGranted {
		t.Fatalf("ledger = %+v", got)
	}
	recs, err := e.App.Ledger().ReadAudit(context.Background(), time.Time{}, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, r := range recs {
		actions = append(actions, r.Action)
	}
	if want := []string{ledger.ActionDecided, ledger.ActionGroupAdded}; !slices.Equal(actions, want) {
		t.Fatalf("audit trail %q, want %q", actions, want)
	}
}
