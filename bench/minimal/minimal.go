// Package minimal is what the benchmarks' limits (bench/minimal-intake,
// bench/minimal-worker) share: they depend on nothing of autoinvite's but
// write their log lines as autoinvite writes its own.
package minimal

import (
	"context"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"
)

// TypeUserEvent is jobs.TypeUserEvent, written out.
const TypeUserEvent = "jira:user_event"

// Logger writes zerolog JSON lines with RFC 3339 timestamps at info level to
// stderr, as autoinvite does.
func Logger() zerolog.Logger {
	zerolog.TimeFieldFormat = time.RFC3339Nano
	return zerolog.New(os.Stderr).Level(zerolog.InfoLevel).With().Timestamp().Logger()
}

// Redis is the Redis of MINIMAL_REDIS_URL; a bad URL ends the process.
func Redis(log zerolog.Logger) asynq.RedisConnOpt {
	opt, err := asynq.ParseRedisURI(os.Getenv("MINIMAL_REDIS_URL"))
	if err != nil {
		log.Fatal().Err(err).Msg("MINIMAL_REDIS_URL")
	}
	return opt
}

// Work runs an Asynq server with MINIMAL_CONCURRENCY on MINIMAL_QUEUE whose
// handler does work and writes one log line per task, until SIGTERM or
// SIGINT. It listens on MINIMAL_LISTEN only so that the benchmark sees it is
// up.
func Work(log zerolog.Logger, opt asynq.RedisConnOpt, work func(ctx context.Context, t *asynq.Task) error) {
	concurrency, err := strconv.Atoi(os.Getenv("MINIMAL_CONCURRENCY"))
	if err != nil {
		log.Fatal().Err(err).Msg("MINIMAL_CONCURRENCY")
	}
	srv := asynq.NewServer(opt, asynq.Config{Concurrency: concurrency, Queues: map[string]int{os.Getenv("MINIMAL_QUEUE"): 1}, LogLevel: asynq.WarnLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc(TypeUserEvent, func(ctx context.Context, t *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		if err := work(ctx, t); err != nil {
			log.Error().Err(err).Str("task_id", id).Str("type", t.Type()).Msg("failed")
			return err
		}
		log.Info().Str("task_id", id).Str("type", t.Type()).Msg("done")
		return nil
	})
	ln, err := net.Listen("tcp", os.Getenv("MINIMAL_LISTEN"))
	if err != nil {
		log.Fatal().Err(err).Msg("listen")
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	log.Info().Str("listen", ln.Addr().String()).Msg("minimal worker serving")
	if err := srv.Run(mux); err != nil {
		log.Fatal().Err(err).Msg("asynq server")
	}
}
