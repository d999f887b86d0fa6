package outcome

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/autoinvite/autoinvite/integrations/atlassian"
	"github.com/autoinvite/autoinvite/integrations/ratelimit"
	"github.com/autoinvite/autoinvite/ledger"
)

func TestOutcomesAndTheirTranslationToAsynq(t *testing.T) {
	wait := &ratelimit.WaitError{API: "bitbucket", Budget: "requests", RetryAfter: 90 * time.Second, Position: 3}
	for _, c := range []struct {
		name      string
		err       error
		kind      Kind
		skipRetry bool
		failure   bool
		delay     time.Duration // 0: Asynq's own back-off
	}{
		{"done", nil, Done, false, false, 0},
		{"busy", fmt.Errorf("lock p: %w", ledger.ErrBusy), Yield, false, false, yieldDelay},
		{"lock lost", errors.Join(errors.New("add"), ledger.ErrLockLost), Yield, false, false, yieldDelay},
		{"budget", fmt.Errorf("add: %w", wait), Wait, false, false, 90 * time.Second},
		{"429 with a reset", &atlassian.APIError{Status: http.StatusTooManyRequests, RetryAfter: 42 * time.Second}, Retry, false, true, 42 * time.Second},
		{"one temporary among permanent", errors.Join(&atlassian.APIError{Status: 404}, &atlassian.APIError{Status: 502}), Retry, false, true, 0},
		{"permanent", &atlassian.APIError{Status: http.StatusForbidden}, GiveUp, true, true, 0},
		{"already skip-retry", fmt.Errorf("decode: %w", asynq.SkipRetry), GiveUp, true, true, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Of(c.err); got != c.kind {
				t.Fatalf("Of = %s, want %s", got, c.kind)
			}
			out := Asynq(c.err)
			if errors.Is(out, asynq.SkipRetry) != c.skipRetry || (c.err == nil) != (out == nil) {
				t.Fatalf("Asynq = %v, skip-retry %v", out, c.skipRetry)
			}
			if c.err != nil && !errors.Is(out, c.err) {
				t.Fatalf("Asynq lost the cause: %v", out)
			}
			if c.err != nil && IsFailure(c.err) != c.failure {
				t.Fatalf("IsFailure = %v, want %v", IsFailure(c.err), c.failure)
			}
			if c.delay > 0 {
				if got := RetryDelay(1, c.err, nil); got != c.delay {
					t.Fatalf("RetryDelay = %s, want %s", got, c.delay)
				}
			}
		})
	}
}
