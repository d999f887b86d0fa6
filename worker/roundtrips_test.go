package worker_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/ledger"
)

// personCommands records the Redis commands that name one person.
type personCommands struct {
	person string
	mu     sync.Mutex
	seen   []string
}

func (p *personCommands) DialHook(next redis.DialHook) redis.DialHook { return next }
func (p *personCommands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		p.note(cmd)
		return next(ctx, cmd)
	}
}
func (p *personCommands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			p.note(c)
		}
		return next(ctx, cmds)
	}
}

// note records a command whose first key is one of the person's.
func (p *personCommands) note(cmd redis.Cmder) {
	args := cmd.Args()
	if len(args) < 2 {
		return
	}
	key := fmt.Sprint(args[1])
	if name := cmd.Name(); (name == "evalsha" || name == "eval") && len(args) > 3 {
		key = fmt.Sprint(args[3])
	}
	if strings.Contains(key, p.person) {
		p.mu.Lock()
		p.seen = append(p.seen, cmd.Name()+" "+key)
		p.mu.Unlock()
	}
}

// A member's first signup costs the ledger three round trips: the lock, the
// read and the event's watermark in one; the intent before the adds; the
// result, its audit records and the unlock in one.
func TestFirstSignupLedgerRoundTrips(t *testing.T) {
	h := newHarness(t, inviteRules, time.Minute)
	// Another member first, so that the scripts are loaded.
	h.fake.AddMember("acme", "557058:warm-up")
	if err := h.w.ProcessUserEvent(context.Background(), signup("557058:warm-up", "warm@acme.com")); err != nil {
		t.Fatal(err)
	}
	mia := fake.DemoMemberAccountID
	counter := &personCommands{person: mia}
	h.rdb.AddHook(counter)
	if err := h.w.ProcessUserEvent(context.Background(), signup(mia, "mia@acme.com")); err != nil {
		t.Fatal(err)
	}
	if got := counter.seen; len(got) != 3 {
		t.Fatalf("ledger round trips naming the person: %d %v, want 3", len(got), got)
	}
	if n, _ := h.rdb.Keys(context.Background(), "*lock:acct:"+mia).Result(); len(n) != 0 {
		t.Fatalf("the person's lock is still held: %v", n)
	}
	e, _ := h.ledger.Get(context.Background(), "acme", "acct:"+mia)
	if e == nil || !e.HasGranted("developers") {
		t.Fatalf("entry: %+v", e)
	}
}

// roundTrips counts every Redis round trip (a pipeline is one).
type roundTrips struct {
	mu    sync.Mutex
	trips []string
}

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.add(cmd.Name())
		return next(ctx, cmd)
	}
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		names := make([]string, len(cmds))
		for i, c := range cmds {
			names[i] = c.Name()
		}
		r.add("pipeline(" + strings.Join(names, ",") + ")")
		return next(ctx, cmds)
	}
}
func (r *roundTrips) add(s string) {
	r.mu.Lock()
	r.trips = append(r.trips, s)
	r.mu.Unlock()
}

// In a burst a fresh member listing answers the membership question in the
// lock's round trip: a member's signup costs three round trips in all (the
// lock with the entry, the watermark and the cache's answer; the intent
// before the adds; the result with its audit records and the unlock), and
// Bitbucket only the two adds.
func TestListedMemberSignupRoundTrips(t *testing.T) {
	e := newMemberEnv(t, memberRules)
	for _, id := range ids("m", 250) {
		e.fake.AddMember("acme", id)
	}
	e.waiting(t, "557058:a", "557058:b", "557058:c")
	e.signup(t, "557058:a") // lists (3 questions, 3 pages), loads the scripts
	e.fake.ResetCalls()
	counter := &roundTrips{}
	e.rdb.AddHook(counter)
	e.signup(t, "557058:m007")
	if got := counter.trips; len(got) != 3 || !strings.HasPrefix(got[0], "pipeline(evalsha,hmget,sismember,scard,get,zrem)") {
		t.Fatalf("round trips: %d %v, want 3, the first the lock's pipeline with the cache's reads", len(got), got)
	}
	if got, want := countMemberCalls(e.fake.Fake), (memberCalls{adds: 2}); got != want {
		t.Fatalf("calls = %+v, want %+v", got, want)
	}
	if s := e.status(t, "557058:m007"); s != ledger.StatusGranted {
		t.Fatalf("status %s, want granted", s)
	}
}
