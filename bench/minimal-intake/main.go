// Command minimal-intake is the limit the intake benchmark compares autoinvite
// with (go run ./bench -only intake starts it as its own process): a net/http
// handler that reads the body and calls asynq.Client.Enqueue with the delivery
// id as task id (default asynq client), and nothing else but one structured
// log line per request, written as autoinvite writes its own (zerolog JSON,
// RFC 3339 timestamps, info level, to stderr), so that both run with logs on.
// It logs the fields it has (method, remote, delivery and task id, status,
// duration); what only autoinvite knows (request id, event, person, outcome)
// is part of autoinvite's work.
//
//	MINIMAL_LISTEN=127.0.0.1:9000 MINIMAL_REDIS_URL=redis://127.0.0.1:6379/0 MINIMAL_QUEUE=q minimal-intake
package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/hibiken/asynq"

	"github.com/autoinvite/autoinvite/bench/minimal"
)

func main() {
	log := minimal.Logger()
	opt := minimal.Redis(log)
	client := asynq.NewClient(opt)
	defer client.Close()
	queue := os.Getenv("MINIMAL_QUEUE")
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Atlassian-Webhook-Identifier")
		body, err := io.ReadAll(r.Body)
		if err == nil {
			_, err = client.EnqueueContext(r.Context(), asynq.NewTask(minimal.TypeUserEvent, body), asynq.TaskID(id), asynq.Queue(queue))
		}
		status := http.StatusAccepted
		if err != nil {
			status = http.StatusInternalServerError
			http.Error(w, err.Error(), status)
		} else {
			w.WriteHeader(status)
		}
		log.Info().Str("method", r.Method).Str("remote", r.RemoteAddr).Str("delivery_id", id).Str("task_id", id).
			Int("status", status).Dur("duration_ms", time.Since(start)).Msg("webhook")
	})
	ln, err := net.Listen("tcp", os.Getenv("MINIMAL_LISTEN"))
	if err != nil {
		log.Fatal().Err(err).Msg("listen")
	}
	log.Info().Str("listen", ln.Addr().String()).Msg("minimal intake serving")
	log.Fatal().Err(http.Serve(ln, nil)).Msg("serve")
}
