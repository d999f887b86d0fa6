// Command minimal-worker is the limit the pipeline benchmark compares the
// deployed autoinvite worker with (go run ./bench -only pipeline starts it as
// its own process): an Asynq server with the same concurrency on the same
// queue whose handler does nothing but write one structured log line per task,
// as autoinvite writes its own (zerolog JSON, RFC 3339 timestamps, info level,
// to stderr), so that both run with logs on. It listens on MINIMAL_LISTEN only
// so that the benchmark sees it is up.
//
//	MINIMAL_LISTEN=127.0.0.1:9000 MINIMAL_REDIS_URL=redis://127.0.0.1:6379/0 MINIMAL_QUEUE=q MINIMAL_CONCURRENCY=10 minimal-worker
package main

import (
	"context"

	"github.com/hibiken/asynq"

	"github.com/autoinvite/autoinvite/bench/minimal"
)

func main() {
	log := minimal.Logger()
	minimal.Work(log, minimal.Redis(log), func(context.Context, *asynq.Task) error { return nil })
}
