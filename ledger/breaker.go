package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

func (s *Store) breakerKey(ws string) string { return s.prefix + ":breaker:" + ws }
func (s *Store) heldKey(ws string) string    { return s.prefix + ":held:" + ws }
func (s *Store) removalsKey(ws string, now time.Time) string {
	return s.prefix + ":removals:" + ws + ":" + now.UTC().Format("2006010215")
}

// allowRemoval counts one removal in the workspace's current hour. Over the
// limit it trips the breaker; a tripped breaker refuses every removal until Resume.
var allowRemoval = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
local n = redis.call("INCR", KEYS[2])
redis.call("EXPIRE", KEYS[2], 7200)
if n > tonumber(ARGV[1]) then
  redis.call("SET", KEYS[1], ARGV[2])
  return 0
end
return 1`)

// AllowRemoval reports whether one more group removal may happen now in ws.
func (s *Store) AllowRemoval(ctx context.Context, ws string, limit int, now time.Time) (bool, error) {
	n, err := allowRemoval.Run(ctx, s.rdb, []string{s.breakerKey(ws), s.removalsKey(ws, now)}, limit, now.Unix()).Int()
	if err != nil {
		return false, fmt.Errorf("revocation breaker of %s: %w", ws, err)
	}
	return n == 1, nil
}

// Hold remembers a person whose removals wait for the breaker to be resumed.
func (s *Store) Hold(ctx context.Context, ws, personID string) error {
	if err := s.rdb.SAdd(ctx, s.heldKey(ws), personID).Err(); err != nil {
		return fmt.Errorf("hold removal of %s in %s: %w", personID, ws, err)
	}
	return nil
}

// Breaker tells whether removals are paused in ws, since when, and how many
// people are held.
func (s *Store) Breaker(ctx context.Context, ws string) (tripped bool, since time.Time, held int64, err error) {
	v, err := s.rdb.Get(ctx, s.breakerKey(ws)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, since, 0, fmt.Errorf("read breaker of %s: %w", ws, err)
	}
	if err == nil {
		tripped = true
		if sec, perr := strconv.ParseInt(v, 10, 64); perr == nil {
			since = time.Unix(sec, 0).UTC()
		}
	}
	held, err = s.rdb.SCard(ctx, s.heldKey(ws)).Result()
	if err != nil {
		return tripped, since, 0, fmt.Errorf("read held removals of %s: %w", ws, err)
	}
	return tripped, since, held, nil
}

// Resume closes the breaker, restarts the hour's count and returns the held people.
func (s *Store) Resume(ctx context.Context, ws string, now time.Time) ([]string, error) {
	var members *redis.StringSliceCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		members = p.SMembers(ctx, s.heldKey(ws))
		p.Del(ctx, s.breakerKey(ws), s.heldKey(ws), s.removalsKey(ws, now))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("resume removals in %s: %w", ws, err)
	}
	return members.Val(), nil
}
