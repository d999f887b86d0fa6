package transient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/autoinvite/autoinvite/integrations/atlassian"
)

// Errors as a real go-redis client returns them from a server in each state.
func TestRedisFailoverErrorsAreTemporary(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1})
	defer rdb.Close()
	for msg, want := range map[string]bool{
		"READONLY You can't write against a read only replica.":                            true,
		"LOADING Redis is loading the dataset in memory":                                   true,
		"MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.": true,
		"CLUSTERDOWN The cluster is down":                                                  true,
		"TRYAGAIN Multiple keys request during rehashing of slot":                          true,
		"OOM command not allowed when used memory > 'maxmemory'.":                          true,
		"WRONGTYPE Operation against a key holding the wrong kind of value":                false,
		"NOSCRIPT No matching script. Please use EVAL.":                                    false,
		"ERR unknown command": false,
	} {
		m.SetError(msg)
		err := rdb.Set(context.Background(), "k", "v", 0).Err()
		if err == nil {
			t.Fatalf("%s: no error from the server", msg)
		}
		wrapped := fmt.Errorf("save entry acme/p: %w", err)
		if got := Is(wrapped); got != want {
			t.Errorf("Is(%q) = %v, want %v", err, got, want)
		}
	}
	m.SetError("")
	m.Close() // a connection reset / refused mid-task
	err := rdb.Set(context.Background(), "k", "v", 0).Err()
	if err == nil || !Is(fmt.Errorf("lock: %w", err)) {
		t.Fatalf("a closed server's error %v is not temporary", err)
	}
}

func TestAtlassianAndOtherErrors(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&atlassian.APIError{Status: http.StatusTooManyRequests}, true},
		{&atlassian.APIError{Status: http.StatusBadGateway}, true},
		{&atlassian.APIError{Status: http.StatusNotFound}, false},
		{fmt.Errorf("add: %w", &atlassian.APIError{Status: http.StatusForbidden}), false},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{fmt.Errorf("dial: %w", syscall.ECONNRESET), true},
		{context.DeadlineExceeded, true},
		{errors.New("group not found"), false},
		{nil, false},
	} {
		if got := Is(c.err); got != c.want {
			t.Errorf("Is(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
