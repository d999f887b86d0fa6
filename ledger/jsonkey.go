package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// putJSON stores v as JSON under key for ttl; what names it in errors.
func (s *Store) putJSON(ctx context.Context, key, what string, v any, ttl time.Duration) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", what, err)
	}
	if err := s.rdb.Set(ctx, key, raw, ttl).Err(); err != nil {
		return fmt.Errorf("store %s: %w", what, err)
	}
	return nil
}

// getJSON reads the JSON under key into v; ok is false when there is none.
func (s *Store) getJSON(ctx context.Context, key, what string, v any) (ok bool, err error) {
	raw, err := s.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", what, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("decode %s: %w", what, err)
	}
	return true, nil
}
