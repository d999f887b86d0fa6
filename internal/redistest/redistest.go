// Package redistest gives a test a Redis of its own: an in-process miniredis by
// default, or the real server named by AUTOINVITE_TEST_REDIS_URL, under a key
// prefix unique to the test. On a shared server it deletes only what it made.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// EnvURL names the variable that points the tests at a real Redis.
const EnvURL = "AUTOINVITE_TEST_REDIS_URL"

// Redis is a test's Redis.
type Redis struct {
	URL    string
	Prefix string               // unique key prefix (ledger keys and queue names)
	Mini   *miniredis.Miniredis // nil on a real server
}

// Real reports whether tests run against a real redis-server.
func Real() bool { return os.Getenv(EnvURL) != "" }

// New returns a Redis for t and cleans up after it.
func New(t testing.TB) *Redis {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	r := &Redis{Prefix: "aitest-" + hex.EncodeToString(b[:])}
	if url := os.Getenv(EnvURL); url != "" {
		r.URL = url
		t.Cleanup(func() { r.cleanup(t) })
		return r
	}
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		t.Fatalf("start miniredis: %v", err)
	}
	t.Cleanup(m.Close)
	r.Mini, r.URL = m, "redis://"+m.Addr()
	return r
}

// cleanup deletes the test's ledger keys and its Asynq queues' keys.
func (r *Redis) cleanup(t testing.TB) {
	opts, err := redis.ParseURL(r.URL)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx := context.Background()
	for _, pattern := range []string{"{" + r.Prefix + "}:*", "{" + r.Prefix + ":rl:*", "asynq:{" + r.Prefix + ":*"} {
		iter := rdb.Scan(ctx, 0, pattern, 500).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	}
	queues, _ := rdb.SMembers(ctx, "asynq:queues").Result()
	for _, q := range queues {
		if len(q) > len(r.Prefix) && q[:len(r.Prefix)+1] == r.Prefix+":" {
			rdb.SRem(ctx, "asynq:queues", q)
		}
	}
}

// Client returns a client of r, closed when the test ends.
func (r *Redis) Client(t testing.TB) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}
