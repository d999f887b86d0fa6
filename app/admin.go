package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/integrations/ratelimit"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
	"github.com/autoinvite/autoinvite/rules"
)

// Admin is what the admin CLI needs, and only that: the service's Redis, its
// ledger and rules, and the events queue to hand actions to the running
// service, whose workers carry them out with their own credentials. It
// builds no Asynq server, no dashboard and no sandbox, and needs no
// Atlassian credentials.
type Admin struct {
	cfg       *config.Config
	secrets   config.Secrets
	log       zerolog.Logger
	rdb       redis.UniversalClient
	store     *ledger.Store
	engine    *rules.Engine
	client    *asynq.Client
	inspector *asynq.Inspector
	queue     string
}

// ErrEmbeddedRedis: the admin CLI cannot reach the embedded Redis, which
// lives inside one `serve` process.
var ErrEmbeddedRedis = errors.New("admin commands read the service's ledger: set redis.url (or AUTOINVITE_REDIS_URL), redis.sentinel or redis.cluster (the embedded Redis lives inside `serve`)")

// ErrNoWorker: no worker took an admin action in time.
var ErrNoWorker = errors.New("no autoinvite worker took the action")

// ErrEmbeddedRedisDown: the config names no Redis and no `serve` runs the
// embedded one where the admin commands look.
var ErrEmbeddedRedisDown = errors.New("no Redis is configured (redis.url or AUTOINVITE_REDIS_URL), and no embedded Redis of `autoinvite serve` answers")

// AdminOption changes how NewAdmin connects.
type AdminOption func(*adminSettings)

type adminSettings struct{ embeddedAddr string }

// WithEmbeddedRedis lets NewAdmin, when cfg names no Redis, use the embedded
// Redis of a running `serve` at addr (Options.EmbeddedRedisAddr).
func WithEmbeddedRedis(addr string) AdminOption {
	return func(s *adminSettings) { s.embeddedAddr = addr }
}

// NewAdmin connects to the service's Redis described by cfg.
func NewAdmin(cfg *config.Config, secrets config.Secrets, logger zerolog.Logger, opts ...AdminOption) (*Admin, error) {
	if cfg == nil {
		return nil, errors.New("app: Config is required")
	}
	var set adminSettings
	for _, o := range opts {
		o(&set)
	}
	if cfg.Redis.Embedded() && set.embeddedAddr == "" {
		return nil, ErrEmbeddedRedis
	}
	engine, err := rules.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("compile rules: %w", err)
	}
	var rdb redis.UniversalClient
	if cfg.Redis.Embedded() {
		if rdb, err = connectEmbedded(cfg, set.embeddedAddr); err != nil {
			return nil, err
		}
	} else if rdb, _, err = redisClients(cfg.Redis, secrets); err != nil {
		return nil, err
	}
	return &Admin{
		cfg: cfg, secrets: secrets, log: logger, rdb: rdb, engine: engine,
		store: ledger.New(rdb, cfg.Redis.KeyPrefix, ledger.Options{AuditMaxLen: cfg.Audit.MaxEntries, DryRun: cfg.DryRun}),
		// Both share rdb: closing them is closing rdb (Close).
		client:    asynq.NewClientFromRedisClient(rdb),
		inspector: asynq.NewInspectorFromRedisClient(rdb),
		queue:     jobs.EventsQueue(cfg.Redis.KeyPrefix),
	}, nil
}

// Ledger returns the service's ledger.
func (ad *Admin) Ledger() *ledger.Store { return ad.store }

// Rules returns the rules of the config the CLI was given.
func (ad *Admin) Rules() *rules.Engine { return ad.engine }

// Queue returns the name of the events queue the actions go to.
func (ad *Admin) Queue() string { return ad.queue }

// Inspector returns an Asynq inspector of the service's Redis.
func (ad *Admin) Inspector() *asynq.Inspector { return ad.inspector }

// Backlog returns the tasks waiting for the Atlassian budgets (read only).
func (ad *Admin) Backlog() *ratelimit.Backlog {
	return ratelimit.NewBacklog(ad.rdb, ad.cfg.Redis.KeyPrefix)
}

// Close releases the connection to Redis.
func (ad *Admin) Close() {
	if ad != nil {
		ad.rdb.Close()
	}
}

// adminPoll is how often Do looks at the task: an action takes a few calls to
// Atlassian, so a person waits at most this much longer than the work.
const adminPoll = 50 * time.Millisecond

// Do queues an action for the running service's workers and waits for its
// outcome. wait bounds how long a worker may take to pick it up: a task still
// queued then is withdrawn, so it cannot run later behind the admin's back.
// Once picked up, the action runs to its end (or its task timeout).
func (ad *Admin) Do(ctx context.Context, act jobs.AdminAction, wait time.Duration) (jobs.AdminResult, error) {
	timeout := ad.cfg.Worker.TaskTimeout.D()
	if act.Action == jobs.AdminSweep || act.Action == jobs.AdminResumeRevocations {
		// A whole workspace or every due invitation, not one person.
		timeout = max(timeout, time.Hour)
	}
	task, err := jobs.NewAdminActionTask(act, ad.queue, timeout)
	if err != nil {
		return jobs.AdminResult{}, err
	}
	info, err := ad.client.EnqueueContext(ctx, task)
	if err != nil {
		return jobs.AdminResult{}, fmt.Errorf("queue admin action %s: %w", act.Action, err)
	}
	id := info.ID
	deadline := time.Now().Add(wait)
	taken := false
	tick := time.NewTicker(adminPoll)
	defer tick.Stop()
	for {
		info, err := ad.inspector.GetTaskInfo(ad.queue, id)
		if err != nil {
			return jobs.AdminResult{}, fmt.Errorf("read admin action %s: %w", id, err)
		}
		switch info.State {
		case asynq.TaskStateCompleted:
			return jobs.DecodeAdminResult(info.Result)
		case asynq.TaskStateArchived:
			return jobs.AdminResult{}, fmt.Errorf("the worker failed admin action %s: %s", id, info.LastErr)
		case asynq.TaskStateActive:
			taken = true
			if info.IsOrphaned {
				return jobs.AdminResult{}, fmt.Errorf("the worker carrying out admin action %s stopped mid-way: `autoinvite audit` shows what it did", id)
			}
		case asynq.TaskStatePending, asynq.TaskStateScheduled:
			if !taken && time.Now().After(deadline) {
				if ad.withdraw(id) {
					return jobs.AdminResult{}, ad.noWorker(wait)
				}
				taken = true // a worker took it just now
			}
		}
		select {
		case <-ctx.Done():
			if !taken && ad.withdraw(id) {
				return jobs.AdminResult{}, fmt.Errorf("admin action %s withdrawn before a worker took it: %w", act.Action, ctx.Err())
			}
			return jobs.AdminResult{}, fmt.Errorf("stopped waiting for admin action %s (it goes on in the worker; `autoinvite audit` shows its outcome): %w", id, ctx.Err())
		case <-tick.C:
		}
	}
}

// withdraw deletes a task no worker took; false when one took it meanwhile.
func (ad *Admin) withdraw(id string) bool {
	return ad.inspector.DeleteTask(ad.queue, id) == nil
}

// noWorker says why no worker took an action: none running, or all busy.
func (ad *Admin) noWorker(wait time.Duration) error {
	servers, _ := ad.inspector.Servers() // unreadable: say what is most likely
	busy := 0
	for _, s := range servers {
		if _, ok := s.Queues[ad.queue]; ok {
			busy++
		}
	}
	if busy > 0 {
		return fmt.Errorf("%w within %s: %d worker process(es) serve queue %s but none was free; the action was withdrawn: try again or pass a longer --timeout", ErrNoWorker, wait, busy, ad.queue)
	}
	return fmt.Errorf("%w within %s: is `autoinvite serve` running against this Redis?", ErrNoWorker, wait)
}

// Backfiller builds, in this process, the worker and Jira client a backfill
// needs. A backfill lists every Jira user and calls Bitbucket itself, so,
// unlike the other admin commands, it needs the Atlassian credentials in this
// environment; it never runs against the sandbox. Close the App after use
// (the Redis connection stays the Admin's).
func (ad *Admin) Backfiller(env func(string) string, now func() time.Time) (*App, error) {
	if !ad.secrets.HasAtlassianCredentials() {
		return nil, fmt.Errorf("%w: backfill lists Jira's users and calls Bitbucket from this process; set AUTOINVITE_JIRA_* and AUTOINVITE_BITBUCKET_* as for `serve`", ErrNoCredentials)
	}
	if env == nil {
		env = func(string) string { return "" }
	}
	if now == nil {
		now = time.Now
	}
	a := newApp(Options{Config: ad.cfg, Env: env, Secrets: ad.secrets, Logger: ad.log, Now: now})
	a.rdb = ad.rdb
	if err := a.core(); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// connectEmbedded reaches the embedded Redis of a running `serve` with the
// same config, and makes sure that is what answers at addr.
func connectEmbedded(cfg *config.Config, addr string) (redis.UniversalClient, error) {
	// A plain dial first: go-redis would retry and log each refused attempt.
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: start `autoinvite serve --config %s` first (or set %s to where its embedded Redis listens)", ErrEmbeddedRedisDown, addr, cfg.Source, EmbeddedRedisAddrEnv)
	}
	conn.Close()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, err := rdb.Exists(ctx, embeddedMarker(cfg.Redis.KeyPrefix)).Result()
	if err != nil || n == 0 {
		rdb.Close()
		return nil, fmt.Errorf("%s answers, but not as the embedded Redis of an `autoinvite serve` with redis.key_prefix %q (%v): set %s (for serve and the admin commands alike) or redis.url", addr, cfg.Redis.KeyPrefix, orNone(err), EmbeddedRedisAddrEnv)
	}
	return rdb, nil
}

func orNone(err error) string {
	if err == nil {
		return "no marker key"
	}
	return err.Error()
}
