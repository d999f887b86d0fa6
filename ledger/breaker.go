package ledger

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

func (s *Store) breakerKey(ws string) string  { return s.prefix + ":breaker:" + ws }
func (s *Store) heldKey(ws string) string     { return s.prefix + ":held:" + ws }
func (s *Store) removalsKey(ws string) string { return s.prefix + ":removals:" + ws }

// removalWindow is the span the removal limit counts over: a rolling hour,
// so no clock-hour boundary lets twice the limit through.
const removalWindow = time.Hour

// allowRemoval counts one removal in the workspace's rolling window
// (KEYS[2]: a sorted set of removal times in ms, ARGV[3] now, ARGV[4] the
// window, ARGV[5] a unique member). At the limit it trips the breaker
// (KEYS[1]); a tripped breaker refuses every removal until Resume.
var allowRemoval = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
local now, window = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", "(" .. (now - window + 1))
if redis.call("ZCARD", KEYS[2]) >= tonumber(ARGV[1]) then
  redis.call("SET", KEYS[1], ARGV[2])
  return 0
end
redis.call("ZADD", KEYS[2], now, ARGV[5])
redis.call("PEXPIRE", KEYS[2], window)
return 1`)

// AllowRemoval reports whether one more group removal may happen at now in
// ws: at most limit in any hour.
func (s *Store) AllowRemoval(ctx context.Context, ws string, limit int, now time.Time) (bool, error) {
	var b [6]byte
	rand.Read(b[:])
	ms := now.UnixMilli()
	member := strconv.FormatInt(ms, 10) + "-" + hex.EncodeToString(b[:])
	n, err := allowRemoval.Run(ctx, s.rdb, []string{s.breakerKey(ws), s.removalsKey(ws)},
		limit, now.Unix(), ms, removalWindow.Milliseconds(), member).Int()
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

// Unhold forgets a held person once their held removals are done.
func (s *Store) Unhold(ctx context.Context, ws, personID string) error {
	if err := s.rdb.SRem(ctx, s.heldKey(ws), personID).Err(); err != nil {
		return fmt.Errorf("release held removal of %s in %s: %w", personID, ws, err)
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

// Resume closes the breaker, restarts the window's count and returns the held
// people. They stay held until Unhold: a removal that fails keeps its person
// held for the next resume.
func (s *Store) Resume(ctx context.Context, ws string) ([]string, error) {
	var members *redis.StringSliceCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		members = p.SMembers(ctx, s.heldKey(ws))
		p.Del(ctx, s.breakerKey(ws), s.removalsKey(ws))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("resume removals in %s: %w", ws, err)
	}
	return members.Val(), nil
}
