package app_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/internal/redistest"
	"github.com/autoinvite/autoinvite/internal/testenv"
	"github.com/autoinvite/autoinvite/ledger"
)

const modelRules = `
bitbucket: {timeout: 250ms}
revocation: {max_removals_per_hour: 1000000}   # the breaker is tested elsewhere
rate_limits: {bitbucket: {requests: 0}, bitbucket_invitations: {requests: 0}, jira: {requests: 0}}   # so is the budget
workspaces:
  - workspace: acme
    rules:
      - {name: staff, match: {email_domains: [model.test]}, groups: [developers, readers]}
`

type modelEvent struct {
	person   int
	kind     string // user_created, user_updated, user_deleted
	active   bool
	ts       int64
	delivery string
}

// The randomized model test: many people, created/updated/deleted events
// delivered out of order, duplicated and replayed under new delivery ids,
// while Bitbucket fails some calls and applies others after the client gave
// up. Afterwards the invariants must hold. CI runs a few seeds of 120 events;
// AUTOINVITE_MODEL_EVENTS=10000 (and AUTOINVITE_MODEL_SEED) run a long one.
func TestModelOutOfOrderEventsKeepInvariants(t *testing.T) {
	events, seeds := 120, []uint64{1, 2, 3}
	if v, err := strconv.Atoi(os.Getenv("AUTOINVITE_MODEL_EVENTS")); err == nil && v > 0 {
		events = v
	}
	if v, err := strconv.ParseUint(os.Getenv("AUTOINVITE_MODEL_SEED"), 10, 64); err == nil {
		seeds = []uint64{v}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed-%d-events-%d", seed, events), func(t *testing.T) { runModel(t, seed, events) })
	}
}

func runModel(t *testing.T, seed uint64, total int) {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	e := testenv.New(t, testenv.WithRules(modelRules))
	people := max(total/6, 2)
	account := func(i int) string { return fmt.Sprintf("557058:model-%05d", i) }
	email := func(i int) string { return fmt.Sprintf("p%05d@model.test", i) }

	// Each person's story, in Jira's order.
	var story []modelEvent
	newest := map[int]modelEvent{}
	for i := range people {
		if i%2 == 0 {
			e.Fake.AddMember("acme", account(i))
		}
		ts := int64(1763800000000) + int64(rng.IntN(1000))*1000
		ev := modelEvent{person: i, kind: "user_created", active: true, ts: ts}
		for n := 0; n < total/people; n++ {
			ev.delivery = fmt.Sprintf("m%d-%d-%d", seed, i, n)
			story = append(story, ev)
			newest[i] = ev
			ts += int64(1+rng.IntN(5)) * 1000
			switch r := rng.IntN(10); {
			case r < 4:
				ev = modelEvent{person: i, kind: "user_updated", active: ev.active, ts: ts}
			case r < 6:
				ev = modelEvent{person: i, kind: "user_deleted", active: false, ts: ts}
			case r < 8:
				ev = modelEvent{person: i, kind: "user_updated", active: !ev.active, ts: ts}
			default:
				ev = modelEvent{person: i, kind: "user_created", active: true, ts: ts}
			}
		}
	}
	// Delivery: shuffled, some re-delivered (same id), some replayed (new id).
	deliveries := slices.Clone(story)
	for _, ev := range story {
		switch r := rng.IntN(10); {
		case r == 0:
			deliveries = append(deliveries, ev)
		case r == 1:
			ev.delivery += "-replayed"
			deliveries = append(deliveries, ev)
		}
	}
	rng.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })

	// Bitbucket misbehaves: some 503s, some writes applied after the client's timeout.
	pick := func() float64 { return rand.Float64() }
	e.Fake.InjectFault(fake.Fault{PathPrefix: "/1.0/", Status: http.StatusServiceUnavailable, Rate: 0.08, Rand: pick})
	e.Fake.InjectFault(fake.Fault{Method: "PUT", PathPrefix: "/1.0/", Delay: 400 * time.Millisecond, Apply: true, Rate: 0.04, Rand: pick})

	var wg sync.WaitGroup
	work := make(chan modelEvent)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ev := range work {
				u := map[string]any{"accountId": account(ev.person), "accountType": "atlassian", "active": ev.active}
				if ev.kind != "user_deleted" {
					u["emailAddress"] = email(ev.person)
				}
				if r := e.WebhookAt(ev.kind, ev.delivery, ev.ts, u); r.Status != http.StatusAccepted {
					t.Errorf("%s %s: status %d %s", ev.kind, ev.delivery, r.Status, r.Raw)
				}
			}
		}()
	}
	for _, ev := range deliveries {
		work <- ev
	}
	close(work)
	wg.Wait()
	if _, idle := redistest.WaitQueueIdle(e.App.Redis(), e.App.Queue(), 30*time.Second+time.Duration(len(deliveries))*20*time.Millisecond); !idle {
		t.Fatal("the queue did not drain")
	}

	// Invariants.
	emailsSent := map[string]int{}
	for _, c := range e.Fake.CallsTo("PUT", "/1.0/users/acme/invitations") {
		if c.Status >= 200 && c.Status < 300 {
			var body struct{ Email string }
			_ = json.Unmarshal([]byte(c.Body), &body)
			emailsSent[body.Email]++
		}
	}
	members := map[string][]string{}
	for _, g := range []string{"developers", "readers"} {
		for _, a := range e.Fake.GroupMembers("acme", g) {
			members[a] = append(members[a], g)
		}
	}
	deleted, granted, invited := 0, 0, 0
	for i := range people {
		entry := e.Entry("acme", "acct:"+account(i))
		last := newest[i]
		gone := last.kind == "user_deleted" || !last.active
		if gone {
			deleted++
			if entry != nil && (len(entry.Granted) > 0 || entry.AnyPendingInvitation()) {
				t.Errorf("person %d: newest event is %s (inactive, ts %d) but the ledger holds %v, pending %v; history %+v", i, last.kind, last.ts, entry.Granted, entry.PendingGroups(), e.History("acme", "acct:"+account(i)))
			}
			if testing.Verbose() && entry != nil && entry.AnyPendingInvitation() {
				recs, _ := e.App.Ledger().ReadAudit(t.Context(), time.Time{}, "", 100000)
				for _, r := range recs {
					if r.PersonID == "acct:"+account(i) {
						t.Logf("  audit %s %s %s %s", r.Action, r.Group, r.Detail, r.Time.Format("15:04:05.000"))
					}
				}
				for _, ev := range story {
					if ev.person == i {
						t.Logf("  story %s active=%v ts=%d %s", ev.kind, ev.active, ev.ts, ev.delivery)
					}
				}
			}
			if len(members[account(i)]) > 0 {
				t.Errorf("person %d: newest event is %s (inactive) but Bitbucket still has them in %v", i, last.kind, members[account(i)])
			}
		}
		if n := emailsSent[email(i)]; n > 1 {
			t.Errorf("person %d: %d invitation emails in one expiry period", i, n)
		}
		for _, g := range members[account(i)] {
			if entry == nil || !entry.HasGranted(g) {
				t.Errorf("person %d: in %s in Bitbucket, but the ledger does not record it as autoinvite's grant: %+v", i, g, entry)
			}
		}
		if entry != nil {
			granted += len(entry.Granted)
			if entry.Status == ledger.StatusInvited {
				invited++
			}
		}
	}
	stale := 0
	recs, err := e.App.Ledger().ReadAudit(t.Context(), time.Time{}, "", int64(20*len(deliveries)+1000))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Action == ledger.ActionStaleEvent {
			stale++
		}
	}
	t.Logf("seed %d: %d people, %d events, %d deliveries; newest inactive %d; groups held %d; invited %d; invitation emails %d; stale events ignored %d; Bitbucket calls %d",
		seed, people, len(story), len(deliveries), deleted, granted, invited, sumValues(emailsSent), stale, len(e.Fake.Calls()))
}

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
