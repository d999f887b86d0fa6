package ledger

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Watermark is the newest Jira event applied to a person (Jira's timestamp,
// in ms) and whether it deactivated them: an older event changes nothing, and
// a deletion is a tombstone only a newer event lifts.
type Watermark struct {
	At      int64
	Deleted bool
}

// Older reports whether event comes before w in Jira's order: older, or a
// non-deactivating event with the same timestamp as a deletion (a deletion
// is a tombstone only a newer event lifts).
func (w Watermark) Older(event Watermark) bool {
	return event.At < w.At || (event.At == w.At && w.Deleted && !event.Deleted)
}

// String is the watermark as stored: "<ms>" or "<ms>:deleted".
func (w Watermark) String() string {
	v := strconv.FormatInt(w.At, 10)
	if w.Deleted {
		v += ":deleted"
	}
	return v
}

// watermarkKey held the watermark before it moved into the person's value;
// still read, and deleted when a newer one is recorded.
func (s *Store) watermarkKey(personID string) string { return s.prefix + ":events:" + personID }

// The watermark is a line of the person's value, "@<ms>[:deleted]", after
// its number line if any: a key of its own cost 136 B per person. Scripts
// share these functions: watermarkOf(value, old-format key) returns the
// watermark ("" when none) and whether it came from the old key;
// withWatermark(value, watermark) returns the value with it.
const watermarkLua = `
local function watermarkOf(v, oldKey)
  local wm = string.match(v, "^@(%d+:?%a*)\n") or string.match(v, "^#%d+\n@(%d+:?%a*)\n")
  if wm then return wm, false end
  wm = redis.call("GET", oldKey) or ""
  return wm, wm ~= ""
end
local function withWatermark(v, wm)
  v = (string.gsub(v, "^@%d+:?%a*\n", "", 1))
  v = (string.gsub(v, "^(#%d+\n)@%d+:?%a*\n", "%1", 1))
  local head = string.match(v, "^#%d+\n") or ""
  return head .. "@" .. wm .. "\n" .. string.sub(v, #head + 1)
end
`

var (
	getWatermarkScript = redis.NewScript(watermarkLua + `
local wm = watermarkOf(redis.call("GET", KEYS[1]) or "", KEYS[2])
return wm`)
	setWatermarkScript = redis.NewScript(watermarkLua + `
redis.call("SET", KEYS[1], withWatermark(redis.call("GET", KEYS[1]) or "", ARGV[1]))
redis.call("DEL", KEYS[2])
return 1`)
)

// GetWatermark returns the person's watermark (zero when none).
func (s *Store) GetWatermark(ctx context.Context, personID string) (Watermark, error) {
	raw, err := getWatermarkScript.Run(ctx, s.rdb, []string{s.personValueKey(personID), s.watermarkKey(personID)}).Text()
	if err != nil {
		return Watermark{}, fmt.Errorf("read event watermark of %s: %w", personID, err)
	}
	return parseWatermark(personID, raw)
}

// parseWatermark decodes "<ms>" or "<ms>:deleted" ("" is no watermark).
func parseWatermark(personID, raw string) (Watermark, error) {
	if raw == "" {
		return Watermark{}, nil
	}
	at, deleted, _ := strings.Cut(raw, ":")
	n, err := strconv.ParseInt(at, 10, 64)
	if err != nil {
		return Watermark{}, fmt.Errorf("decode event watermark of %s: %q", personID, raw)
	}
	return Watermark{At: n, Deleted: deleted == "deleted"}, nil
}

// SetWatermark records the newest event applied to the person; the caller
// holds the person's lock and has checked that w is not older.
func (s *Store) SetWatermark(ctx context.Context, personID string, w Watermark) error {
	if err := setWatermarkScript.Run(ctx, s.rdb, []string{s.personValueKey(personID), s.watermarkKey(personID)}, w.String()).Err(); err != nil {
		return fmt.Errorf("record event watermark of %s: %w", personID, err)
	}
	return nil
}
