package ledger

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrBusy means another task holds the person's lock.
var ErrBusy = errors.New("another task is working on this person")

// ErrLockLost means the person's lock expired or passed to another holder
// while its holder still worked: the holder's writes are refused.
var ErrLockLost = errors.New("person lock lost: another task may be working on this person")

// ErrNotLocked means an entry write came without the person's lock.
var ErrNotLocked = errors.New("ledger write without the person's lock")

var (
	unlockScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)
	// KEYS: the lock, the person's value, their old-format event watermark
	// key, then the old format's entry key of each workspace in ARGV[6..].
	// ARGV[3..5]: an event to record as the watermark ("<ms>[:deleted]",
	// ms, "1" when it deactivates; "" = none), recorded only when it is not
	// older than the watermark (the rule of Lock.Watermark's callers), in the
	// person's value (its "@" line, see watermarkLine). Returns nil when the
	// lock is taken, else the value, the watermark as it was and, per
	// workspace the value has no record of, its old-format entry ("" if none).
	lockAndGetScript = redis.NewScript(`if not redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then return false end
local v = redis.call("GET", KEYS[2]) or ""
` + watermarkLua + `
local wm, old = watermarkOf(v, KEYS[3])
if ARGV[3] ~= "" then
  local at = tonumber(string.match(wm, "^%d+") or "0")
  local del = string.find(wm, ":deleted", 1, true) ~= nil
  local evAt, evDel = tonumber(ARGV[4]), ARGV[5] == "1"
  local stale = evAt < at or (evAt == at and del and not evDel)
  if not stale and (evAt ~= at or del ~= evDel) then
    redis.call("SET", KEYS[2], withWatermark(v, ARGV[3]))
    if old then redis.call("DEL", KEYS[3]) end
  end
end
local out = {v, wm}
for i = 4, #KEYS do
  if string.find("\n" .. v, "\n" .. ARGV[i + 2] .. "\t", 1, true) then out[i - 1] = ""
  else out[i - 1] = redis.call("GET", KEYS[i]) or "" end
end
return out`)
	renewScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)
)

// Lock is one holder's hold on a person's lock. Its token is unique to the
// holder, so a late unlock or write by a holder whose lease ran out cannot
// touch a later holder's lock or entries.
type Lock struct {
	s        *Store
	key      string
	personID string
	token    string
	lease    time.Duration

	lost     chan struct{} // closed when the lock is lost
	stop     chan struct{} // closed by Unlock
	renewing chan struct{} // closed when the renewal goroutine ends
	once     sync.Once     // Unlock
	lostOnce sync.Once

	// watermark is the person's event watermark as read with the lock
	// (LockAndGet), nil when it was not read.
	watermark *Watermark
	// applied: LockAndApply recorded its event as the new watermark.
	applied bool

	mu       sync.Mutex
	cancels  []context.CancelCauseFunc
	released bool
}

type lockCtxKey struct{}

// LockFrom returns the lock a context carries (see Lock.Context), or nil.
func LockFrom(ctx context.Context) *Lock {
	l, _ := ctx.Value(lockCtxKey{}).(*Lock)
	return l
}

// Token is the holder's unique token, as stored in the lock key.
func (l *Lock) Token() string { return l.token }

// Done is closed when the lock is lost (its renewal found it gone or taken).
func (l *Lock) Done() <-chan struct{} { return l.lost }

// Err is ErrLockLost once the lock is lost, else nil.
func (l *Lock) Err() error {
	select {
	case <-l.lost:
		return ErrLockLost
	default:
		return nil
	}
}

// Context derives from parent a context that carries the lock (Put writes
// under it) and is cancelled, with cause ErrLockLost, when the lock is lost,
// so the holder stops calling Atlassian for a person it no longer owns. It
// is also cancelled by Unlock.
func (l *Lock) Context(parent context.Context) context.Context {
	ctx, cancel := context.WithCancelCause(context.WithValue(parent, lockCtxKey{}, l))
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.released:
		cancel(context.Canceled)
	case l.Err() != nil:
		cancel(ErrLockLost)
	default:
		l.cancels = append(l.cancels, cancel)
	}
	return ctx
}

// Unlock stops the renewal and deletes the lock key if it still holds this
// holder's token. Safe to call more than once.
func (l *Lock) Unlock() { l.release(true) }

// releasedByWrite records that a write released the lock (PutAndUnlock):
// Unlock has nothing left to do in Redis.
func (l *Lock) releasedByWrite() { l.release(false) }

func (l *Lock) release(inRedis bool) {
	l.once.Do(func() {
		close(l.stop)
		<-l.renewing
		if inRedis {
			// A fresh context: the task's may be cancelled, the lock must still go.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			unlockScript.Run(ctx, l.s.rdb, []string{l.key}, l.token)
		}
		l.mu.Lock()
		l.released = true
		for _, c := range l.cancels {
			c(context.Canceled)
		}
		l.cancels = nil
		l.mu.Unlock()
	})
}

// markLost records that the lock is gone and cancels the holder's contexts.
func (l *Lock) markLost() {
	l.lostOnce.Do(func() {
		close(l.lost)
		l.mu.Lock()
		for _, c := range l.cancels {
			c(ErrLockLost)
		}
		l.cancels = nil
		l.mu.Unlock()
	})
}

// renew extends the lease while the holder works. The lock is lost when the
// key is gone or holds another token, or when Redis has not confirmed the
// lease for a whole lease (it may have expired meanwhile).
func (l *Lock) renew() {
	defer close(l.renewing)
	t := time.NewTicker(l.lease / 3)
	defer t.Stop()
	confirmed := time.Now()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), l.lease/3)
		n, err := renewScript.Run(ctx, l.s.rdb, []string{l.key}, l.token, l.lease.Milliseconds()).Int()
		cancel()
		switch {
		case err == nil && n == 1:
			confirmed = time.Now()
			continue
		case err == nil || time.Since(confirmed) >= l.lease:
			l.markLost()
			return
		}
	}
}

// newToken makes a holder's token: the owner's name, for people reading
// Redis, and a random suffix, so no two holders share one.
func newToken(owner string) string {
	var b [8]byte
	rand.Read(b[:])
	if owner == "" {
		owner = "anonymous"
	}
	return owner + ":" + hex.EncodeToString(b[:])
}

// Watermark returns the person's event watermark read with the lock; ok is
// false when the lock was taken without it (Lock rather than LockAndGet).
func (l *Lock) Watermark() (w Watermark, ok bool) {
	if l.watermark == nil {
		return Watermark{}, false
	}
	return *l.watermark, true
}

// Applied reports whether LockAndApply recorded its event as the person's
// watermark (the caller need not SetWatermark).
func (l *Lock) Applied() bool { return l.applied }

func (s *Store) newLock(personID, token string, lease time.Duration) *Lock {
	l := &Lock{
		s: s, key: s.lockKey(personID), personID: personID, token: token, lease: lease,
		lost: make(chan struct{}), stop: make(chan struct{}), renewing: make(chan struct{}),
	}
	go l.renew()
	return l
}

// Lock serialises work on one person across every worker process. The holder
// renews a short lease while it works, so a crashed worker blocks the person
// for one lease at most; owner names the holder (a task id, "cli:alice") and
// gets a unique suffix. The caller must Unlock, and should work under
// lock.Context(ctx).
func (s *Store) Lock(ctx context.Context, personID, owner string, lease time.Duration) (*Lock, error) {
	token := newToken(owner)
	ok, err := s.rdb.SetNX(ctx, s.lockKey(personID), token, lease).Result()
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", personID, err)
	}
	if !ok {
		return nil, fmt.Errorf("lock %s: %w", personID, ErrBusy)
	}
	return s.newLock(personID, token, lease), nil
}

// LockAndGet takes the person's lock and reads their entries in workspaces,
// in one round trip. Every workspace asked is in the map, nil when the person
// has no entry there.
func (s *Store) LockAndGet(ctx context.Context, personID, owner string, lease time.Duration, workspaces []string) (*Lock, map[string]*Entry, error) {
	return s.LockAndApply(ctx, personID, owner, lease, workspaces, Watermark{})
}

// LockAndApply is LockAndGet that also records event as the person's
// watermark when it is not older than the one on record (event.At 0: none):
// one round trip where the lock, the read and SetWatermark took two. The lock
// carries the watermark as it was before (Lock.Watermark) and whether event
// was recorded (Lock.Applied).
//
// along queues reads of other stores (the member cache) in the same round
// trip, after the lock's script; their results are theirs to read once
// LockAndApply returns, whatever it returns.
func (s *Store) LockAndApply(ctx context.Context, personID, owner string, lease time.Duration, workspaces []string, event Watermark, along ...func(redis.Pipeliner)) (*Lock, map[string]*Entry, error) {
	token := newToken(owner)
	keys := []string{s.lockKey(personID), s.personValueKey(personID), s.watermarkKey(personID)}
	args := []any{token, lease.Milliseconds(), "", 0, "0"}
	if event.At != 0 {
		args[2], args[3] = event.String(), event.At
		if event.Deleted {
			args[4] = "1"
		}
	}
	for _, ws := range workspaces {
		keys = append(keys, s.entryKey(ws, personID))
		args = append(args, ws)
	}
	res, err := runAlong(ctx, s.rdb, lockAndGetScript, keys, args, along).StringSlice()
	if errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("lock %s: %w", personID, ErrBusy)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("lock %s: %w", personID, err)
	}
	lock := s.newLock(personID, token, lease)
	wm, err := parseWatermark(personID, res[1])
	if err != nil {
		lock.Unlock()
		return nil, nil, err
	}
	lock.watermark = &wm
	lock.applied = event.At != 0 && !wm.Older(event) && wm != event
	recs := records(res[0])
	entries := make(map[string]*Entry, len(workspaces))
	for i, ws := range workspaces {
		e, err := entryOf(ws, personID, recs, res[2+i])
		if err != nil {
			lock.Unlock()
			return nil, nil, err
		}
		entries[ws] = e
	}
	return lock, entries, nil
}

// runAlong runs script with other commands queued behind it in one
// pipeline (one round trip). A server that does not have the script yet
// (NOSCRIPT: restarted, failed over) is given it and the pipeline sent again.
func runAlong(ctx context.Context, rdb redis.UniversalClient, script *redis.Script, keys []string, args []any, along []func(redis.Pipeliner)) *redis.Cmd {
	if len(along) == 0 {
		return script.Run(ctx, rdb, keys, args...)
	}
	send := func() *redis.Cmd {
		pipe := rdb.Pipeline()
		cmd := script.EvalSha(ctx, pipe, keys, args...)
		for _, queue := range along {
			queue(pipe)
		}
		_, _ = pipe.Exec(ctx) // each command carries its own error
		return cmd
	}
	cmd := send()
	if err := cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		if err := script.Load(ctx, rdb).Err(); err != nil {
			return cmd
		}
		cmd = send()
	}
	return cmd
}
