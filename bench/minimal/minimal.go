// Package minimal is what the benchmarks' limits (bench/minimal-intake,
// bench/minimal-worker) share: they depend on nothing of autoinvite's but
// write their log lines as autoinvite writes its own.
package minimal

import (
	"os"
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
