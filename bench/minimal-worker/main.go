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
	"net"
	"net/http"
	"os"
	"strconv"

	"github.com/hibiken/asynq"

	"github.com/autoinvite/autoinvite/bench/minimal"
)

func main() {
	log := minimal.Logger()
	opt := minimal.Redis(log)
	concurrency, err := strconv.Atoi(os.Getenv("MINIMAL_CONCURRENCY"))
	if err != nil {
		log.Fatal().Err(err).Msg("MINIMAL_CONCURRENCY")
	}
	srv := asynq.NewServer(opt, asynq.Config{Concurrency: concurrency, Queues: map[string]int{os.Getenv("MINIMAL_QUEUE"): 1}, LogLevel: asynq.WarnLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc(minimal.TypeUserEvent, func(ctx context.Context, t *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		log.Info().Str("task_id", id).Str("type", t.Type()).Msg("done")
		return nil
	})
	ln, err := net.Listen("tcp", os.Getenv("MINIMAL_LISTEN"))
	if err != nil {
		log.Fatal().Err(err).Msg("listen")
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	log.Info().Str("listen", ln.Addr().String()).Msg("minimal worker serving")
	if err := srv.Run(mux); err != nil { // until SIGTERM or SIGINT
		log.Fatal().Err(err).Msg("asynq server")
	}
}
