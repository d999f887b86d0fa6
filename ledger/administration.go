package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Administration is what autoinvite learned about where a workspace is
// administered: every process reads it, so one refused 1.0 write switches all.
type Administration struct {
	Kind   string    `json:"kind"` // "atlassian"
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

func (s *Store) administrationKey() string { return s.prefix + ":administration" }

// SetAdministration remembers a workspace's administration. It is a fact
// about Atlassian, not a decision, so it is written in dry runs too.
func (s *Store) SetAdministration(ctx context.Context, workspace string, a Administration) error {
	raw, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode administration of %s: %w", workspace, err)
	}
	if err := s.rdb.HSet(ctx, s.administrationKey(), workspace, raw).Err(); err != nil {
		return fmt.Errorf("remember administration of %s: %w", workspace, err)
	}
	return nil
}

// GetAdministration returns what was learned about a workspace (nil: nothing).
func (s *Store) GetAdministration(ctx context.Context, workspace string) (*Administration, error) {
	raw, err := s.rdb.HGet(ctx, s.administrationKey(), workspace).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read administration of %s: %w", workspace, err)
	}
	var a Administration
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, fmt.Errorf("decode administration of %s: %w", workspace, err)
	}
	return &a, nil
}

// ForgetAdministration drops what was learned (an admin moved the workspace back).
func (s *Store) ForgetAdministration(ctx context.Context, workspace string) error {
	return s.rdb.HDel(ctx, s.administrationKey(), workspace).Err()
}
