package app_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/internal/testenv"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
	"github.com/autoinvite/autoinvite/worker"
)

var t0 = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

const everyoneReaders = `
invitations: {expire_after: 168h, max_resends: 2, early_check_interval: 0s}
workspaces:
  - workspace: acme
    rules:
      - {name: everyone, match: {}, groups: [readers]}
`

func sweep(t *testing.T, e *testenv.Env) worker.SweepSummary {
	t.Helper()
	sum, err := e.App.Worker().SweepOnce(context.Background(), "test")
	if err != nil {
		t.Fatalf("sweep: %v", err)
	}
	return sum
}

func invitationPuts(f *fake.Fake) []string {
	var out []string
	for _, c := range f.CallsTo("PUT", "/1.0/users/acme/invitations") {
		if c.Status == 200 {
			out = append(out, c.Body)
		}
	}
	return out
}

func assertSummary(t *testing.T, got worker.SweepSummary, want worker.SweepSummary) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("sweep summary = %v, want %v", got, want)
	}
}

func TestInvitationIsResentUntilMaxResendsThenGivenUp(t *testing.T) {
	clock := testenv.NewClock(t0)
	e := testenv.New(t, testenv.WithClock(clock), testenv.WithRules(everyoneReaders))
	assertAccepted(t, e.Webhook("user_created", "d1", cloudUser(noah, "noah@acme.com")), "accepted")
	e.WaitIdle()
	if n := len(invitationPuts(e.Fake.Fake)); n != 1 {
		t.Fatalf("initial invitations = %d", n)
	}

	clock.Advance(167 * time.Hour) // not expired yet
	assertSummary(t, sweep(t, e), worker.SweepSummary{})

	clock.Advance(2 * time.Hour) // expired: first re-send
	assertSummary(t, sweep(t, e), worker.SweepSummary{worker.OutcomeResent: 1})
	assertSummary(t, sweep(t, e), worker.SweepSummary{}) // same period: nothing more
	got := e.Entry("acme", "acct:"+noah)
	inv := got.Invitations[0]
	if inv.Resends != 1 || !inv.SentAt.Equal(clock.Now()) || !inv.ExpiresAt.Equal(clock.Now().Add(168*time.Hour)) || got.Status != ledger.StatusInvited {
		t.Fatalf("after first re-send: %+v / %+v", got, inv)
	}

	clock.Advance(169 * time.Hour)
	assertSummary(t, sweep(t, e), worker.SweepSummary{worker.OutcomeResent: 1})
	clock.Advance(169 * time.Hour) // max_resends (2) reached: given up, here through the queue
	if due, _, err := e.App.Worker().QueueFollowUps(context.Background(), clock.Now()); err != nil || due != 1 {
		t.Fatalf("queued follow-ups: %d, %v", due, err)
	}
	e.WaitIdle()
	clock.Advance(169 * time.Hour)
	assertSummary(t, sweep(t, e), worker.SweepSummary{}) // out of the due index

	got = e.Entry("acme", "acct:"+noah)
	if got.Status != ledger.StatusExpired || got.Invitations[0].State != ledger.InvitationExpired || got.Invitations[0].Resends != 2 {
		t.Fatalf("after giving up: %+v", got)
	}
	if n := len(invitationPuts(e.Fake.Fake)); n != 3 {
		t.Fatalf("invitations sent = %d, want 1 + 2 re-sends", n)
	}
	hist := e.History(got.Workspace, got.PersonID)
	last := hist[len(hist)-1]
	if last.Action != "invitation-expired" || last.Group != "readers" || last.Detail != "given up after 2 re-sends" || last.Actor != "sweep" {
		t.Fatalf("last history = %+v", last)
	}

	// Signing up again (a newer user_created) resets a finished invitation.
	assertAccepted(t, e.WebhookAt("user_created", "d2", 1763800000000+1000, cloudUser(noah, "noah@acme.com")), "accepted")
	e.WaitIdle()
	got = e.Entry("acme", "acct:"+noah)
	if n := len(invitationPuts(e.Fake.Fake)); n != 4 || got.Status != ledger.StatusInvited || len(got.PendingGroups()) != 1 {
		t.Fatalf("after new signup: %d invitations, %+v", n, got)
	}
}

func TestAcceptanceAtExpiryGrantsWaitingGroups(t *testing.T) {
	clock := testenv.NewClock(t0)
	e := testenv.New(t, testenv.WithClock(clock))
	assertAccepted(t, e.Webhook("user_created", "d1", cloudUser(noah, "noah@acme.com")), "accepted")
	e.WaitIdle()
	e.Fake.Accept("acme", "noah@acme.com", noah) // joins developers through the invitation
	e.Fake.ResetCalls()

	clock.Advance(169 * time.Hour)
	assertSummary(t, sweep(t, e), worker.SweepSummary{worker.OutcomeAccepted: 1})
	assertCalls(t, e.Fake.Fake,
		"GET /2.0/workspaces/acme/members/"+noah,
		"PUT /1.0/groups/acme/developers/members/"+noah, // 409: joined through the invitation
		"PUT /1.0/groups/acme/readers/members/"+noah,
	)
	got := e.Entry("acme", "acct:"+noah)
	if got.Status != ledger.StatusGranted || !reflect.DeepEqual(got.Granted, []string{"developers", "readers"}) ||
		len(got.HandGiven) != 0 || got.Invitations[0].State != ledger.InvitationAccepted {
		t.Fatalf("ledger = %+v", got)
	}
	assertSummary(t, sweep(t, e), worker.SweepSummary{})
}

func TestEarlyAcceptanceIsNoticedBeforeExpiry(t *testing.T) {
	clock := testenv.NewClock(t0)
	e := testenv.New(t, testenv.WithClock(clock)) // early_check_interval defaults to 6h
	assertAccepted(t, e.Webhook("user_created", "d1", cloudUser(noah, "noah@acme.com")), "accepted")
	e.WaitIdle()

	clock.Advance(6*time.Hour + time.Minute)
	assertSummary(t, sweep(t, e), worker.SweepSummary{worker.OutcomeChecked: 1}) // not joined yet
	if next := e.Entry("acme", "acct:"+noah).NextCheckAt; !next.Equal(clock.Now().Add(6 * time.Hour)) {
		t.Fatalf("next check = %v", next)
	}
	assertSummary(t, sweep(t, e), worker.SweepSummary{}) // checked once per interval

	e.Fake.Accept("acme", "noah@acme.com", noah)
	clock.Advance(6*time.Hour + time.Minute)
	assertSummary(t, sweep(t, e), worker.SweepSummary{worker.OutcomeAccepted: 1})
	got := e.Entry("acme", "acct:"+noah)
	if got.Status != ledger.StatusGranted || !reflect.DeepEqual(got.Granted, []string{"developers", "readers"}) {
		t.Fatalf("ledger = %+v", got)
	}
	if m := e.Fake.GroupMembers("acme", "readers"); !reflect.DeepEqual(m, []string{noah}) {
		t.Fatalf("readers = %v", m)
	}
}

// signUpMany invites n people who are not workspace members.
func signUpMany(t *testing.T, e *testenv.Env, n int) []string {
	var ids []string
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("557058:person-%02d", i)
		ids = append(ids, id)
		assertAccepted(t, e.Webhook("user_created", "d-"+id, cloudUser(id, fmt.Sprintf("p%02d@acme.com", i))), "accepted")
	}
	e.WaitIdle()
	return ids
}

func TestThreeConcurrentSweepersResendEachInvitationOnce(t *testing.T) {
	clock := testenv.NewClock(t0)
	e := testenv.New(t, testenv.WithClock(clock), testenv.WithRules(everyoneReaders))
	ids := signUpMany(t, e, 12)
	clock.Advance(169 * time.Hour)

	var wg sync.WaitGroup
	sums := make([]worker.SweepSummary, 3)
	for i := range sums {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sums[i], _ = e.App.Worker().SweepOnce(context.Background(), fmt.Sprintf("sweeper-%d", i))
		}()
	}
	wg.Wait()
	resent := sums[0][worker.OutcomeResent] + sums[1][worker.OutcomeResent] + sums[2][worker.OutcomeResent]
	if resent != len(ids) {
		t.Fatalf("re-sends reported = %d (%v), want %d", resent, sums, len(ids))
	}
	perEmail := map[string]int{}
	for _, body := range invitationPuts(e.Fake.Fake) {
		perEmail[body]++
	}
	for body, n := range perEmail {
		if n != 2 {
			t.Errorf("%s sent %d times, want 2 (invitation + one re-send)", body, n)
		}
	}
	if len(perEmail) != len(ids) {
		t.Fatalf("people invited = %d", len(perEmail))
	}

	// The queued path: three schedulers fire the same tick; follow-ups are
	// queued once per person and the workers re-send once.
	clock.Advance(169 * time.Hour)
	tick := clock.Now().Truncate(15 * time.Minute)
	// Workers run meanwhile, so later sweepers may find fewer still due.
	for i := 0; i < 3; i++ {
		due, _, err := e.App.Worker().QueueFollowUps(context.Background(), tick)
		if err != nil || (i == 0 && due != len(ids)) {
			t.Fatalf("sweeper %d queued %d follow-ups, %v", i, due, err)
		}
	}
	e.WaitIdle()
	perEmail = map[string]int{}
	for _, body := range invitationPuts(e.Fake.Fake) {
		perEmail[body]++
	}
	for body, n := range perEmail {
		if n != 3 {
			t.Errorf("%s sent %d times, want 3", body, n)
		}
	}
	if info := e.QueueInfo(); info.Processed != int(12+12) { // 12 signups + 12 follow-ups
		t.Fatalf("tasks processed = %d, want 24 (follow-ups deduplicated)", info.Processed)
	}
}

func TestDeactivationRevokesOnlyWhatAutoinviteGranted(t *testing.T) {
	clock := testenv.NewClock(t0)
	e := testenv.New(t, testenv.WithClock(clock))
	e.Fake.AddMember("acme", mia, "readers") // an admin gave Mia readers by hand
	assertAccepted(t, e.Webhook("user_created", "d-mia", cloudUser(mia, "mia@acme.com")), "accepted")
	assertAccepted(t, e.Webhook("user_created", "d-noah", cloudUser(noah, "noah@acme.com")), "accepted")
	e.WaitIdle()
	got := e.Entry("acme", "acct:"+mia)
	if !reflect.DeepEqual(got.Granted, []string{"developers"}) || !reflect.DeepEqual(got.HandGiven, []string{"readers"}) {
		t.Fatalf("before: %+v", got)
	}
	e.Fake.ResetCalls()

	assertAccepted(t, e.Webhook("user_deleted", "d-mia-del", map[string]any{"accountId": mia}), "accepted")
	inactive := cloudUser(noah, "noah@acme.com")
	inactive["active"] = false
	assertAccepted(t, e.Webhook("user_updated", "d-noah-off", inactive), "accepted")
	e.WaitIdle()

	assertCalls(t, e.Fake.Fake, "DELETE /1.0/groups/acme/developers/members/"+mia)
	if m := e.Fake.GroupMembers("acme", "readers"); !reflect.DeepEqual(m, []string{mia}) {
		t.Fatalf("hand-given readers must stay: %v", m)
	}
	got = e.Entry("acme", "acct:"+mia)
	if got.Status != ledger.StatusRevoked || len(got.Granted) != 0 || !reflect.DeepEqual(got.HandGiven, []string{"readers"}) {
		t.Fatalf("mia after: %+v", got)
	}
	n := e.Entry("acme", "acct:"+noah)
	if n.Status != ledger.StatusCancelled || n.Invitations[0].State != ledger.InvitationCancelled || len(n.Waiting) != 0 {
		t.Fatalf("noah after: %+v", n)
	}
	clock.Advance(200 * time.Hour)
	assertSummary(t, sweep(t, e), worker.SweepSummary{}) // cancelled: never re-sent

	// Reactivation (newer than the deactivation) starts over: a new invitation.
	e.Fake.ResetCalls()
	inactive["active"] = true
	assertAccepted(t, e.WebhookAt("user_updated", "d-noah-on", 1763800000000+1000, inactive), "accepted")
	e.WaitIdle()
	if n := len(invitationPuts(e.Fake.Fake)); n != 1 {
		t.Fatalf("invitations after reactivation = %d", n)
	}
	if got := e.Entry("acme", "acct:"+noah); got.Status != ledger.StatusInvited || len(got.PendingGroups()) != 1 {
		t.Fatalf("noah reactivated: %+v", got)
	}
}

func TestReportModeChangesNothing(t *testing.T) {
	e := testenv.New(t, testenv.WithRules(`
workspaces:
  - workspace: acme
    revoke: report
    rules:
      - {name: everyone, match: {}, groups: [readers]}
`))
	assertAccepted(t, e.Webhook("user_created", "d-mia", cloudUser(mia, "mia@acme.com")), "accepted")
	e.WaitIdle()
	before := e.Entry("acme", "acct:"+mia)
	e.Fake.ResetCalls()
	assertAccepted(t, e.Webhook("user_deleted", "d-mia-del", map[string]any{"accountId": mia}), "accepted")
	e.WaitIdle()
	assertCalls(t, e.Fake.Fake)
	after := e.Entry("acme", "acct:"+mia)
	if after.Status != before.Status || !reflect.DeepEqual(after.Granted, before.Granted) {
		t.Fatalf("report mode changed the entry: %+v", after)
	}
	hist := e.History("acme", "acct:"+mia)
	last := hist[len(hist)-1]
	if last.Action != "revocation-reported" || last.Detail != "would cancel invitations [] and remove groups [readers]" {
		t.Fatalf("history = %+v", last)
	}
	if m := e.Fake.GroupMembers("acme", "readers"); !reflect.DeepEqual(m, []string{mia}) {
		t.Fatalf("readers = %v", m)
	}
}

func TestCircuitBreakerHoldsRemovalsUntilResumed(t *testing.T) {
	e := testenv.New(t, testenv.WithRules(`
revocation: {max_removals_per_hour: 2}
workspaces:
  - workspace: acme
    rules:
      - {name: everyone, match: {}, groups: [readers]}
`))
	var ids []string
	for i := 0; i < 4; i++ {
		id := fmt.Sprintf("557058:member-%d", i)
		ids = append(ids, id)
		e.Fake.AddMember("acme", id)
	}
	for _, id := range ids[:3] {
		assertAccepted(t, e.Webhook("user_created", "c-"+id, cloudUser(id, "")), "accepted")
	}
	e.WaitIdle()
	for _, id := range ids[:3] {
		assertAccepted(t, e.Webhook("user_deleted", "x-"+id, map[string]any{"accountId": id}), "accepted")
	}
	e.WaitIdle()
	if m := e.Fake.GroupMembers("acme", "readers"); len(m) != 1 {
		t.Fatalf("after 3 deactivations with a limit of 2, readers = %v (want 1 left)", m)
	}
	held := e.Fake.GroupMembers("acme", "readers")[0]
	entry := e.Entry("acme", "acct:"+held)
	if entry.Status != ledger.StatusRevocationHeld || !reflect.DeepEqual(entry.HeldRemovals, []string{"readers"}) {
		t.Fatalf("held entry = %+v", entry)
	}
	tripped, _, nHeld, err := e.App.Ledger().Breaker(context.Background(), "acme")
	if err != nil || !tripped || nHeld != 1 {
		t.Fatalf("breaker = %v held %d, %v", tripped, nHeld, err)
	}

	// Adds keep working while removals are paused.
	assertAccepted(t, e.Webhook("user_created", "c-"+ids[3], cloudUser(ids[3], "")), "accepted")
	e.WaitIdle()
	if got := e.Entry("acme", "acct:"+ids[3]); got.Status != ledger.StatusGranted {
		t.Fatalf("add during breaker: %+v", got)
	}

	removed, err := e.App.Worker().ResumeRevocations(context.Background(), "acme", "cli:ops")
	if err != nil || removed != 1 {
		t.Fatalf("resume = %d, %v", removed, err)
	}
	if m := e.Fake.GroupMembers("acme", "readers"); !reflect.DeepEqual(m, []string{ids[3]}) {
		t.Fatalf("readers after resume = %v", m)
	}
	entry = e.Entry("acme", "acct:"+held)
	hist := e.History("acme", "acct:"+held)
	if entry.Status != ledger.StatusRevoked || len(entry.HeldRemovals) != 0 || hist[len(hist)-1].Actor != "cli:ops" {
		t.Fatalf("after resume: %+v", entry)
	}
	if tripped, _, _, _ := e.App.Ledger().Breaker(context.Background(), "acme"); tripped {
		t.Fatal("breaker still open after resume")
	}
}

func TestRuleChangeNeverRevokes(t *testing.T) {
	// A workspace dropped from the config only reports on deactivation.
	e := testenv.New(t, testenv.WithRules(`
workspaces:
  - workspace: other
    rules:
      - {name: everyone, match: {}, groups: [readers]}
`))
	entry := &ledger.Entry{Workspace: "acme", PersonID: "acct:" + mia, AccountID: mia, Status: ledger.StatusGranted, Granted: []string{"readers"}}
	if err := e.App.Ledger().PutUnlocked(context.Background(), entry); err != nil {
		t.Fatal(err)
	}
	e.Fake.AddMember("acme", mia, "readers")
	assertAccepted(t, e.Webhook("user_deleted", "x", map[string]any{"accountId": mia}), "accepted")
	e.WaitIdle()
	assertCalls(t, e.Fake.Fake)
	if !strings.Contains(e.Logs.String(), "deactivated (report mode): nothing changed") {
		t.Fatal("report not logged")
	}
}

var _ = jobs.ReasonDue
