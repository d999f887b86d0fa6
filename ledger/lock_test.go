package ledger

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/autoinvite/autoinvite/internal/redistest"
)

// testStore is a ledger on a Redis of the test's own.
func testStore(t *testing.T, opts Options) (*Store, *redistest.Redis, redis.UniversalClient) {
	t.Helper()
	r := redistest.New(t)
	rdb := r.Client(t)
	return New(rdb, r.Prefix, opts), r, rdb
}

// expire makes a key's TTL run out now, on miniredis or a real server.
func expire(t *testing.T, r *redistest.Redis, rdb redis.UniversalClient, key string) {
	t.Helper()
	ctx := context.Background()
	if err := rdb.PExpire(ctx, key, time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	if r.Mini != nil {
		r.Mini.FastForward(10 * time.Millisecond)
	} else {
		time.Sleep(10 * time.Millisecond)
	}
	if n, _ := rdb.Exists(ctx, key).Result(); n != 0 {
		t.Fatalf("%s did not expire", key)
	}
}

func TestLockLostToLaterHolderRefusesWritesAndKeepsTheirLock(t *testing.T) {
	s, r, rdb := testStore(t, Options{})
	ctx := context.Background()
	const person = "acct:557058:anna"
	// Both holders give the same owner name, as follow-ups used to ("followup"):
	// their tokens must still differ.
	a, err := s.Lock(ctx, person, "followup", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	actx := a.Context(ctx)

	// A stalls past its lease (a GC pause, a partition): the key expires and B takes it.
	expire(t, r, rdb, s.lockKey(person))
	b, err := s.Lock(ctx, person, "followup", time.Minute)
	if err != nil {
		t.Fatalf("second holder after the lease ran out: %v", err)
	}
	defer b.Unlock()
	if a.Token() == b.Token() {
		t.Fatalf("two holders share the token %q", a.Token())
	}

	// A wakes up and writes what it decided: refused, nothing written.
	stale := &Entry{Workspace: "acme", PersonID: person, Email: "anna@acme.com", Status: StatusInvited}
	stale.Record(time.Now(), "sweep", ActionInvitationResent, "readers", "")
	err = s.Put(actx, stale)
	if !errors.Is(err, ErrLockLost) {
		t.Fatalf("stale holder's Put = %v, want ErrLockLost", err)
	}
	if got, _ := s.Get(ctx, "acme", person); got != nil {
		t.Fatalf("stale holder's entry was written: %+v", got)
	}
	if n, _ := rdb.XLen(ctx, s.AuditKey()).Result(); n != 0 {
		t.Fatalf("stale holder's audit records were written: %d", n)
	}
	if !errors.Is(a.Err(), ErrLockLost) || !errors.Is(context.Cause(actx), ErrLockLost) {
		t.Fatalf("stale holder not told: lock err %v, ctx cause %v", a.Err(), context.Cause(actx))
	}

	// A's late unlock must not free B's lock.
	a.Unlock()
	if got, _ := rdb.Get(ctx, s.lockKey(person)).Result(); got != b.Token() {
		t.Fatalf("after the stale unlock the lock holds %q, want B's %q", got, b.Token())
	}
	if _, err := s.Lock(ctx, person, "third", time.Minute); !errors.Is(err, ErrBusy) {
		t.Fatalf("a third holder got in while B holds the lock: %v", err)
	}
	fresh := &Entry{Workspace: "acme", PersonID: person, Status: StatusGranted}
	if err := s.Put(b.Context(ctx), fresh); err != nil {
		t.Fatalf("the holder's Put: %v", err)
	}
	if got, _ := s.Get(ctx, "acme", person); got == nil || got.Status != StatusGranted {
		t.Fatalf("entry = %+v", got)
	}
	b.Unlock()
	if n, _ := rdb.Exists(ctx, s.lockKey(person)).Result(); n != 0 {
		t.Fatal("the holder's unlock left the key")
	}
}

func TestRenewalFindingTheLockTakenCancelsTheHolder(t *testing.T) {
	for _, c := range []struct {
		name  string
		steal func(ctx context.Context, rdb redis.UniversalClient, key string) error
	}{
		{"expired", func(ctx context.Context, rdb redis.UniversalClient, key string) error { return rdb.Del(ctx, key).Err() }},
		{"taken by another", func(ctx context.Context, rdb redis.UniversalClient, key string) error {
			return rdb.Set(ctx, key, "task-b:0123456789abcdef", time.Minute).Err()
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, _, rdb := testStore(t, Options{})
			ctx := context.Background()
			l, err := s.Lock(ctx, "acct:ben", "task-a", 150*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Unlock()
			hctx := l.Context(ctx)
			// Renewals keep the lock well past its lease.
			time.Sleep(400 * time.Millisecond)
			if err := hctx.Err(); err != nil || l.Err() != nil {
				t.Fatalf("renewed lock reported lost: %v %v", err, l.Err())
			}
			if err := c.steal(ctx, rdb, s.lockKey("acct:ben")); err != nil {
				t.Fatal(err)
			}
			select {
			case <-hctx.Done():
			case <-time.After(2 * time.Second):
				t.Fatal("holder's context not cancelled after the renewal failed")
			}
			if !errors.Is(context.Cause(hctx), ErrLockLost) || !errors.Is(l.Err(), ErrLockLost) {
				t.Fatalf("cause %v, lock err %v: want ErrLockLost", context.Cause(hctx), l.Err())
			}
			select {
			case <-l.Done():
			default:
				t.Fatal("Done not closed")
			}
			// A context asked for after the loss starts cancelled.
			if late := l.Context(ctx); !errors.Is(context.Cause(late), ErrLockLost) {
				t.Fatalf("late context cause = %v", context.Cause(late))
			}
			if err := s.Put(hctx, &Entry{Workspace: "acme", PersonID: "acct:ben"}); !errors.Is(err, ErrLockLost) {
				t.Fatalf("Put after the loss = %v", err)
			}
		})
	}
}

func TestPutNeedsTheLock(t *testing.T) {
	s, _, _ := testStore(t, Options{})
	ctx := context.Background()
	e := &Entry{Workspace: "acme", PersonID: "acct:cleo"}
	if err := s.Put(ctx, e); !errors.Is(err, ErrNotLocked) {
		t.Fatalf("Put without a lock = %v, want ErrNotLocked", err)
	}
	other, err := s.Lock(ctx, "acct:dan", "t", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Unlock()
	if err := s.Put(other.Context(ctx), e); !errors.Is(err, ErrNotLocked) {
		t.Fatalf("Put under another person's lock = %v, want ErrNotLocked", err)
	}
	if err := s.PutUnlocked(ctx, e); err != nil {
		t.Fatalf("explicit unlocked Put: %v", err)
	}
}

// The script writes what the MULTI did: entry, indexes, audit records.
func TestLockedPutWritesEntryIndexesAndAudit(t *testing.T) {
	for _, dry := range []bool{false, true} {
		s, _, rdb := testStore(t, Options{DryRun: dry})
		ctx := context.Background()
		l, entries, err := s.LockAndGet(ctx, "acct:eve", "task-1", time.Minute, []string{"acme"})
		if err != nil || entries["acme"] != nil {
			t.Fatalf("LockAndGet = %v, %v", entries, err)
		}
		lctx := l.Context(ctx)
		now := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
		e := &Entry{Workspace: "acme", PersonID: "acct:eve", AccountID: "557058:eve", Email: "Eve@Acme.com", Status: StatusInvited,
			NextCheckAt: now.Add(time.Hour), RulesByGroup: map[string][]string{"readers": {"everyone"}},
			Invitations: []Invitation{{Group: "readers", SentAt: now, ExpiresAt: now.Add(48 * time.Hour), State: InvitationPending}}}
		e.Record(now, "webhook", ActionDecided, "", "readers<-everyone")
		e.Record(now, "webhook", ActionInvitationSent, "readers", "")
		if err := s.Put(lctx, e); err != nil {
			t.Fatal(err)
		}
		audit, err := s.ReadAudit(ctx, time.Time{}, "", 10)
		if err != nil || len(audit) != 2 || audit[1].Action != ActionInvitationSent || audit[1].Rules[0] != "everyone" || audit[1].Email != "Eve@Acme.com" {
			t.Fatalf("dry=%v audit = %+v, %v", dry, audit, err)
		}
		if dry {
			if audit[0].Outcome != OutcomeDryRun {
				t.Fatalf("dry run outcome = %q", audit[0].Outcome)
			}
			if n, _ := rdb.Exists(ctx, s.personValueKey("acct:eve")).Result(); n != 0 {
				t.Fatal("dry run wrote the entry")
			}
			l.Unlock()
			continue
		}
		if got, _ := s.Get(ctx, "acme", "acct:eve"); got == nil || got.Email != "Eve@Acme.com" {
			t.Fatalf("entry = %+v", got)
		}
		if id, _ := s.PersonByEmail(ctx, "eve@acme.com"); id != "acct:eve" {
			t.Fatalf("email index = %q", id)
		}
		if list, _ := s.List(ctx, ""); len(list) != 1 {
			t.Fatalf("list = %d", len(list))
		}
		if p, _ := s.Person(ctx, "acct:eve"); len(p) != 1 {
			t.Fatalf("person = %d", len(p))
		}
		due, _ := s.DueAt(ctx, s.DueKey(), now.Add(48*time.Hour), 10)
		check, _ := s.DueAt(ctx, s.CheckKey(), now.Add(time.Hour), 10)
		if len(due) != 1 || len(check) != 1 {
			t.Fatalf("due %v check %v", due, check)
		}
		// Settled: out of both indexes.
		e.SetPendingInvitations(InvitationAccepted)
		if err := s.Put(lctx, e); err != nil {
			t.Fatal(err)
		}
		due, _ = s.DueAt(ctx, s.DueKey(), now.Add(480*time.Hour), 10)
		check, _ = s.DueAt(ctx, s.CheckKey(), now.Add(480*time.Hour), 10)
		if len(due) != 0 || len(check) != 0 {
			t.Fatalf("after acceptance: due %v check %v", due, check)
		}
		if n, _ := rdb.XLen(ctx, s.AuditKey()).Result(); n != 2 {
			t.Fatalf("a Put without new events added audit records: %d", n)
		}
		l.Unlock()
	}
}

// LockAndGet reads the person's event watermark in the same round trip;
// Lock does not (the caller reads it itself).
func TestLockAndGetReadsTheWatermark(t *testing.T) {
	s, _, _ := testStore(t, Options{})
	ctx := context.Background()
	l, _, err := s.LockAndGet(ctx, "acct:finn", "task-1", time.Minute, []string{"acme"})
	if err != nil {
		t.Fatal(err)
	}
	if wm, ok := l.Watermark(); !ok || wm != (Watermark{}) {
		t.Fatalf("no watermark yet: %+v, %v", wm, ok)
	}
	l.Unlock()
	if err := s.SetWatermark(ctx, "acct:finn", Watermark{At: 1763800003000, Deleted: true}); err != nil {
		t.Fatal(err)
	}
	l, _, err = s.LockAndGet(ctx, "acct:finn", "task-2", time.Minute, []string{"acme", "beta"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	if wm, ok := l.Watermark(); !ok || wm != (Watermark{At: 1763800003000, Deleted: true}) {
		t.Fatalf("watermark read with the lock = %+v, %v", wm, ok)
	}
	other, err := s.Lock(ctx, "acct:gus", "task-3", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Unlock()
	if _, ok := other.Watermark(); ok {
		t.Fatal("Lock claims to have read a watermark")
	}
}

// LockAndApply records the event as the watermark in the lock's round trip,
// by the same rule as Watermark.Older: never an older event, never a
// non-deactivating event over a deletion of the same instant.
func TestLockAndApplyRecordsOnlyNewerEvents(t *testing.T) {
	s, _, _ := testStore(t, Options{})
	ctx := context.Background()
	const at = int64(1763800003000)
	for _, c := range []struct {
		name          string
		before, event Watermark
		applied       bool
		after         Watermark
	}{
		{"first event", Watermark{}, Watermark{At: at}, true, Watermark{At: at}},
		{"newer", Watermark{At: at}, Watermark{At: at + 1}, true, Watermark{At: at + 1}},
		{"same event again", Watermark{At: at}, Watermark{At: at}, false, Watermark{At: at}},
		{"older", Watermark{At: at}, Watermark{At: at - 1}, false, Watermark{At: at}},
		{"deletion at the same instant", Watermark{At: at}, Watermark{At: at, Deleted: true}, true, Watermark{At: at, Deleted: true}},
		{"update at a deletion's instant", Watermark{At: at, Deleted: true}, Watermark{At: at}, false, Watermark{At: at, Deleted: true}},
		{"newer than a deletion", Watermark{At: at, Deleted: true}, Watermark{At: at + 1}, true, Watermark{At: at + 1}},
	} {
		person := "acct:" + strings.ReplaceAll(c.name, " ", "-")
		if c.before.At != 0 {
			if err := s.SetWatermark(ctx, person, c.before); err != nil {
				t.Fatal(err)
			}
		}
		l, _, err := s.LockAndApply(ctx, person, "task", time.Minute, []string{"acme"}, c.event)
		if err != nil {
			t.Fatal(err)
		}
		l.Unlock()
		if wm, _ := l.Watermark(); wm != c.before || l.Applied() != c.applied {
			t.Errorf("%s: lock read %+v applied %v, want %+v applied %v", c.name, wm, l.Applied(), c.before, c.applied)
		}
		if got, err := s.GetWatermark(ctx, person); err != nil || got != c.after {
			t.Errorf("%s: watermark %+v (%v), want %+v", c.name, got, err, c.after)
		}
		if c.before.Older(c.event) == c.applied && c.event != c.before {
			t.Errorf("%s: Watermark.Older disagrees with the script", c.name)
		}
	}
}

// A task's last write releases the lock in the same script: the next holder
// gets the person at once, the writer can no longer write, and its deferred
// Unlock touches nothing. A stale holder's PutAndUnlock neither writes nor
// releases the later holder's lock.
func TestPutAndUnlock(t *testing.T) {
	s, r, rdb := testStore(t, Options{})
	ctx := context.Background()
	const person = "acct:557058:ida"
	a, err := s.Lock(ctx, person, "task-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	actx := a.Context(ctx)
	e := &Entry{Workspace: "acme", PersonID: person, Email: "ida@acme.com", Status: StatusGranted, Granted: []string{"developers"}}
	e.Record(time.Now(), "webhook", ActionGroupAdded, "developers", "")
	if err := s.PutAndUnlock(actx, e); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, "acme", person); got == nil || got.Status != StatusGranted {
		t.Fatalf("entry after PutAndUnlock: %+v", got)
	}
	if n, _ := rdb.XLen(ctx, s.AuditKey()).Result(); n != 1 {
		t.Fatalf("audit records: %d, want 1", n)
	}
	if n, _ := rdb.Exists(ctx, s.lockKey(person)).Result(); n != 0 {
		t.Fatal("the lock is still held after PutAndUnlock")
	}
	if actx.Err() == nil {
		t.Fatal("the released holder's context is not cancelled")
	}
	b, err := s.Lock(ctx, person, "task-b", time.Minute)
	if err != nil {
		t.Fatalf("next holder: %v", err)
	}
	a.Unlock() // the first task's deferred Unlock
	if tok, _ := rdb.Get(ctx, s.lockKey(person)).Result(); tok != b.Token() {
		t.Fatalf("lock holds %q after the old holder's Unlock, want the next holder's", tok)
	}
	if err := s.Put(actx, e); err == nil {
		t.Fatal("a write after PutAndUnlock went through")
	}

	// b stalls, c takes over; b's last write must not land nor free c's lock.
	bctx := b.Context(ctx)
	expire(t, r, rdb, s.lockKey(person))
	c, err := s.Lock(ctx, person, "task-c", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Unlock()
	stale := &Entry{Workspace: "acme", PersonID: person, Status: StatusRevoked}
	if err := s.PutAndUnlock(bctx, stale); !errors.Is(err, ErrLockLost) {
		t.Fatalf("stale PutAndUnlock = %v, want ErrLockLost", err)
	}
	if got, _ := s.Get(ctx, "acme", person); got == nil || got.Status != StatusGranted {
		t.Fatalf("stale PutAndUnlock wrote: %+v", got)
	}
	if tok, _ := rdb.Get(ctx, s.lockKey(person)).Result(); tok != c.Token() {
		t.Fatalf("lock holds %q, want the current holder's", tok)
	}
	b.Unlock()
}

// Reads sent along the lock's script come back in its round trip, also from
// a server that lost its scripts (restarted, failed over): the script is
// loaded again and the whole pipeline resent, the lock taken once.
func TestLockAndApplyCarriesOtherReadsAlong(t *testing.T) {
	s, r, rdb := testStore(t, Options{})
	ctx := context.Background()
	key := "{" + r.Prefix + "}:along"
	if err := rdb.Set(ctx, key, "carried", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for i, flush := range []bool{false, true} {
		if flush {
			if r.Mini == nil {
				t.Log("a real server's scripts are shared with others: not flushed")
				continue
			}
			if err := rdb.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
		var got *redis.StringCmd
		person := "acct:along-" + string(rune('a'+i))
		lock, entries, err := s.LockAndApply(ctx, person, "task", time.Minute, []string{"acme"}, Watermark{At: 5},
			func(p redis.Pipeliner) { got = p.Get(ctx, key) })
		if err != nil {
			t.Fatalf("flush %v: %v", flush, err)
		}
		if got.Val() != "carried" || entries["acme"] != nil || !lock.Applied() {
			t.Fatalf("flush %v: along %q, entries %v, applied %v", flush, got.Val(), entries, lock.Applied())
		}
		if _, _, err := s.LockAndApply(ctx, person, "other", time.Minute, nil, Watermark{}); !errors.Is(err, ErrBusy) {
			t.Fatalf("flush %v: second lock: %v, want busy", flush, err)
		}
		lock.Unlock()
	}
}

// The watermark is a line of the person's value, not a key of its own: it
// survives the entry's writes, keeps the number line first, and one written
// by the old format (its own key) is read and moved into the value when a
// newer event is recorded.
func TestWatermarkLivesInThePersonsValue(t *testing.T) {
	s, _, rdb := testStore(t, Options{})
	ctx := context.Background()
	person := "acct:wm"
	oldKey := s.watermarkKey(person)
	if err := rdb.Set(ctx, oldKey, "100:deleted", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if wm, err := s.GetWatermark(ctx, person); err != nil || wm != (Watermark{At: 100, Deleted: true}) {
		t.Fatalf("old-format watermark: %+v, %v", wm, err)
	}
	lock, _, err := s.LockAndApply(ctx, person, "t1", time.Minute, []string{"acme"}, Watermark{At: 200})
	if err != nil || !lock.Applied() {
		t.Fatalf("lock: %v, applied %v", err, lock != nil && lock.Applied())
	}
	if wm, _ := lock.Watermark(); wm != (Watermark{At: 100, Deleted: true}) {
		t.Fatalf("watermark before: %+v", wm)
	}
	if n, _ := rdb.Exists(ctx, oldKey).Result(); n != 0 {
		t.Fatal("the old-format key outlived the move")
	}
	e := &Entry{Workspace: "acme", PersonID: person, AccountID: "wm", Status: StatusGranted, CreatedAt: time.Unix(1, 0)}
	if err := s.PutAndUnlock(lock.Context(ctx), e); err != nil {
		t.Fatal(err)
	}
	v, _ := rdb.Get(ctx, s.personValueKey(person)).Result()
	if !strings.HasPrefix(v, "#") || !strings.Contains(v, "\n@200\n") || numberOf(v) == "" {
		t.Fatalf("value %q: want the number line, then the watermark", v)
	}
	if err := s.SetWatermark(ctx, person, Watermark{At: 300, Deleted: true}); err != nil {
		t.Fatal(err)
	}
	if wm, err := s.GetWatermark(ctx, person); err != nil || wm != (Watermark{At: 300, Deleted: true}) {
		t.Fatalf("after set: %+v, %v", wm, err)
	}
	got, err := s.Get(ctx, "acme", person)
	if err != nil || got == nil || got.Status != StatusGranted {
		t.Fatalf("entry after the watermark moves: %+v, %v", got, err)
	}
	// A stale event changes nothing.
	lock, _, err = s.LockAndApply(ctx, person, "t2", time.Minute, []string{"acme"}, Watermark{At: 250})
	if err != nil || lock.Applied() {
		t.Fatalf("stale event: %v, applied %v", err, lock != nil && lock.Applied())
	}
	lock.Unlock()
	if v2, _ := rdb.Get(ctx, s.personValueKey(person)).Result(); strings.Count(v2, "\n@") != 1 || !strings.Contains(v2, "\n@300:deleted\n") {
		t.Fatalf("value %q: want one watermark line, 300:deleted", v2)
	}
}
