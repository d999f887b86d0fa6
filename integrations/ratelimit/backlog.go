package ratelimit

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Backlog orders the tasks waiting for a budget by arrival, so that when the
// budget refills the oldest go first. Asynq retries a task at the time its
// retry delay names (in whole seconds), whatever the order it failed in: the
// delay a Backlog gives is therefore when the budget frees the request the
// task's place comes to. The requests ahead of it are its place among the
// waiting, oldest first, times the requests one task takes (measured: the
// calls in the budget's window over the tasks served in the same time,
// waiting or not, both since the queue began; see turnScript). A rolling
// window frees its requests as the calls it holds leave it: the k-th request
// ahead frees when the window's k-th oldest call leaves, and a window later
// for each budget's worth of requests further ahead. A task that comes back early, or finds its request taken by a task
// that never waited, waits again with a smaller place.
//
// Every key lives under one Cluster hash tag, so each step is one script;
// Queue takes three: placing the task, reading when the request it comes
// to frees (under the limiter's tag), setting its turn.
type Backlog struct {
	rdb    redis.UniversalClient
	prefix string
	tag    string
	// busyUntil (unix ms): until then some process has queued tasks that may
	// still be waiting; Done costs a round trip only until then.
	busyUntil atomic.Int64
	// lookedAt (unix ms): when Done last looked whether any process queued
	// tasks (another's, or this one's before a restart, are served here too).
	lookedAt atomic.Int64
}

// lookAgainAfter is how long Done trusts a look that found no process had
// queued anything: the first queued task's turn comes later than that.
const lookAgainAfter = time.Second

// NewBacklog returns the backlog of every budget under a key prefix.
func NewBacklog(rdb redis.UniversalClient, prefix string) *Backlog {
	return &Backlog{rdb: rdb, prefix: prefix, tag: "{" + prefix + ":rl:backlog}"}
}

// perTaskCap bounds the requests one task is taken to need: too short a
// wait is cheap (the task comes back early and waits again, with a smaller
// place), too long a wait stalls it, so the estimate errs short: a signup
// takes 1–4 requests. Before tasks that never waited counted as served, 5
// served in the first window of a burst made a task of place 1,200 wait 240
// windows; before calls were counted from the queue's start, the calls of
// the hundreds served before anyone waited (so never counted) over the few
// served just after made a whole burst wait up to four times too long.
const perTaskCap = 4

// perTaskPrior is how many tasks of one request each the measure of the
// requests a task takes starts from: a handful of tasks served, some of them
// still making their calls when counted, is not a measure, and over-counting
// stalls tasks where under-counting only brings them back early. Status
// starts instead from as many tasks of the queue's last good measure (of at
// least perTaskPrior tasks served, taken while no burst settled), and takes
// that measure alone while a burst settles: right after a refill the window
// holds only the few calls made since the last burst (an ETA read 30%
// short), and mid-burst a task's calls settle before it is served (a read
// a window long). A turn may err short; an ETA has no reason to.
const perTaskPrior = 20

// settlingTime is how long after its calls a task is taken to have been
// served: the calls of the last settlingTime are left out of the requests a
// task takes, as right after a refill hundreds of tasks have made their
// calls and are not served yet. A turn still counts the tasks served
// meanwhile (it errs short); Status leaves them out too (a read has no
// reason to).
func settlingTime(per time.Duration) time.Duration { return min(time.Second, per/10) }

// staleAfter is how long past its planned retry a queued task still counts:
// one that neither waits again nor finishes by then was deleted or lost.
func staleAfter(per time.Duration) time.Duration { return max(per, time.Minute) }

// turnScript is in how many ms a budget frees the request the first call of
// the task at a place among the waiting needs. The requests ahead of it are
// its place times the requests a task takes: the calls in the window over
// the tasks served, starting from perTaskPrior tasks of one request, between
// 1 and a cap. Calls count from when the queue began, as a task served
// before then was not counted (no Done round trip while nobody waits)
// though its calls are in the window, and until settlingTime ago. The
// request the i-th oldest call in the window holds frees when that call
// leaves, one the window does not hold is free now, and each budget's worth
// further ahead frees a window later. KEYS: the budget's window (the
// limiter's sorted set of call times), the lag (see spendScript). ARGV: the
// budget's limit, period and least window in ms, the place, the tasks
// served, the cap, when the queue began (unix ms), the settling time in ms,
// the prior's tasks, a kept measure of the requests per task (0: none, the
// prior's tasks take one each), the tasks served until the settling time
// ago (-1: measure nothing). It only reads, and returns the turn in ms and the requests
// a task takes by the calls and tasks served until the settling time ago,
// in thousandths: -1 when fewer tasks than the prior's were served, or while
// a burst is settling (over 5% of the calls made within the settling time),
// as a task's calls settle before it is served. While a burst settles a
// kept measure is the requests a task takes.
var turnScript = redis.NewScript(windowLua + `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = windowOf(tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(redis.call('GET', KEYS[2]) or '0'))
local left = redis.call('ZCOUNT', KEYS[1], '-inf', now - window)
local live = redis.call('ZCARD', KEYS[1]) - left
local served = tonumber(ARGV[5])
local since = math.max(now - window, tonumber(ARGV[7]))
local calls = 0
if since < now - tonumber(ARGV[8]) then
  calls = redis.call('ZCOUNT', KEYS[1], '(' .. since, now - tonumber(ARGV[8]))
end
local k, kept = tonumber(ARGV[9]), tonumber(ARGV[10])
local calm = 20 * redis.call('ZCOUNT', KEYS[1], '(' .. (now - tonumber(ARGV[8])), '+inf') <= calls
local perTask = kept
if calm or kept <= 0 then perTask = (calls + k * math.max(kept, 1)) / (served + k) end
perTask = math.min(math.max(perTask, 1), tonumber(ARGV[6]))
local settled = tonumber(ARGV[11])
local measure = -1
if settled >= k and calm then measure = math.floor(1000 * calls / settled) end
local ahead = math.floor(tonumber(ARGV[4]) * perTask)
local windows = math.floor(ahead / limit)
local i = ahead - windows * limit
local free = limit - live
local at = 0
if i >= free then
  local call = redis.call('ZRANGE', KEYS[1], left + i - free, left + i - free, 'WITHSCORES')
  if call[2] then at = math.max(tonumber(call[2]) + window - now, 0) end
end
return {at + windows * window, measure}
`)

// queueScript places a task among those waiting for one budget, due at
// first when the spend said the budget refills (dueScript then sets its
// turn). KEYS: queues (hash: name -> meta), waiting (zset: id -> arrival
// ms), due (zset: id -> planned retry ms), done (zset: id -> when it left
// the queue), of (hash: id -> name), since (hash: name -> when the queue
// began, unix ms, and name|per -> the last good measure of the requests a
// task takes, in thousandths; it begins again with the queues). ARGV: id,
// arrival ms, name, meta, refill ms, period ms, stale ms, settling ms.
// Returns {place, tasks served in the last period, tasks waiting, when the
// queue began, tasks served in the last period until the settling time ago}.
var queueScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local period = tonumber(ARGV[6])
local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[7]))
for _, id in ipairs(stale) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('HDEL', KEYS[5], id)
end
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('DEL', KEYS[6]) end
redis.call('HSETNX', KEYS[6], ARGV[3], now)
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - period)
local ttl = tonumber(ARGV[5]) + 2 * tonumber(ARGV[7]) + period
for i = 1, #KEYS do
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return {redis.call('ZRANK', KEYS[2], ARGV[1]), redis.call('ZCARD', KEYS[4]), redis.call('ZCARD', KEYS[2]), tonumber(redis.call('HGET', KEYS[6], ARGV[3])),
  redis.call('ZCOUNT', KEYS[4], '-inf', now - tonumber(ARGV[8]))}
`)

// dueScript sets a queued task's turn, and keeps a good measure of the
// requests a task takes for Status. KEYS: the queue's keys (see
// queueScript). ARGV: id, delay ms, period ms, stale ms, the measure in
// thousandths (-1: none), its field (measureField).
var dueScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(ARGV[5]) >= 0 then redis.call('HSET', KEYS[6], ARGV[6], ARGV[5]) end
if redis.call('ZADD', KEYS[3], 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[1]) == 0 then return 0 end
local ttl = tonumber(ARGV[2]) + 2 * tonumber(ARGV[4]) + tonumber(ARGV[3])
for i = 1, #KEYS do
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 1
`)

// keepMeasureScript keeps a measure of the requests a task takes in a
// queue's since hash (KEYS[1]), if the queue still exists. ARGV: the
// field, the measure.
var keepMeasureScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 0`)

// doneScript takes a task out of its queue and counts it as served. A task
// that never waited is counted as served by every queue too (it spent what
// the waiting tasks wait for, or nothing, which only makes their turns come
// early). KEYS: of, queues; the queue's keys are named from what it holds,
// all under the same hash tag (so Cluster accepts them). ARGV: id, backlog
// tag.
var doneScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local name = redis.call('HGET', KEYS[1], ARGV[1])
if not name then
  local ttl = redis.call('PTTL', KEYS[2])
  if ttl <= 0 then return 0 end
  for _, queue in ipairs(redis.call('HKEYS', KEYS[2])) do
    local done = ARGV[2] .. ':done:' .. queue
    redis.call('ZADD', done, now, ARGV[1])
    if redis.call('PTTL', done) < 0 then redis.call('PEXPIRE', done, ttl) end
  end
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', ARGV[2] .. ':waiting:' .. name, ARGV[1])
redis.call('ZREM', ARGV[2] .. ':due:' .. name, ARGV[1])
redis.call('ZADD', ARGV[2] .. ':done:' .. name, now, ARGV[1])
return 1
`)

// measureField is the field of a queue's since hash that keeps its last
// good measure of the requests a task takes (see perTaskPrior).
func measureField(name string) string { return name + "|per" }

func (b *Backlog) keys(name string) []string {
	return []string{b.tag + ":queues", b.tag + ":waiting:" + name, b.tag + ":due:" + name, b.tag + ":done:" + name, b.tag + ":of", b.tag + ":since"}
}

// Queue places task id, which arrived at arrived, among the tasks waiting
// for w's budget and sets w.RetryAfter to when its turn comes (w.Position to
// its place). A 429 back-off is not queued: nobody's turn comes before it ends.
func (b *Backlog) Queue(ctx context.Context, id string, arrived time.Time, w *WaitError) error {
	if w.Requests <= 0 || w.Per <= 0 || w.limiter == "" || id == "" {
		return nil
	}
	name := w.limiter + ":" + w.Budget
	meta := strings.Join([]string{w.API, w.Budget, strconv.Itoa(w.Requests), strconv.FormatInt(w.Per.Milliseconds(), 10), w.limiter}, "\t")
	stale := staleAfter(w.Per)
	keys := b.keys(name)
	res, err := queueScript.Run(ctx, b.rdb, keys, id, arrived.UnixMilli(), name, meta,
		w.RetryAfter.Milliseconds(), w.Per.Milliseconds(), stale.Milliseconds(), settlingTime(w.Per).Milliseconds()).Int64Slice()
	if err != nil {
		return fmt.Errorf("queue %s for the %s %s budget: %w", id, w.API, w.Budget, err)
	}
	w.Position = int(res[0])
	b.busyFor(w.RetryAfter + 2*stale)
	turn, measure, err := b.turn(ctx, w.limiter, w.API, w.Budget, w.Requests, w.Per, w.Position, int(res[1]), res[3], 0, int(res[4]))
	if err != nil {
		return err // queued: its turn stays the refill
	}
	if err := dueScript.Run(ctx, b.rdb, keys, id, turn.Milliseconds(), w.Per.Milliseconds(), stale.Milliseconds(), measure, measureField(name)).Err(); err != nil {
		return fmt.Errorf("queue %s for the %s %s budget: %w", id, w.API, w.Budget, err)
	}
	w.RetryAfter = max(turn, time.Millisecond)
	b.busyFor(w.RetryAfter + 2*stale)
	return nil
}

// turn is when the task at place among those waiting for a budget of
// requests per per gets its turn, served tasks having been served in the
// last period, in a queue that began at since, unix ms (turnScript). The
// requests a task takes start from perTaskPrior tasks of one request, or of
// kept requests when a measure was kept (0: none; see perTaskPrior). It
// also measures the requests a task takes from the settled tasks served
// until the settling time ago (-1: measure nothing), in thousandths: -1
// when too few were served or a burst is settling.
func (b *Backlog) turn(ctx context.Context, limiter, api, budget string, requests int, per time.Duration, place, served int, since int64, kept float64, settled int) (time.Duration, int64, error) {
	key := limiterKey(b.prefix, limiter)
	res, err := turnScript.Run(ctx, b.rdb, []string{key + ":" + budget, key + ":lag"},
		requests, per.Milliseconds(), leastWindowMs(per), place, served, perTaskCap, since, settlingTime(per).Milliseconds(),
		perTaskPrior, strconv.FormatFloat(kept, 'f', 3, 64), settled).Int64Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("unexpected answer %v", res)
	}
	if err != nil {
		return 0, -1, fmt.Errorf("read when the %s %s budget frees: %w", api, budget, err)
	}
	return time.Duration(res[0]) * time.Millisecond, res[1], nil
}

// busyFor keeps Done's round trip on for d from now.
func (b *Backlog) busyFor(d time.Duration) {
	until := time.Now().Add(d).UnixMilli()
	for {
		cur := b.busyUntil.Load()
		if cur >= until || b.busyUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// Done takes task id out of the queue it waited in, if any, counting it as
// served. Free while no process has queued a task lately (the queues' key,
// which lives as long as a queued task may wait, is gone): one look per
// lookAgainAfter then, not a round trip per task.
func (b *Backlog) Done(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	if now := time.Now().UnixMilli(); now > b.busyUntil.Load() {
		if now-b.lookedAt.Load() < lookAgainAfter.Milliseconds() {
			return nil
		}
		b.lookedAt.Store(now)
		ttl, err := b.rdb.PTTL(ctx, b.tag+":queues").Result()
		if err != nil {
			return fmt.Errorf("look for the budget backlog: %w", err)
		}
		if ttl <= 0 {
			return nil
		}
		b.busyFor(ttl)
	}
	if err := doneScript.Run(ctx, b.rdb, []string{b.tag + ":of", b.tag + ":queues"}, id, b.tag).Err(); err != nil {
		return fmt.Errorf("take %s out of the budget backlog: %w", id, err)
	}
	return nil
}

// Waiting is how many tasks wait for a budget of api. A task whose turn
// passed staleAfter ago without it waiting again or finishing (deleted, or
// lost) no longer counts, though it stays in the queue until a Queue prunes
// it.
func (b *Backlog) Waiting(ctx context.Context, api string) (int, error) {
	queues, err := b.rdb.HGetAll(ctx, b.tag+":queues").Result()
	if err != nil {
		return 0, fmt.Errorf("read the budget backlog: %w", err)
	}
	pipe := b.rdb.Pipeline()
	var counts []*redis.IntCmd
	now := time.Now()
	for name, meta := range queues {
		if q, _, ok := parseQueueMeta(meta); ok && q.API == api {
			counts = append(counts, b.countWaiting(ctx, pipe, name, q.Per, now))
		}
	}
	if len(counts) == 0 {
		return 0, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("read the %s budget backlog: %w", api, err)
	}
	n := 0
	for _, c := range counts {
		n += int(c.Val())
	}
	return n, nil
}

// countWaiting queues on pipe the count of the tasks of a queue for a budget
// of period per that are not stale at now (their turn, the due score, passed
// less than staleAfter ago).
func (b *Backlog) countWaiting(ctx context.Context, pipe redis.Pipeliner, name string, per time.Duration, now time.Time) *redis.IntCmd {
	return pipe.ZCount(ctx, b.keys(name)[2], strconv.FormatInt(now.Add(-staleAfter(per)).UnixMilli(), 10), "+inf")
}

// parseQueueMeta reads a queue's meta (Queue writes it: API, budget,
// requests, period in ms, limiter id, tab-separated) into the status it
// starts, and the limiter id.
func parseQueueMeta(meta string) (q QueueStatus, limiter string, ok bool) {
	f := strings.Split(meta, "\t")
	if len(f) != 5 {
		return q, "", false
	}
	q = QueueStatus{API: f[0], Budget: f[1]}
	q.Requests, _ = strconv.Atoi(f[2])
	perMs, _ := strconv.ParseInt(f[3], 10, 64)
	q.Per = time.Duration(perMs) * time.Millisecond
	return q, f[4], true
}

// QueueStatus is one budget's backlog.
type QueueStatus struct {
	API, Budget string
	Requests    int
	Per         time.Duration
	// Used is the budget spent in the current window.
	Used int
	// Waiting tasks; Oldest is the arrival of the oldest.
	Waiting int
	Oldest  time.Time
	// ETA is when the last waiting task's turn comes, as a task queued now
	// would be given it.
	ETA time.Duration
}

// Status reads every budget's backlog, sorted by API and budget. Stale
// tasks (see Waiting) are not counted, but the oldest arrival may still be
// theirs until a Queue prunes them. Its one write keeps a good measure of
// the requests a task takes for later reads (see perTaskPrior).
func (b *Backlog) Status(ctx context.Context) ([]QueueStatus, error) {
	queues, err := b.rdb.HGetAll(ctx, b.tag+":queues").Result()
	if err != nil {
		return nil, fmt.Errorf("read the budget backlog: %w", err)
	}
	now, err := b.rdb.Time(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("read the budget backlog: %w", err)
	}
	var out []QueueStatus
	for name, meta := range queues {
		q, limiter, ok := parseQueueMeta(meta)
		if !ok {
			continue
		}
		k := b.keys(name)
		pipe := b.rdb.Pipeline()
		waiting := b.countWaiting(ctx, pipe, name, q.Per, now)
		// Served up to settlingTime ago, as the calls (see settlingTime).
		served := pipe.ZCount(ctx, k[3], "("+strconv.FormatInt(now.Add(-q.Per).UnixMilli(), 10), strconv.FormatInt(now.Add(-settlingTime(q.Per)).UnixMilli(), 10))
		oldest := pipe.ZRangeWithScores(ctx, k[1], 0, 0)
		since := pipe.HGet(ctx, k[5], name)
		measured := pipe.HGet(ctx, k[5], measureField(name))
		used := pipe.ZCount(ctx, limiterKey(b.prefix, limiter)+":"+q.Budget, "("+strconv.FormatInt(now.UnixMilli()-leastWindowMs(q.Per), 10), "+inf")
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			return nil, fmt.Errorf("read the %s %s backlog: %w", q.API, q.Budget, err)
		}
		q.Waiting, q.Used = int(waiting.Val()), int(used.Val())
		if o := oldest.Val(); len(o) > 0 {
			q.Oldest = time.UnixMilli(int64(o[0].Score)).UTC()
		}
		if q.Waiting > 0 && q.Requests > 0 && q.Per > 0 {
			// The last one's turn as it would be given now: the turn given
			// when it queued knew less (fewer tasks served, another window).
			began, _ := since.Int64() // 0 when unknown: calls counted over the whole window
			kept := 0.0
			if m, err := measured.Int64(); err == nil && m > 0 {
				kept = float64(m) / 1000
			}
			var measure int64
			if q.ETA, measure, err = b.turn(ctx, limiter, q.API, q.Budget, q.Requests, q.Per, q.Waiting-1, int(served.Val()), began, kept, int(served.Val())); err != nil {
				return nil, err
			}
			if measure >= 0 {
				// A failure only leaves the last measure kept.
				_ = keepMeasureScript.Run(ctx, b.rdb, k[5:6], measureField(name), measure).Err()
			}
		}
		out = append(out, q)
	}
	slices.SortFunc(out, func(x, y QueueStatus) int { return strings.Compare(x.API+"\x00"+x.Budget, y.API+"\x00"+y.Budget) })
	return out, nil
}
