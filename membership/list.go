package membership

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/autoinvite/autoinvite/integrations/bitbucket"
)

// Source lists a workspace's members page by page.
type Source interface {
	ListMembersPage(ctx context.Context, workspace, next string) (bitbucket.MembersPage, error)
}

// ErrBusy means another task is listing the workspace's members.
var ErrBusy = errors.New("another task is listing the workspace's members")

// listerLease bounds how long a crashed lister blocks the others.
const listerLease = 2 * time.Minute

// Listing is one call to Refresh.
type Listing struct {
	Workspace string
	Source    Source
	PageLen   int
	// Pending questions: a listing whose first page shows more pages than
	// this stops there (checking each costs less).
	Pending int
	Limits  Limits
	Now     func() time.Time
	// Snapshot, when set, is taken as a new listing begins (the seat guard's
	// invitation count).
	Snapshot func(ctx context.Context) (Snapshot, error)
}

// releaseScript deletes the lister key only if it is still ours.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// publishScript makes a finished listing the cached set. KEYS: build, set,
// meta, build meta, size. ARGV: listed at ms, counted at µs, invitations,
// ttl ms, size kept ms.
var publishScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[2])
else
  redis.call('DEL', KEYS[2])
end
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('HSET', KEYS[3], 'listed_at', ARGV[1], 'counted_at', ARGV[2], 'invitations', ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
local n = redis.call('SCARD', KEYS[2])
redis.call('SET', KEYS[5], n, 'PX', ARGV[5])
return n`)

// Refresh lists the workspace's members into the cache, resuming a listing
// that stopped (a budget wait, a crash) where it stopped. listed is false
// when the listing does not pay (more pages than pending questions, more
// members than max size): the member count is remembered for the next
// decision. ErrBusy: another task is listing.
func (c *Cache) Refresh(ctx context.Context, l Listing) (listed bool, err error) {
	k := c.keys(l.Workspace)
	tok := make([]byte, 8)
	_, _ = rand.Read(tok)
	token := hex.EncodeToString(tok)
	ok, err := c.rdb.SetNX(ctx, k.lister, token, listerLease).Result()
	if err != nil {
		return false, fmt.Errorf("list the members of %s: %w", l.Workspace, err)
	}
	if !ok {
		return false, ErrBusy
	}
	defer releaseScript.Run(context.WithoutCancel(ctx), c.rdb, []string{k.lister}, token)

	state, err := c.rdb.HGetAll(ctx, k.buildMeta).Result()
	if err != nil {
		return false, fmt.Errorf("list the members of %s: %w", l.Workspace, err)
	}
	started, _ := strconv.ParseInt(state["started"], 10, 64)
	ttl := 2 * l.Limits.MaxAge
	fresh := started == 0 || l.Now().Sub(time.UnixMilli(started)) >= l.Limits.MaxAge
	if fresh {
		// A new listing: what it sees is as old as its start.
		snap := Snapshot{Invitations: -1}
		if l.Snapshot != nil {
			if snap, err = l.Snapshot(ctx); err != nil {
				return false, err
			}
		}
		started = l.Now().UnixMilli()
		state = map[string]string{"started": strconv.FormatInt(started, 10), "counted_at": strconv.FormatInt(snap.CountedAt, 10),
			"invitations": strconv.Itoa(snap.Invitations), "next": ""}
		pipe := c.rdb.TxPipeline()
		pipe.Del(ctx, k.build, k.buildMeta)
		pipe.HSet(ctx, k.buildMeta, state)
		pipe.PExpire(ctx, k.buildMeta, ttl)
		if _, err := pipe.Exec(ctx); err != nil {
			return false, fmt.Errorf("list the members of %s: %w", l.Workspace, err)
		}
	}
	abandon := func() (bool, error) {
		if err := c.rdb.Del(ctx, k.build, k.buildMeta).Err(); err != nil {
			return false, fmt.Errorf("list the members of %s: %w", l.Workspace, err)
		}
		return false, nil
	}
	next := state["next"]
	// No budget phase: pages spent ahead would be counted from the spend,
	// Atlassian counts from their arrival, and a listing can take seconds.
	for first := next == ""; ; first = false {
		page, err := l.Source.ListMembersPage(ctx, l.Workspace, next)
		if err != nil {
			return false, err // the pages read so far stay for the next try
		}
		if page.Size >= 0 {
			if err := c.rdb.Set(ctx, k.size, page.Size, sizeKept).Err(); err != nil {
				return false, fmt.Errorf("list the members of %s: %w", l.Workspace, err)
			}
			if page.Size > l.Limits.MaxSize || (first && Pages(page.Size, l.PageLen) > l.Pending) {
				return abandon()
			}
		}
		pipe := c.rdb.TxPipeline()
		if len(page.AccountIDs) > 0 {
			ids := make([]any, len(page.AccountIDs))
			for i, id := range page.AccountIDs {
				ids[i] = id
			}
			pipe.SAdd(ctx, k.build, ids...)
		}
		card := pipe.SCard(ctx, k.build)
		pipe.HSet(ctx, k.buildMeta, "next", page.Next)
		pipe.PExpire(ctx, k.build, ttl)
		pipe.PExpire(ctx, k.buildMeta, ttl)
		if _, err := pipe.Exec(ctx); err != nil {
			return false, fmt.Errorf("list the members of %s: %w", l.Workspace, err)
		}
		if int(card.Val()) > l.Limits.MaxSize {
			return abandon()
		}
		if page.Next == "" {
			break
		}
		next = page.Next
	}
	err = publishScript.Run(ctx, c.rdb, []string{k.build, k.set, k.meta, k.buildMeta, k.size},
		started, state["counted_at"], state["invitations"], ttl.Milliseconds(), sizeKept.Milliseconds()).Err()
	if err != nil {
		return false, fmt.Errorf("publish the member listing of %s: %w", l.Workspace, err)
	}
	return true, nil
}

// Listing reports whether a task is listing the workspace's members now.
func (c *Cache) Listing(ctx context.Context, ws string) (bool, error) {
	n, err := c.rdb.Exists(ctx, c.keys(ws).lister).Result()
	if err != nil {
		return false, fmt.Errorf("is anyone listing the members of %s: %w", ws, err)
	}
	return n == 1, nil
}
