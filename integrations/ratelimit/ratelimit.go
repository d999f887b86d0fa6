// Package ratelimit keeps every autoinvite process inside one Atlassian budget:
// the counters live in Redis, keyed per API and credential, so three workers
// together spend what one would.
//
// Atlassian counts a rolling window ("1,000 requests per hour"), so the budget
// is an exact sliding-window log (a sorted set of call times per budget) rather
// than a token bucket: a bucket with a full burst lets through up to twice the
// budget in some one-hour window, which is exactly what earns 429s.
package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-resty/resty/v2"
	"github.com/redis/go-redis/v9"

	"github.com/autoinvite/autoinvite/integrations/atlassian"
)

// The APIs autoinvite calls, as limiters and phases name them.
const (
	APIJira         = "jira"
	APIBitbucket    = "bitbucket"
	APIOrganization = "organization"
)

// Budget is a number of requests per period.
type Budget struct {
	Name     string
	Requests int
	Per      time.Duration
	// Match selects the requests the budget counts; nil counts all.
	Match func(method, pathTemplate string) bool
	// Class, when set, limits the budget to calls made with a context of
	// that class (WithClass): a share of the budget for one kind of work.
	Class string
}

// ClassEarlyCheck marks the calls of early acceptance checks.
const ClassEarlyCheck = "early-check"

type classKey struct{}

// WithClass marks the calls made with ctx as of a class of work, which the
// budgets of that class count as well.
func WithClass(ctx context.Context, class string) context.Context {
	return context.WithValue(ctx, classKey{}, class)
}

func classOf(ctx context.Context) string {
	c, _ := ctx.Value(classKey{}).(string)
	return c
}

// WaitError means the budget is spent: try again after RetryAfter. It is not a
// failure; the task is rescheduled.
type WaitError struct {
	API        string
	Budget     string
	RetryAfter time.Duration
	// Requests per Per is the spent budget (0 for a 429 back-off).
	Requests int
	Per      time.Duration
	// ThrottledFor is how long Atlassian has been answering 429 without a
	// success in between (a 429 back-off only): the one wait that can last forever.
	ThrottledFor time.Duration
	// Position is the task's place among those waiting for the same budget,
	// oldest first, once a Backlog has queued it (-1 before).
	Position int
	// limiter is the API and credential hash the budget belongs to.
	limiter string
}

func (e *WaitError) Error() string {
	return fmt.Sprintf("%s %s budget spent: next call allowed in %s", e.API, e.Budget, e.RetryAfter.Round(time.Millisecond))
}

// Options configures a Limiter.
type Options struct {
	API        string // "jira" or "bitbucket"
	Credential string // identity of the credential (hashed, never stored)
	Prefix     string // Redis key prefix
	Budgets    []Budget
	// OnWait is told each time a call had to wait (metrics).
	OnWait func(api string)
	// MaxBackoff caps the slow-down after 429s.
	MaxBackoff time.Duration
	// MaxInPlaceWait: a wait up to this long is slept through inside the call
	// (cheaper and more precise than rescheduling the task, whose delays Asynq
	// keeps in whole seconds); longer ones return a *WaitError. Default 2s;
	// negative disables.
	MaxInPlaceWait time.Duration
}

// Limiter spends budgets shared through Redis.
type Limiter struct {
	rdb redis.UniversalClient
	o   Options
	id  string // API and credential hash
	key string
	// backoffChecked is when (unix ms) a call last found no back-off;
	// throttled when this process last saw a 429.
	backoffChecked atomic.Int64
	throttled      atomic.Int64
	// lag is the longest this process saw between a call's spend and its
	// answer lately: the most a call can arrive after it was counted.
	lag lagMax
}

// lagMemory is how long an observed lag widens the windows.
const lagMemory = time.Minute

// lagMax is the largest lag observed in the current and the previous
// period of lagMemory.
type lagMax struct {
	period    atomic.Int64 // unix ms when the current period began
	cur, prev atomic.Int64 // ms
}

// observe records a lag; true when it is the longest remembered.
func (m *lagMax) observe(d time.Duration) bool {
	longest := m.value()
	ms := ceilMs(d)
	for {
		cur := m.cur.Load()
		if ms <= cur {
			return false
		}
		if m.cur.CompareAndSwap(cur, ms) {
			return d > longest
		}
	}
}

func (m *lagMax) value() time.Duration {
	m.rotate()
	return time.Duration(max(m.cur.Load(), m.prev.Load())) * time.Millisecond
}

func (m *lagMax) rotate() {
	now := time.Now().UnixMilli()
	began := m.period.Load()
	if now-began < lagMemory.Milliseconds() || !m.period.CompareAndSwap(began, now) {
		return
	}
	m.prev.Store(m.cur.Swap(0))
}

// CredentialOf is the identity Atlassian counts a credential's calls under,
// for Options.Credential: per user with Basic auth (an account email and an
// API token: all of one user's tokens share the user's budget, and a rotated
// token keeps it), per token with a Bearer access token.
func CredentialOf(email, bearer string) string {
	if bearer != "" {
		return "bearer\x00" + bearer
	}
	return "user\x00" + strings.ToLower(strings.TrimSpace(email))
}

// New returns a limiter for one API and credential.
func New(rdb redis.UniversalClient, o Options) *Limiter {
	sum := sha256.Sum256([]byte(o.Credential))
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Minute
	}
	if o.OnWait == nil {
		o.OnWait = func(string) {}
	}
	if o.MaxInPlaceWait == 0 {
		o.MaxInPlaceWait = 2 * time.Second
	}
	// The braces make a Redis Cluster hash tag: all of a credential's budgets
	// live in one slot, so one script can check and spend them together.
	id := o.API + ":" + hex.EncodeToString(sum[:6])
	return &Limiter{rdb: rdb, o: o, id: id, key: limiterKey(o.Prefix, id)}
}

// Take spends one request of every budget the call counts against, or returns
// a *WaitError. While 429s come back, everyone waits out the back-off. It is
// one round trip to Redis (none when no budget applies and no 429 was seen
// lately).
func (l *Limiter) Take(ctx context.Context, method, pathTemplate string) error {
	_, err := l.spend(ctx, method, pathTemplate)
	return err
}

// spend is Take that also says when the call was counted (zero: not counted
// by any budget).
func (l *Limiter) spend(ctx context.Context, method, pathTemplate string) (time.Time, error) {
	deadline := time.Now().Add(l.o.MaxInPlaceWait)
	for {
		at, err := l.take(ctx, method, pathTemplate)
		w, waiting := AsWait(err)
		if !waiting || time.Now().Add(w.RetryAfter).After(deadline) {
			return at, err
		}
		t := time.NewTimer(w.RetryAfter)
		select {
		case <-ctx.Done():
			t.Stop()
			return at, err
		case <-t.C:
		}
	}
}

func (l *Limiter) take(ctx context.Context, method, pathTemplate string) (time.Time, error) {
	var keys []string
	var args []any
	var budgets []Budget
	for _, b := range l.o.Budgets {
		if (b.Match != nil && !b.Match(method, pathTemplate)) || (b.Class != "" && b.Class != classOf(ctx)) {
			continue
		}
		keys = append(keys, l.key+":"+b.Name)
		// A call counts from when it is spent here, Atlassian counts from
		// when it arrives there: the window is widened by that lag (see
		// spendScript), at least 0.2% of it.
		args = append(args, b.Requests, b.Per.Milliseconds(), leastWindowMs(b.Per))
		budgets = append(budgets, b)
	}
	if len(keys) == 0 && time.Since(time.UnixMilli(l.backoffChecked.Load())) < backoffRecheck {
		return time.Time{}, nil
	}
	ph := phaseOf(ctx, l.o.API)
	if at, ok := ph.use(keys); ok {
		return at, nil // spent ahead by the phase's first call
	}
	// KEYS[1] is the back-off, KEYS[2] the lag; the budgets follow.
	keys = append([]string{l.key + ":backoff", l.key + ":lag"}, keys...)
	id := strconv.FormatUint(rand.Uint64(), 36)
	count := ph.ahead()
	head := []any{id, count, ceilMs(l.lag.value()), lagMemory.Milliseconds()}
	// The calls are counted at Redis's time, somewhere in the round trip:
	// their lag runs from before it, or the reply's way back (milliseconds
	// on a loaded machine) would go unseen and the windows widen too little.
	at := time.Now()
	res, err := spendScript.Run(ctx, l.rdb, keys, append(head, args...)...).Int64Slice()
	if err == nil && res[0] != -1 && count > 1 {
		// Not room for the whole phase: spend for this call alone.
		count, head[1] = 1, 1
		at = time.Now()
		res, err = spendScript.Run(ctx, l.rdb, keys, append(head, args...)...).Int64Slice()
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("rate limiter %s: %w", l.key, err)
	}
	if res[0] == -1 {
		ph.record(l, keys[2:], id, count, at)
	}
	switch {
	case res[0] == -2:
		l.o.OnWait(l.o.API)
		w := &WaitError{API: l.o.API, Budget: "429 back-off", RetryAfter: time.Duration(max(res[1], 1)) * time.Millisecond, Position: -1, limiter: l.id}
		if since, err := l.rdb.Get(ctx, l.key+":429since").Int64(); err == nil {
			w.ThrottledFor = max(time.Since(time.UnixMilli(since)), 0)
		}
		return time.Time{}, w
	case res[0] >= 0:
		l.o.OnWait(l.o.API)
		b := budgets[res[0]]
		return time.Time{}, &WaitError{API: l.o.API, Budget: b.Name, RetryAfter: time.Duration(max(res[1], 1)) * time.Millisecond,
			Requests: b.Requests, Per: b.Per, Position: -1, limiter: l.id}
	}
	l.backoffChecked.Store(time.Now().UnixMilli())
	if len(budgets) == 0 {
		return time.Time{}, nil
	}
	return at, nil
}

// limiterKey is the Redis key (a Cluster hash tag) of one API and
// credential's budgets; the budgets' windows are limiterKey + ":" + name.
func limiterKey(prefix, id string) string { return "{" + prefix + ":rl:" + id + "}" }

// backoffRecheck is how long a call that spends no budget trusts the last
// look at the shared 429 back-off.
const backoffRecheck = 250 * time.Millisecond

// spendScript checks the shared 429 back-off (KEYS[1]: its end in unix ms),
// then every budget (KEYS[3..]: sorted sets of call times in ms; ARGV: a
// unique id, the number of calls to spend, this process's lag in ms and how
// long a lag is remembered, then per budget its limit, period and least
// window in ms), and records the calls (members id:1..id:n) in all budgets
// only when all have room for them. A budget's window is its period widened
// by the longest lag any process reported lately (KEYS[2]), the time from a
// spend to its call's answer, which bounds how late Atlassian can see the
// call it counts: at least 0.2% of the period, at most 1% (a one-off stall
// of a process must not cost a minute of everyone's budget). It answers {-1, 0} when
// allowed, {-2, ms left} during a back-off, else {index of the spent budget,
// ms until its oldest call leaves the window}. Time is Redis's, so every
// process agrees.
var spendScript = redis.NewScript(windowLua + `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untilMs = tonumber(redis.call('GET', KEYS[1]) or '0')
if untilMs > now then
  return {-2, untilMs - now}
end
local lag = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[3]) > lag then
  lag = tonumber(ARGV[3])
  redis.call('SET', KEYS[2], lag, 'PX', ARGV[4])
end
local n = tonumber(ARGV[2])
local windows = {}
for i = 3, #KEYS do
  local period = tonumber(ARGV[3 * i - 3])
  windows[i] = windowOf(period, tonumber(ARGV[3 * i - 2]), lag)
end
for i = 3, #KEYS do
  local limit = tonumber(ARGV[3 * i - 4])
  local window = windows[i]
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if redis.call('ZCARD', KEYS[i]) + n > limit then
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    if oldest[2] == nil then return {i - 3, 1} end
    return {i - 3, tonumber(oldest[2]) + window - now}
  end
end
for i = 3, #KEYS do
  for j = 1, n do
    redis.call('ZADD', KEYS[i], now, ARGV[1] .. ':' .. j)
  end
  redis.call('PEXPIRE', KEYS[i], windows[i])
end
return {-1, 0}
`)

// windowLua defines windowOf(period, least, lag): a budget's window in ms,
// its period widened by the longest lag lately reported (see spendScript),
// at least least, at most 1% more than the period, and a millisecond more
// (see leastWindowMs).
const windowLua = `
local function windowOf(period, least, lag)
  return math.max(least, period + math.min(lag, math.floor(period / 100)) + 1)
end
`

// leastWindowMs is a budget's least window in whole ms: its period and
// 0.2%, rounded up, and a millisecond more, as the spend script keeps call
// times in whole ms (rounded down): two calls a window apart can be a
// millisecond closer on record (a minute's 0.12 ms margin on a compressed
// clock was less than that).
func leastWindowMs(per time.Duration) int64 { return ceilMs(per+per/500) + 1 }

// ceilMs is d in whole ms, rounded up.
func ceilMs(d time.Duration) int64 { return (d + time.Millisecond - 1).Milliseconds() }

// Throttled records a 429: every process backs off for retryAfter when the
// API said so (Data Center), else exponentially with jitter per 429 in a row.
func (l *Limiter) Throttled(ctx context.Context, retryAfter time.Duration) time.Duration {
	d := retryAfter
	if d <= 0 {
		n, _ := l.rdb.Incr(ctx, l.key+":429s").Result()
		l.rdb.Expire(ctx, l.key+":429s", l.o.MaxBackoff*2)
		d = Backoff(int(n), time.Second, l.o.MaxBackoff)
	}
	l.rdb.Set(ctx, l.key+":backoff", time.Now().Add(d).UnixMilli(), d+time.Second)
	// When this run of 429s began: a back-off that never ends is the one wait
	// that is a failure (rate_limits.max_wait), not a queue.
	l.rdb.SetNX(ctx, l.key+":429since", time.Now().UnixMilli(), 2*l.o.MaxBackoff)
	l.rdb.Expire(ctx, l.key+":429since", 2*l.o.MaxBackoff)
	l.throttled.Store(time.Now().UnixMilli())
	l.backoffChecked.Store(0)
	return d
}

// Recovered resets the run of 429s after a successful call. Only a process
// that saw a 429 lately does it, so healthy calls cost no round trip.
func (l *Limiter) Recovered(ctx context.Context) {
	at := l.throttled.Load()
	if at == 0 || time.Since(time.UnixMilli(at)) > 2*l.o.MaxBackoff {
		return
	}
	if l.rdb.Del(ctx, l.key+":429s", l.key+":429since").Err() == nil {
		l.throttled.CompareAndSwap(at, 0)
	}
}

// Backoff is base·2^(n-1), capped, with ±20% jitter so processes spread out.
func Backoff(n int, base, max time.Duration) time.Duration {
	if n < 1 {
		n = 1
	}
	d := base << min(n-1, 30)
	if d > max || d <= 0 {
		d = max
	}
	jitter := time.Duration(rand.Int64N(int64(d)/5 + 1))
	return d - d/10 + jitter
}

// Install makes every request of the client spend the budget first, and
// every 429 slow everyone down.
func (l *Limiter) Install(c *resty.Client) {
	c.OnBeforeRequest(func(_ *resty.Client, r *resty.Request) error {
		at, err := l.spend(r.Context(), r.Method, r.URL)
		if err == nil && !at.IsZero() {
			r.SetContext(context.WithValue(r.Context(), spentAtKey{}, at))
		}
		return err
	})
	c.OnAfterResponse(func(_ *resty.Client, r *resty.Response) error {
		// The answer came: the call arrived before.
		l.observeLag(r.Request.Context())
		if r.StatusCode() == http.StatusTooManyRequests {
			// What the phase spent ahead is given back: the rest of its
			// calls wait out the back-off like any other.
			phaseOf(r.Request.Context(), l.o.API).release(r.Request.Context())
			l.Throttled(r.Request.Context(), atlassian.RetryAfter(r.Header()))
		} else if r.StatusCode() < 500 {
			l.Recovered(r.Request.Context())
		}
		return nil
	})
	c.OnError(l.observeFailedCall)
}

// observeFailedCall takes a call that got no answer (a timeout, a reset
// connection) for one that arrived just now: it may have, at any time until then.
func (l *Limiter) observeFailedCall(r *resty.Request, err error) {
	var answered *resty.ResponseError
	if errors.As(err, &answered) && answered.Response != nil && answered.Response.RawResponse != nil {
		return // its answer was seen by OnAfterResponse
	}
	l.observeLag(r.Context())
}

// observeLag takes the time since the call of ctx was spent as a lag it may
// have had: a longer one than any remembered widens every process's windows
// at once.
func (l *Limiter) observeLag(ctx context.Context) {
	at, ok := ctx.Value(spentAtKey{}).(time.Time)
	if !ok {
		return
	}
	if lag := time.Since(at); l.lag.observe(lag) {
		l.reportLag(context.WithoutCancel(ctx), lag)
	}
}

// raiseLag raises the lag every process's spends widen their windows by
// (KEYS[1]) to ARGV[1] ms, for ARGV[2] ms.
var raiseLag = redis.NewScript(`
if tonumber(ARGV[1]) > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 0`)

// reportLag shares a new longest lag. A failure only leaves it to this
// process's next spend.
func (l *Limiter) reportLag(ctx context.Context, lag time.Duration) {
	_ = raiseLag.Run(ctx, l.rdb, []string{l.key + ":lag"}, ceilMs(lag), lagMemory.Milliseconds()).Err()
}

// spentAtKey carries when a request was counted by its budgets.
type spentAtKey struct{}

// AsWait returns the WaitError in err, if any.
func AsWait(err error) (*WaitError, bool) {
	var w *WaitError
	ok := errors.As(err, &w)
	return w, ok
}
