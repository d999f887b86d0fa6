// Package outcome is what a task handler decided about its task — done, retry
// (after a delay), wait for the rate budget, or give up with a reason — and
// the one place where that is translated to Asynq: whether to retry, whether
// the attempt counts as a failure, and how long to wait before the next one.
package outcome

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"

	"github.com/autoinvite/autoinvite/integrations/atlassian"
	"github.com/autoinvite/autoinvite/integrations/ratelimit"
	"github.com/autoinvite/autoinvite/internal/transient"
	"github.com/autoinvite/autoinvite/ledger"
)

// Kind of outcome.
type Kind int

// Outcomes a handler can reach.
const (
	Done   Kind = iota
	Yield       // another task holds the person, or took them over: again soon, not a failure
	Wait        // the rate budget is spent: again when it refills, not a failure
	Retry       // a temporary failure: again with back-off (or as the API asked)
	GiveUp      // a permanent failure: archived, on record with its reason
)

func (k Kind) String() string {
	return [...]string{"done", "yield", "wait", "retry", "give-up"}[k]
}

// yieldDelay is how soon a task that yielded the person comes back (the
// ledger makes the re-run skip what was done).
const yieldDelay = 2 * time.Second

// Of classifies a handler's error. errs are looked at one by one: any that
// may pass makes the whole a Retry rather than a GiveUp.
func Of(err error) Kind {
	switch {
	case err == nil:
		return Done
	case errors.Is(err, asynq.SkipRetry):
		return GiveUp
	case errors.Is(err, ledger.ErrBusy), errors.Is(err, ledger.ErrLockLost), errors.Is(err, asynq.ErrLeaseExpired):
		return Yield
	}
	if _, ok := ratelimit.AsWait(err); ok {
		return Wait
	}
	if anyTemporary(err) {
		return Retry
	}
	return GiveUp
}

func anyTemporary(err error) bool {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			if anyTemporary(e) {
				return true
			}
		}
		return false
	}
	return transient.Is(err)
}

// Asynq turns a handler's error into what the Asynq handler returns: nil,
// the error (retried), or the error marked SkipRetry (archived at once).
func Asynq(err error) error {
	if Of(err) == GiveUp && !errors.Is(err, asynq.SkipRetry) {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	return err
}

// IsFailure is Asynq's IsFailure: yielding and waiting spend no retry.
func IsFailure(err error) bool {
	k := Of(err)
	return k != Yield && k != Wait
}

// RetryDelay is Asynq's RetryDelayFunc for the outcome of err.
func RetryDelay(n int, err error, t *asynq.Task) time.Duration {
	switch Of(err) {
	case Yield:
		return yieldDelay
	case Wait:
		w, _ := ratelimit.AsWait(err)
		if w.Position >= 0 {
			// Its turn in the backlog, oldest first: jitter would reorder it.
			return w.RetryAfter
		}
		return w.RetryAfter + time.Duration(rand.Int64N(int64(w.RetryAfter)/10+int64(time.Second)))
	}
	if apiErr, ok := atlassian.AsAPIError(err); ok && apiErr.RetryAfter > 0 {
		return apiErr.RetryAfter // a 429 or 503 said how long
	}
	return asynq.DefaultRetryDelayFunc(n, err, t)
}
