package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Seat reservations make a workspace's max_members guard atomic. Counting
// members and pending invitations in Bitbucket, then inviting, lets two
// workers that counted at once both invite into the last seat; so a worker
// reserves a seat in Redis between the count and the invitation, and the
// reservation counts against every other worker's count until the
// invitation shows in Bitbucket's own lists.

// seatReservationTTL bounds how long a worker that died mid-invitation keeps
// its seat reserved.
const seatReservationTTL = 5 * time.Minute

// seatSettledKept is how long a sent invitation's reservation keeps counting
// for counts that began before it was sent (they may have missed it). A
// count taken from the member cache is up to SeatCountMaxAge old.
const seatSettledKept = 2 * time.Hour

// SeatCountMaxAge is the oldest a seat count may be when a seat is reserved
// against it: invitations sent since are still known to the reservations.
const SeatCountMaxAge = seatSettledKept - 10*time.Minute

func (s *Store) seatsKey(ws string) string  { return s.prefix + ":seats:" + ws }
func (s *Store) seatedKey(ws string) string { return s.prefix + ":seated:" + ws }

// SeatCount marks when a count of a workspace's seats began, by Redis's clock
// (the one reservations are settled by).
type SeatCount struct{ at int64 } // unix µs

// Micros is when the count began (unix µs, Redis's clock).
func (c SeatCount) Micros() int64 { return c.at }

// SeatCountAt is a count that began at us (unix µs, Redis's clock), as
// Micros gave it: a count kept with the member cache.
func SeatCountAt(us int64) SeatCount { return SeatCount{at: us} }

// BeginSeatCount is called before counting a workspace's members and
// invitations in Bitbucket.
func (s *Store) BeginSeatCount(ctx context.Context) (SeatCount, error) {
	t, err := s.rdb.Time(ctx).Result()
	if err != nil {
		return SeatCount{}, fmt.Errorf("read Redis time for a seat count: %w", err)
	}
	return SeatCount{at: t.UnixMicro()}, nil
}

// reserveSeat admits a reservation when the seats counted in Bitbucket plus
// those reserved by others stay under max. KEYS: outstanding reservations
// (member: holder, score: expiry µs), settled ones (score: when settled).
// ARGV: holder, count start µs, counted, max, ttl µs, settled kept µs.
// Returns {admitted, reserved by others}.
var reserveSeat = redis.NewScript(`
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now)
redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", now - tonumber(ARGV[6]))
redis.call("ZREM", KEYS[1], ARGV[1])
local others = redis.call("ZCARD", KEYS[1]) + redis.call("ZCOUNT", KEYS[2], ARGV[2], "+inf")
local own = redis.call("ZSCORE", KEYS[2], ARGV[1])
if own and tonumber(own) >= tonumber(ARGV[2]) then others = others - 1 end
if tonumber(ARGV[3]) + others >= tonumber(ARGV[4]) then return {0, others} end
redis.call("ZADD", KEYS[1], now + tonumber(ARGV[5]), ARGV[1])
redis.call("PEXPIRE", KEYS[1], math.floor(tonumber(ARGV[5]) / 1000))
return {1, others}`)

// ReserveSeat reserves a seat in ws for holder (a person id) when counted
// (members plus pending invitations, counted since c) plus the seats others
// reserved stay under maxMembers. Reservations others settled after c still
// count: the count may have missed their invitations. A holder's earlier
// reservation is replaced, not counted.
func (s *Store) ReserveSeat(ctx context.Context, ws, holder string, c SeatCount, counted, maxMembers int) (admitted bool, reserved int, err error) {
	if s.opts.DryRun {
		return counted < maxMembers, 0, nil // a dry run sends nothing: nothing to reserve
	}
	res, err := reserveSeat.Run(ctx, s.rdb, []string{s.seatsKey(ws), s.seatedKey(ws)}, holder, c.at, counted, maxMembers,
		seatReservationTTL.Microseconds(), seatSettledKept.Microseconds()).Int64Slice()
	if err != nil {
		return false, 0, fmt.Errorf("reserve a seat in %s: %w", ws, err)
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("reserve a seat in %s: unexpected answer %v", ws, res)
	}
	return res[0] == 1, int(res[1]), nil
}

// settleSeat ends holder's reservation; a used seat (the invitation was
// sent) keeps counting for a while for the counts begun before now.
// KEYS as reserveSeat; ARGV: holder, used ("1"), settled kept µs.
var settleSeat = redis.NewScript(`
if redis.call("ZREM", KEYS[1], ARGV[1]) == 1 and ARGV[2] == "1" then
  local t = redis.call("TIME")
  redis.call("ZADD", KEYS[2], tonumber(t[1]) * 1000000 + tonumber(t[2]), ARGV[1])
  redis.call("PEXPIRE", KEYS[2], math.floor(tonumber(ARGV[3]) / 1000))
end
return 0`)

// SettleSeat ends holder's reservation in ws: used when the invitation went
// out (it is now in Bitbucket's pending list), not used when it failed or
// was not needed. A holder without a reservation is left alone.
func (s *Store) SettleSeat(ctx context.Context, ws, holder string, used bool) error {
	if s.opts.DryRun {
		return nil
	}
	u := "0"
	if used {
		u = "1"
	}
	if err := settleSeat.Run(ctx, s.rdb, []string{s.seatsKey(ws), s.seatedKey(ws)}, holder, u, seatSettledKept.Microseconds()).Err(); err != nil {
		return fmt.Errorf("settle the seat of %s in %s: %w", holder, ws, err)
	}
	return nil
}

// keptSeatCount is a member count shared by the signups of a burst.
type keptSeatCount struct {
	At      int64 `json:"at"` // when the count began, unix µs (Redis's clock)
	Members int   `json:"members"`
}

func (s *Store) seatCountKey(ws string) string { return s.prefix + ":seatcount:" + ws }

// KeepSeatCount shares a count of ws's members, begun at c, with every
// process for ttl (at most SeatCountMaxAge): reserving against it is as safe
// as against a count of one's own, since every reservation settled since c
// still counts.
func (s *Store) KeepSeatCount(ctx context.Context, ws string, c SeatCount, members int, ttl time.Duration) error {
	if s.opts.DryRun {
		return nil
	}
	return s.putJSON(ctx, s.seatCountKey(ws), "the seat count of "+ws, keptSeatCount{At: c.at, Members: members}, min(ttl, SeatCountMaxAge))
}

// KeptSeatCount returns the count KeepSeatCount shared for ws, while it lasts.
func (s *Store) KeptSeatCount(ctx context.Context, ws string) (c SeatCount, members int, ok bool, err error) {
	var k keptSeatCount
	if ok, err = s.getJSON(ctx, s.seatCountKey(ws), "the seat count of "+ws, &k); !ok || err != nil {
		return c, 0, false, err
	}
	return SeatCount{at: k.At}, k.Members, true, nil
}
