package ledger

import (
	"context"
	"errors"
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

func (s *Store) watermarkKey(personID string) string { return s.prefix + ":events:" + personID }

// GetWatermark returns the person's watermark (zero when none).
func (s *Store) GetWatermark(ctx context.Context, personID string) (Watermark, error) {
	raw, err := s.rdb.Get(ctx, s.watermarkKey(personID)).Result()
	if errors.Is(err, redis.Nil) {
		return Watermark{}, nil
	}
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
	if err := s.rdb.Set(ctx, s.watermarkKey(personID), w.String(), 0).Err(); err != nil {
		return fmt.Errorf("record event watermark of %s: %w", personID, err)
	}
	return nil
}
