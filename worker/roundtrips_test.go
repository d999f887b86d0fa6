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
