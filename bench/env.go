package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/app"
	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/internal/redistest"
)

// benchEnv is the private Redis every benchmark shares (flushed between them).
type benchEnv struct {
	o        options
	redisURL string
	rdb      *redis.Client
	server   *exec.Cmd
	dir      string
}

func newBenchEnv(o options) (*benchEnv, error) {
	e := &benchEnv{o: o, redisURL: o.redisURL}
	if e.redisURL == "" {
		if err := e.startRedis(); err != nil {
			return nil, err
		}
	}
	opts, err := redis.ParseURL(e.redisURL)
	if err != nil {
		return nil, err
	}
	opts.PoolSize = 128
	e.rdb = redis.NewClient(opts)
	return e, e.rdb.Ping(context.Background()).Err()
}

// startRedis runs redis-server on a free port, without persistence: the
// benchmarks measure autoinvite, not the disk.
func (e *benchEnv) startRedis() error {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return errors.New("redis-server not found: install it (apt-get install redis-server) or pass -redis-url")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	e.dir, _ = os.MkdirTemp("", "autoinvite-bench")
	e.server = exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", e.dir, "--maxmemory-policy", "noeviction", "--logfile", filepath.Join(e.dir, "redis.log"))
	if err := e.server.Start(); err != nil {
		return err
	}
	e.redisURL = fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("redis-server did not start")
}

func (e *benchEnv) close() {
	if e.rdb != nil {
		e.rdb.Close()
	}
	if e.server != nil {
		e.server.Process.Signal(os.Interrupt)
		e.server.Wait()
		os.RemoveAll(e.dir)
	}
}

func (e *benchEnv) flush(ctx context.Context) error { return e.rdb.FlushDB(ctx).Err() }

func (e *benchEnv) machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				model = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
				break
			}
		}
	}
	version, _ := e.rdb.Do(context.Background(), "INFO", "server").Text()
	rv := ""
	for _, line := range strings.Split(version, "\n") {
		if strings.HasPrefix(line, "redis_version:") {
			rv = strings.TrimSpace(strings.TrimPrefix(line, "redis_version:"))
		}
	}
	return fmt.Sprintf("%d CPUs (%s), %s, redis %s", runtime.NumCPU(), model, runtime.Version(), rv)
}

// redisCPU is the redis-server's CPU time so far (0 when it is not ours).
func (e *benchEnv) redisCPU() time.Duration {
	if e.server == nil {
		return 0
	}
	return processCPU(e.server.Process.Pid)
}

// selfCPU is this process's CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const (
	webhookSecret = "bench-webhook-secret"
	keyPrefix     = "bench"
)

// appConfig parses a config the way the service does, with Redis and the
// fake Atlassian filled in.
func (e *benchEnv) appConfig(fakeURL, yaml string) (*config.Config, func(string) string, error) {
	env := map[string]string{
		"AUTOINVITE_REDIS_URL":           e.redisURL,
		"AUTOINVITE_JIRA_BASE_URL":       fakeURL,
		"AUTOINVITE_BITBUCKET_BASE_URL":  fakeURL,
		"AUTOINVITE_BITBUCKET_DC_TOKEN":  "dc-token",
		"AUTOINVITE_ORG_API_KEY":         "org-key",
		"AUTOINVITE_JIRA_WEBHOOK_SECRET": webhookSecret,
	}
	getenv := func(k string) string { return env[k] }
	yaml = strings.ReplaceAll(yaml, "$FAKE_URL", fakeURL)
	cfg, err := config.Parse("bench.yaml", []byte("redis: {key_prefix: "+keyPrefix+"}\n"+yaml), getenv)
	return cfg, getenv, err
}

// newApp starts autoinvite (roles as asked) against the fake at fakeURL.
func (e *benchEnv) newApp(fakeURL, yaml string, roles app.Roles, tweak func(*app.Options)) (*app.App, error) {
	cfg, getenv, err := e.appConfig(fakeURL, yaml)
	if err != nil {
		return nil, err
	}
	o := app.Options{
		Config: cfg, Env: getenv, Roles: roles,
		Secrets: config.Secrets{JiraEmail: "bot@acme.com", JiraAPIToken: "t", JiraBearerToken: "t",
			BitbucketEmail: "bot@acme.com", BitbucketAPIToken: "t", WebhookSecret: webhookSecret},
		// Production logs at info: the cost of writing them is part of the measure.
		Logger: zerolog.New(io.Discard).Level(zerolog.InfoLevel).With().Timestamp().Logger(),
	}
	if tweak != nil {
		tweak(&o)
	}
	return app.New(o)
}

// serveFake serves f on loopback.
func serveFake(f *fake.Fake) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: f}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// waitProcessed waits until the queue has processed n tasks in all.
func (e *benchEnv) waitProcessed(ctx context.Context, queue string, n int, limit time.Duration) (time.Duration, error) {
	// Poll asynq's processed counter, one GET: the inspector's GetQueueInfo
	// runs a memory-sampling script and a dozen commands, which at this rate
	// would load the single-threaded Redis being measured.
	processed := "asynq:{" + queue + "}:processed"
	start := time.Now()
	for {
		done, err := e.rdb.Get(ctx, processed).Int()
		if err == nil && done >= n {
			break
		}
		if time.Since(start) > limit {
			info, _ := asynq.NewInspectorFromRedisClient(e.rdb).GetQueueInfo(queue)
			return 0, fmt.Errorf("queue %s: %+v after %s", queue, info, limit)
		}
		time.Sleep(2 * time.Millisecond)
	}
	took := time.Since(start)
	info, err := asynq.NewInspectorFromRedisClient(e.rdb).GetQueueInfo(queue)
	if err != nil {
		return 0, fmt.Errorf("queue %s: %w", queue, err)
	}
	if info.Failed > 0 {
		return took, fmt.Errorf("%d of %d tasks failed at least once", info.Failed, n)
	}
	return took, nil
}

// waitIdle waits until the queue has nothing pending, running, scheduled,
// retrying or waiting in a batch.
func (e *benchEnv) waitIdle(queue string, limit time.Duration) error {
	if info, idle := redistest.WaitQueueIdle(e.rdb, queue, limit); !idle {
		return fmt.Errorf("queue %s not idle after %s: %+v", queue, limit, info)
	}
	return nil
}
