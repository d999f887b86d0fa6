// Command calls-worker is a floor of the pipeline benchmark as deployed (go
// run ./bench -only pipeline starts it as its own process): the limit,
// bench/minimal-worker, whose handler also makes the signup's unavoidable
// Bitbucket calls (2 adds or 1 invitation) through autoinvite's client and
// limiter, against the fake Atlassian at MINIMAL_FAKE_URL; limiter keys under
// MINIMAL_KEY_PREFIX. No ledger, no rules: what any design that runs one task
// per signup pays at least.
//
//	MINIMAL_LISTEN=127.0.0.1:9000 MINIMAL_REDIS_URL=redis://127.0.0.1:6379/0 MINIMAL_QUEUE=q MINIMAL_CONCURRENCY=10 \
//	  MINIMAL_FAKE_URL=http://127.0.0.1:9001 MINIMAL_KEY_PREFIX=bench calls-worker
package main

import (
	"context"
	"os"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/autoinvite/autoinvite/bench/floor"
	"github.com/autoinvite/autoinvite/bench/minimal"
)

func main() {
	log := minimal.Logger()
	ropt, err := redis.ParseURL(os.Getenv("MINIMAL_REDIS_URL"))
	if err != nil {
		log.Fatal().Err(err).Msg("MINIMAL_REDIS_URL")
	}
	calls := floor.UnavoidableCalls(redis.NewClient(ropt), os.Getenv("MINIMAL_KEY_PREFIX"), os.Getenv("MINIMAL_FAKE_URL"), nil)
	minimal.Work(log, minimal.Redis(log), func(ctx context.Context, t *asynq.Task) error { return calls(ctx, t.Payload()) })
}
