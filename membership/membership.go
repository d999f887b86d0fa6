// Package membership keeps each workspace's member set in Redis, shared by
// every worker process, so that a burst of signups costs one paginated member
// listing instead of one membership check per person, when that is cheaper.
//
// The cache is bounded: a workspace with more members than max_size is never
// cached, and a listing is trusted for max_age only. The service's own
// findings keep it current (a person found a member or seen accepting is
// added; an answer that contradicts it removes the person). Only a fresh
// listing answers "not a member".
package membership

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Choice is how a membership question is answered.
type Choice int

// Choices.
const (
	UseCache Choice = iota // a fresh listing answers
	List                   // list the workspace's members (cheaper than checking each pending person)
	CheckOne               // ask about this one person
)

func (c Choice) String() string { return [...]string{"cache", "list", "check-one"}[c] }

// Choose decides how to answer a pending membership question. A fresh cache
// answers for free. Otherwise listing costs ceil(members/pageLen) calls and
// checking each pending person one call each: whichever is fewer (a tie
// lists: the listing also answers questions still to come). members < 0 is
// unknown: with more than one question pending the listing starts, and its
// first page tells the size (Refresh stops there when listing does not pay).
// A workspace larger than maxSize is never listed.
func Choose(fresh bool, members, pending, pageLen, maxSize int) Choice {
	switch {
	case fresh:
		return UseCache
	case maxSize <= 0 || members > maxSize || pageLen <= 0:
		return CheckOne
	case members < 0:
		if pending >= 2 {
			return List
		}
		return CheckOne
	case Pages(members, pageLen) <= pending:
		return List
	default:
		return CheckOne
	}
}

// Pages is how many pages a listing of members takes (at least one).
func Pages(members, pageLen int) int {
	return max(1, (members+pageLen-1)/pageLen)
}

// Limits bound the cache.
type Limits struct {
	MaxSize int           // most members cached per workspace (0: no cache)
	MaxAge  time.Duration // how long a listing is trusted
}

// Cache is the member sets of the workspaces, in Redis under a key prefix.
type Cache struct {
	rdb    redis.UniversalClient
	prefix string
}

// New returns the cache under prefix (the store's key prefix).
func New(rdb redis.UniversalClient, prefix string) *Cache {
	return &Cache{rdb: rdb, prefix: prefix}
}

// The keys share the ledger's Cluster hash tag (the prefix), so scripts can
// use them all and a test's clean-up of its prefix finds them.
type keys struct{ set, meta, size, build, buildMeta, lister, demand string }

func (c *Cache) keys(ws string) keys {
	t := "{" + c.prefix + "}:members:" + ws
	return keys{t + ":set", t + ":meta", t + ":size", t + ":build", t + ":build:meta", t + ":lister", t + ":demand"}
}

// sizeKept is how long the last known member count is kept: it decides the
// next listing, long after the listing itself is stale.
const sizeKept = 7 * 24 * time.Hour

// Snapshot is what a listing saw besides the members, for the seat guard:
// when its count began (Redis µs) and the pending invitations then (-1: not
// counted).
type Snapshot struct {
	CountedAt   int64
	Invitations int
}

// Answer is what the cache knows about one person.
type Answer struct {
	Fresh    bool // a listing younger than max age: Member is the answer
	Member   bool
	Members  int       // members in the set (fresh only)
	Known    int       // last known member count (-1: unknown)
	ListedAt time.Time // when the listing began
	Snapshot Snapshot
}

// Lookup answers for accountID ("" asks only about the workspace) as of now.
func (c *Cache) Lookup(ctx context.Context, ws, accountID string, now time.Time, maxAge time.Duration) (Answer, error) {
	pipe := c.rdb.Pipeline()
	answer := c.QueueLookup(ctx, pipe, ws, accountID)
	_, _ = pipe.Exec(ctx) // the answer reads each command's error
	return answer(now, maxAge)
}

// QueueLookup queues Lookup's reads on pipe, so that another store's round
// trip carries them; the returned func reads the answer once pipe ran.
func (c *Cache) QueueLookup(ctx context.Context, pipe redis.Pipeliner, ws, accountID string) func(now time.Time, maxAge time.Duration) (Answer, error) {
	k := c.keys(ws)
	meta := pipe.HMGet(ctx, k.meta, "listed_at", "counted_at", "invitations")
	in := pipe.SIsMember(ctx, k.set, accountID)
	card := pipe.SCard(ctx, k.set)
	size := pipe.Get(ctx, k.size)
	return func(now time.Time, maxAge time.Duration) (Answer, error) {
		for _, cmd := range []redis.Cmder{meta, in, card, size} {
			if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
				return Answer{}, fmt.Errorf("read the member cache of %s: %w", ws, err)
			}
		}
		a := Answer{Known: -1, Snapshot: Snapshot{Invitations: -1}}
		if n, err := size.Int(); err == nil {
			a.Known = n
		}
		v := meta.Val()
		listed, ok := parseInt(v[0])
		if !ok {
			return a, nil
		}
		a.ListedAt = time.UnixMilli(listed)
		if age := now.Sub(a.ListedAt); age < 0 || age >= maxAge {
			return a, nil
		}
		a.Fresh, a.Member, a.Members = true, in.Val(), int(card.Val())
		if at, ok := parseInt(v[1]); ok {
			a.Snapshot.CountedAt = at
		}
		if n, ok := parseInt(v[2]); ok {
			a.Snapshot.Invitations = int(n)
		}
		return a, nil
	}
}

func parseInt(v any) (int64, bool) {
	s, ok := v.(string)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// addScript adds a member to the cached set and to a listing under way, if
// any; a set that would outgrow max size is dropped instead (unsure, and
// too big). KEYS: set, meta, build. ARGV: account id, max size.
var addScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then
  if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 and redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    redis.call('DEL', KEYS[1], KEYS[2])
  else
    redis.call('SADD', KEYS[1], ARGV[1])
  end
end
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('SADD', KEYS[3], ARGV[1]) end
return 0`)

// Add records that accountID is a member (found so, or seen accepting).
func (c *Cache) Add(ctx context.Context, ws, accountID string, maxSize int) error {
	k := c.keys(ws)
	if err := addScript.Run(ctx, c.rdb, []string{k.set, k.meta, k.build}, accountID, maxSize).Err(); err != nil {
		return fmt.Errorf("add %s to the member cache of %s: %w", accountID, ws, err)
	}
	return nil
}

// Remove takes accountID out of the cached set: an answer contradicted it.
func (c *Cache) Remove(ctx context.Context, ws, accountID string) error {
	k := c.keys(ws)
	pipe := c.rdb.TxPipeline()
	pipe.SRem(ctx, k.set, accountID)
	pipe.SRem(ctx, k.build, accountID)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("remove %s from the member cache of %s: %w", accountID, ws, err)
	}
	return nil
}

// Drop forgets the workspace's listing (the last known size stays).
func (c *Cache) Drop(ctx context.Context, ws string) error {
	k := c.keys(ws)
	if err := c.rdb.Del(ctx, k.set, k.meta).Err(); err != nil {
		return fmt.Errorf("drop the member cache of %s: %w", ws, err)
	}
	return nil
}

// demandWindow is how long a registered question counts as pending without
// being asked again (tasks waiting for the budget ask at each try).
const demandWindow = 6 * time.Hour

var demandScript = redis.NewScript(`
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('ZCARD', KEYS[1])`)

// Demand registers that person waits for a membership answer in ws and
// returns how many do (this one included).
func (c *Cache) Demand(ctx context.Context, ws, person string, now time.Time) (int, error) {
	n, err := demandScript.Run(ctx, c.rdb, []string{c.keys(ws).demand}, person, now.UnixMilli(), demandWindow.Milliseconds()).Int()
	if err != nil {
		return 0, fmt.Errorf("count the membership questions pending in %s: %w", ws, err)
	}
	return n, nil
}

// Served says person has their answer.
func (c *Cache) Served(ctx context.Context, ws, person string) error {
	if err := c.QueueServed(ctx, c.rdb, ws, person).Err(); err != nil {
		return fmt.Errorf("mark the membership question of %s in %s answered: %w", person, ws, err)
	}
	return nil
}

// QueueServed is Served on a pipeline (or any client): another store's
// round trip carries it.
func (c *Cache) QueueServed(ctx context.Context, cmd redis.Cmdable, ws, person string) *redis.IntCmd {
	return cmd.ZRem(ctx, c.keys(ws).demand, person)
}
