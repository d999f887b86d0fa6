// Package app wires autoinvite together: Redis (external or embedded), the
// Atlassian clients (real or the sandbox), the intake, the queue and the worker.
package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/go-resty/resty/v2"
	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"
	"github.com/robfig/cron/v3"
	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/intake"
	"github.com/autoinvite/autoinvite/integrations/atlassian"
	"github.com/autoinvite/autoinvite/integrations/bitbucket"
	"github.com/autoinvite/autoinvite/integrations/bitbucketdc"
	"github.com/autoinvite/autoinvite/integrations/dryrun"
	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/integrations/jira"
	"github.com/autoinvite/autoinvite/integrations/organization"
	"github.com/autoinvite/autoinvite/integrations/ratelimit"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
	"github.com/autoinvite/autoinvite/membership"
	"github.com/autoinvite/autoinvite/metrics"
	"github.com/autoinvite/autoinvite/notify"
	"github.com/autoinvite/autoinvite/outcome"
	"github.com/autoinvite/autoinvite/rules"
	"github.com/autoinvite/autoinvite/worker"
)

// Version names this build in the User-Agent of every Atlassian call; see
// DescribeBuild.
var Version, _ = DescribeBuild(buildInfo())

// stampedVersion is set by the linker where the build has no VCS information
// (the Docker image: its build context leaves .git out):
// go build -ldflags "-X github.com/autoinvite/autoinvite/app.stampedVersion=v1.2.3".
var stampedVersion string

func buildInfo() *debug.BuildInfo {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi
	}
	return nil
}

// DescribeBuild reads the module version and VCS revision Go embeds in a
// binary: short is one token for a User-Agent ("v1.2.3", or
// "devel+0dfbf38a1b2c.dirty" for a build from a checkout), long the line
// `autoinvite version` prints.
func DescribeBuild(bi *debug.BuildInfo) (short, long string) {
	version, rev, modified, at, goVersion := "", "", false, "", ""
	if bi != nil {
		version, goVersion = bi.Main.Version, bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			case "vcs.time":
				at = s.Value
			}
		}
	}
	if version == "" || version == "(devel)" {
		version = stampedVersion
	}
	if version == "" {
		version = "devel"
	}
	short = version
	if rev != "" && !strings.Contains(version, shortRevision(rev)) { // a pseudo-version carries it already
		short += "+" + shortRevision(rev)
		if modified {
			short += ".dirty"
		}
	}
	var details []string
	if rev != "" {
		details = append(details, "revision "+rev)
		if modified {
			details = append(details, "modified (uncommitted changes)")
		}
		if at != "" {
			details = append(details, "committed "+at)
		}
	} else {
		details = append(details, "no VCS revision in this build")
	}
	if goVersion != "" {
		details = append(details, "built with "+goVersion)
	}
	return short, "autoinvite " + version + " (" + strings.Join(details, ", ") + ")"
}

func shortRevision(rev string) string { return rev[:min(12, len(rev))] }

// Options configures an App.
type Options struct {
	Config *config.Config
	// ConfigPath is where reloads read the config from ("" disables reloads).
	ConfigPath string
	// Env supplies environment overrides on reload (nil: none).
	Env     func(string) string
	Secrets config.Secrets
	Logger  zerolog.Logger
	Now     func() time.Time
	// RetryDelay overrides the backoff between task retries (tests use a short one).
	RetryDelay asynq.RetryDelayFunc
	// PollInterval overrides how often workers look for new and due tasks.
	PollInterval time.Duration
	// Roles says what this process does (zero value: everything).
	Roles Roles
	// AtlassianTransport replaces the HTTP transport of every Atlassian client
	// (benchmarks use the fake in process).
	AtlassianTransport http.RoundTripper
	// Sandbox runs the built-in fake Atlassian whatever the credentials and
	// the Redis (serve --sandbox). Without it the sandbox starts only with the
	// embedded Redis and no credentials: an external Redis holds a real ledger.
	Sandbox bool
	// EmbeddedRedisAddr is where the embedded Redis listens (no redis.url,
	// sentinel or cluster); "" picks a free loopback port. `serve` passes a
	// fixed one (DefaultEmbeddedRedisAddr) so that the admin commands find it.
	EmbeddedRedisAddr string
}

// DefaultEmbeddedRedisAddr is where `serve` runs the embedded Redis and the
// admin commands look for it; EmbeddedRedisAddrEnv moves both.
const (
	DefaultEmbeddedRedisAddr = "127.0.0.1:6380"
	EmbeddedRedisAddrEnv     = "AUTOINVITE_EMBEDDED_REDIS_ADDR"
)

// embeddedMarker is a key the embedded Redis holds, so that the admin
// commands know they reached it and not another Redis on the same port.
func embeddedMarker(keyPrefix string) string { return keyPrefix + ":embedded-redis" }

// Roles are the parts of autoinvite one process runs. Intake and workers
// scale separately; they meet only in Redis.
type Roles struct {
	Intake    bool // the webhook endpoint
	Worker    bool // processes tasks
	Scheduler bool // fires the sweep (any number may run: one task per tick)
}

// AllRoles runs everything in one process.
var AllRoles = Roles{Intake: true, Worker: true, Scheduler: true}

// ParseRoles reads a comma-separated list of intake, worker, scheduler or all.
func ParseRoles(s string) (Roles, error) {
	var r Roles
	for _, part := range strings.Split(s, ",") {
		switch strings.TrimSpace(part) {
		case "all":
			r = AllRoles
		case "intake":
			r.Intake = true
		case "worker":
			r.Worker = true
		case "scheduler":
			r.Scheduler = true
		default:
			return r, fmt.Errorf("unknown role %q: use intake, worker, scheduler or all (comma-separated)", part)
		}
	}
	return r, nil
}

func (r Roles) String() string {
	var out []string
	for _, x := range []struct {
		on   bool
		name string
	}{{r.Intake, "intake"}, {r.Worker, "worker"}, {r.Scheduler, "scheduler"}} {
		if x.on {
			out = append(out, x.name)
		}
	}
	return strings.Join(out, ",")
}

// runtime is everything that follows from one config: the rules, the clients
// and the worker using them. A reload builds a new one and swaps it in.
type runtime struct {
	cfg *config.Config
	// credentials fingerprints the credentials its clients were built with
	// (a hash, never the values): a reload rebuilds when they change.
	credentials string
	engine      *rules.Engine
	ledger      *ledger.Store
	worker      *worker.Worker
	jira        *jira.Client // for listing users (backfill), dry run or not
}

// recentRuntimes is how many configs are kept so that tasks queued under a
// previous config are decided under it.
const recentRuntimes = 8

// App is a running autoinvite.
type App struct {
	opts      Options
	cfg       *config.Config // the startup config: settings that need a restart
	log       zerolog.Logger
	rdb       redis.UniversalClient
	redisOpt  asynq.RedisConnOpt
	redisConn *redisConnection // nil for the embedded Redis
	embedded  *miniredis.Miniredis
	sandbox   *fake.Fake
	closers   []func()
	metrics   *metrics.Metrics
	backlog   *ratelimit.Backlog // tasks waiting for a budget, oldest first
	inspector *asynq.Inspector

	jiraOpts, bbOpts atlassian.Options

	current  atomic.Pointer[runtime]
	mu       sync.Mutex
	recent   map[string]*runtime
	order    []string
	reloadMu sync.Mutex
	// reloaded tells the config watcher a reload succeeded, so that it
	// watches the files the new config's secrets are read from (nil: no
	// watcher; set under reloadMu).
	reloaded chan struct{}

	client   *asynq.Client
	server   *asynq.Server
	mux      *asynq.ServeMux
	handler  http.Handler
	queue    string
	serverUp bool
	enqueuer *jobs.Enqueuer
	now      func() time.Time
	// hook is the webhook intake; webhookSecret its secret in force ("": it
	// accepts unsigned requests; reloads change it, under reloadMu).
	hook          *intake.Handler
	webhookSecret string
	admin         *adminAuth // the admin endpoints' credentials (reloads change them)
	// notifier sends admin notifications (notify.go); nil outside serve.
	notifier *notify.Notifier
}

// New builds an App; Run starts it.
func New(o Options) (*App, error) {
	if o.Config == nil {
		return nil, errors.New("app: Config is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Env == nil {
		o.Env = func(string) string { return "" }
	}
	if o.Roles == (Roles{}) {
		o.Roles = AllRoles
	}
	cfg := o.Config
	if o.Roles != AllRoles && cfg.Redis.Embedded() {
		return nil, fmt.Errorf("--role %s: separate roles meet in Redis; set redis.url (or AUTOINVITE_REDIS_URL), the embedded Redis lives in one process", o.Roles)
	}
	a := newApp(o)
	if err := a.serveParts(); err != nil {
		// a is whatever was built before the failure (Redis, the sandbox…).
		a.Close()
		return nil, err
	}
	return a, nil
}

func newApp(o Options) *App {
	return &App{opts: o, cfg: o.Config, log: o.Logger, queue: jobs.EventsQueue(o.Config.Redis.KeyPrefix), now: o.Now, recent: map[string]*runtime{},
		admin: newAdminAuth(o.Secrets.AdminUser, o.Secrets.AdminPassword)}
}

// core builds what serving and an in-process admin command share, over a.rdb:
// the Atlassian clients' options, metrics, the queue client and the runtime.
func (a *App) core() error {
	var err error
	if a.jiraOpts, a.bbOpts, err = a.atlassianOptions(a.opts.Secrets); err != nil {
		return err
	}
	a.inspector = asynq.NewInspectorFromRedisClient(a.rdb)
	a.metrics = metrics.New(a.inspector)
	a.backlog = ratelimit.NewBacklog(a.rdb, a.cfg.Redis.KeyPrefix)
	a.metrics.WatchBacklog(a.backlog)

	cfg := a.cfg
	a.client = asynq.NewClientFromRedisClient(a.rdb)
	a.enqueuer = jobs.NewEnqueuer(a.client, jobs.EnqueueOptions{
		Queue: a.queue, MaxRetry: cfg.Worker.MaxRetry, Timeout: cfg.Worker.TaskTimeout.D(), Retention: cfg.Intake.DedupWindow.D(),
	})
	rt, err := a.buildRuntime(cfg, a.credentialsFingerprint(cfg))
	if err != nil {
		return err
	}
	a.install(rt)
	a.metrics.ConfigLoaded(cfg.Hash, a.now())
	return nil
}

// serveParts connects Redis and builds the core, the intake, the task
// handlers, the Asynq server and the HTTP API.
func (a *App) serveParts() error {
	o, cfg := a.opts, a.cfg
	if err := a.connectRedis(); err != nil {
		return err
	}
	if err := a.core(); err != nil {
		return err
	}

	hook, err := intake.New(intake.Options{
		Secret: []byte(o.Secrets.WebhookSecret), MaxBodyBytes: cfg.Intake.MaxBodyBytes, Enqueuer: a.enqueuer,
		Logger: a.log.With().Str("component", "intake").Logger(), Now: o.Now,
		ConfigHash: func() string { return a.current.Load().cfg.Hash },
		Observe: func(event, outcome string, took time.Duration) {
			a.metrics.Webhooks.WithLabelValues(event, outcome).Inc()
			a.metrics.IntakeDuration.Observe(took.Seconds())
		},
	})
	if err != nil {
		return err
	}
	a.hook, a.webhookSecret = hook, o.Secrets.WebhookSecret

	a.mux = asynq.NewServeMux()
	a.mux.HandleFunc(jobs.TypeUserEvent, func(ctx context.Context, t *asynq.Task) error {
		ev, err := jobs.DecodeUserEvent(t.Payload())
		if err != nil {
			return a.current.Load().worker.HandleUserEvent(ctx, t) // fails it for good, with the decode error
		}
		return a.runtimeFor(ev.ConfigHash).worker.ProcessUserEvent(trackFirstAction(ctx, ev), ev)
	})
	a.mux.HandleFunc(jobs.TypeFollowUp, func(ctx context.Context, t *asynq.Task) error {
		return a.current.Load().worker.HandleFollowUp(ctx, t)
	})
	a.mux.HandleFunc(jobs.TypeSweep, func(ctx context.Context, t *asynq.Task) error {
		return a.current.Load().worker.HandleSweep(ctx, t)
	})
	a.mux.HandleFunc(jobs.TypeBatch, func(ctx context.Context, t *asynq.Task) error {
		return a.current.Load().worker.HandleBatch(ctx, t)
	})
	// The admin CLI's actions, carried out with this process's credentials.
	a.mux.HandleFunc(jobs.TypeAdminAction, func(ctx context.Context, t *asynq.Task) error {
		return a.current.Load().worker.HandleAdminAction(ctx, t)
	})
	a.registerReconcile() // reconciliation passes, on their low-priority queue
	if err := a.setUpNotifications(); err != nil {
		return err
	}
	a.server = asynq.NewServerFromRedisClient(a.rdb, a.serverConfig(o))

	dashboard := asynqmon.New(asynqmon.Options{RootPath: "/monitoring", RedisConnOpt: a.redisOpt, ReadOnly: cfg.Dashboard.ReadOnly})
	a.closers = append(a.closers, func() { dashboard.Close() })
	admin := a.admin

	mux := http.NewServeMux()
	if o.Roles.Intake {
		mux.Handle("/webhooks/jira", hook)
	} else {
		mux.HandleFunc("/webhooks/jira", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "this process runs --role "+o.Roles.String()+": send webhooks to an intake process", http.StatusNotFound)
		})
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", a.ready)
	mux.Handle("GET /metrics", a.metrics.Handler())
	mux.Handle("/monitoring/", admin.wrap(withLedgerLink(dashboard)))
	a.routeLedger(mux, admin)
	mux.Handle("/-/reload", admin.wrap(http.HandlerFunc(a.serveReload)))
	// Go's profiler, for an operator to see where a live process spends.
	mux.Handle("/debug/pprof/", admin.wrap(http.HandlerFunc(pprof.Index)))
	mux.Handle("/debug/pprof/cmdline", admin.wrap(http.HandlerFunc(pprof.Cmdline)))
	mux.Handle("/debug/pprof/profile", admin.wrap(http.HandlerFunc(pprof.Profile)))
	mux.Handle("/debug/pprof/symbol", admin.wrap(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("/debug/pprof/trace", admin.wrap(http.HandlerFunc(pprof.Trace)))
	a.handler = mux
	return nil
}

// buildRuntime compiles a config into rules, clients and a worker;
// credentials is the fingerprint of the credentials it is built with
// (credentialsFingerprint).
func (a *App) buildRuntime(cfg *config.Config, credentials string) (*runtime, error) {
	engine, err := rules.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("compile rules: %w", err)
	}
	if err := a.checkNotifications(cfg); err != nil {
		return nil, err
	}
	rt := &runtime{cfg: cfg, engine: engine, credentials: credentials}
	rt.ledger = ledger.New(a.rdb, a.cfg.Redis.KeyPrefix, ledger.Options{
		AuditMaxLen: cfg.Audit.MaxEntries, Observe: a.observeAudit, DryRun: cfg.DryRun,
	})
	jo, bo := a.jiraOpts, a.bbOpts
	if a.sandbox == nil { // the sandbox keeps its own address whatever the config says
		jo.BaseURL, bo.BaseURL = cfg.Jira.BaseURL, cfg.Bitbucket.BaseURL
		if jo.BaseURL == "" {
			return nil, errors.New("jira.base_url (or AUTOINVITE_JIRA_BASE_URL) is required with real credentials")
		}
	}
	jo.Timeout, bo.Timeout = cfg.Jira.Timeout.D(), cfg.Bitbucket.Timeout.D()
	jo.Instrument = a.instrument(ratelimit.APIJira, jo.Auth, budget("requests", cfg.RateLimits.Jira, nil))
	bo.Instrument = a.instrument(ratelimit.APIBitbucket, bo.Auth,
		budget("requests", cfg.RateLimits.Bitbucket, nil),
		budget("invitations", cfg.RateLimits.BitbucketInvitations, isInvitation),
		earlyChecks(cfg.RateLimits))
	rt.jira = jira.New(jo, cfg.Jira.Deployment == config.DeploymentDataCenter)
	var jc worker.Jira = dryrun.Jira{}
	var bc worker.Bitbucket = dryrun.Bitbucket{}
	if !cfg.DryRun {
		jc, bc = rt.jira, bitbucket.New(bo)
	}
	dcs, orgs, err := a.workspaceClients(cfg)
	if err != nil {
		return nil, err
	}
	rt.worker, err = worker.New(worker.Options{
		Jira: jc, Bitbucket: bc, Ledger: rt.ledger, Batches: a.enqueuer,
		DataCenter:   func(ws string) worker.DataCenter { return dcs[ws] },
		Organization: func(ws string) worker.OrgAdmin { return orgs[ws] },
		Rules:        func() *rules.Engine { return engine },
		FollowUps:    a.enqueuer,
		Logger:       a.log.With().Str("component", "worker").Str("config", cfg.Hash).Logger(),
		Now:          a.now,
		SignupDone:   func(received time.Time) { a.metrics.SignupDuration.Observe(a.now().Sub(received).Seconds()) },
		Backlog:      a.backlog,
		Members:      membership.New(a.rdb, cfg.Redis.KeyPrefix),
		Queued:       a.queuedUserEvents,
	})
	if err != nil {
		return nil, err
	}
	return rt, nil
}

// credentialsFingerprint hashes the credentials a runtime for cfg is built
// with: Jira's, Bitbucket's and every workspace's (Data Center tokens,
// organization API keys, read again from the environment or their files).
func (a *App) credentialsFingerprint(cfg *config.Config) string {
	h := sha256.New()
	for _, auth := range []atlassian.Auth{a.jiraOpts.Auth, a.bbOpts.Auth} {
		fmt.Fprintf(h, "%q %q %q\n", auth.Email, auth.Token, auth.Bearer)
	}
	if a.sandbox == nil {
		for _, ws := range cfg.Workspaces {
			for _, name := range []string{ws.Bitbucket.TokenEnv, orgKeyEnv(ws)} {
				if name != "" {
					v, err := config.Secret(a.opts.Env, name)
					fmt.Fprintf(h, "%s %q %v\n", name, v, err)
				}
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func orgKeyEnv(ws config.Workspace) string {
	if ws.Organization == nil {
		return ""
	}
	return ws.Organization.APIKeyEnv
}

// workspaceClients builds the per-workspace clients: Bitbucket Data Center
// targets and Atlassian organizations, each with its credential from the environment.
func (a *App) workspaceClients(cfg *config.Config) (map[string]worker.DataCenter, map[string]worker.OrgAdmin, error) {
	dcs, orgs := map[string]worker.DataCenter{}, map[string]worker.OrgAdmin{}
	secret := func(field, name string) (string, error) {
		if a.sandbox != nil {
			return "sandbox", nil
		}
		v, err := config.Secret(a.opts.Env, name)
		if err == nil && v == "" {
			err = fmt.Errorf("%s: the environment variable %s (or %s_FILE) is not set", field, name, name)
		}
		return v, err
	}
	for i, ws := range cfg.Workspaces {
		p := fmt.Sprintf("workspaces[%d]", i)
		if ws.Bitbucket.DataCenter() {
			token, err := secret(p+".bitbucket.token_env", ws.Bitbucket.TokenEnv)
			if err != nil {
				return nil, nil, err
			}
			dcs[ws.Workspace] = dryrun.DataCenter{}
			if !cfg.DryRun {
				dcs[ws.Workspace] = bitbucketdc.New(a.clientOptions(ws.Bitbucket.BaseURL, cfg.Bitbucket.Timeout.D(), atlassian.Auth{Bearer: token}, "bitbucket-dc"))
			}
		}
		if org := ws.Organization; org != nil {
			key, err := secret(p+".organization.api_key_env", org.APIKeyEnv)
			if err != nil {
				return nil, nil, err
			}
			orgs[ws.Workspace] = dryrun.Organization{ID: org.ID}
			if !cfg.DryRun {
				o := a.clientOptions(org.BaseURL, cfg.Bitbucket.Timeout.D(), atlassian.Auth{Bearer: key}, "organization")
				o.Instrument = a.instrument(ratelimit.APIOrganization, o.Auth, budget("requests", cfg.RateLimits.AtlassianAdmin, nil))
				orgs[ws.Workspace] = organization.New(o, org.ID, org.APIKeyEnv)
			}
		}
	}
	return dcs, orgs, nil
}

// clientOptions are the options of a per-workspace client; the sandbox
// answers for every base URL.
func (a *App) clientOptions(baseURL string, timeout time.Duration, auth atlassian.Auth, api string) atlassian.Options {
	o := a.bbOpts
	o.Auth, o.Timeout = auth, timeout
	if a.sandbox == nil {
		o.BaseURL = baseURL
	}
	// No budget of ours: these APIs say when to slow down (429 with Retry-After),
	// and the limiter makes every process honour it.
	o.Instrument = a.instrument(api, auth)
	return o
}

// instrument hooks metrics and the shared rate limiter on an API client.
func (a *App) instrument(api string, auth atlassian.Auth, budgets ...ratelimit.Budget) func(*resty.Client) {
	var active []ratelimit.Budget
	for _, b := range budgets {
		if b.Requests > 0 {
			active = append(active, b)
		}
	}
	limiter := ratelimit.New(a.rdb, ratelimit.Options{
		API: api, Credential: ratelimit.CredentialOf(auth.Email, auth.Bearer), Prefix: a.cfg.Redis.KeyPrefix,
		Budgets: active,
		OnWait:  func(api string) { a.metrics.RateLimitWaits.WithLabelValues(api).Inc() },
	})
	return func(c *resty.Client) {
		a.metrics.InstrumentClient(api, c)
		a.watchCalls(api, c)
		limiter.Install(c)
	}
}

func budget(name string, b config.Budget, match func(method, path string) bool) ratelimit.Budget {
	return ratelimit.Budget{Name: name, Requests: b.Requests, Per: b.Per.D(), Match: match}
}

// earlyChecks is the share of the Bitbucket budget early acceptance checks
// may spend (they count against the whole budget as well).
func earlyChecks(r config.RateLimits) ratelimit.Budget {
	b := budget("early-checks", r.Bitbucket, nil)
	b.Requests, b.Class = max(1, int(float64(b.Requests)*r.EarlyCheckShare)), ratelimit.ClassEarlyCheck
	if r.Bitbucket.Requests <= 0 {
		b.Requests = 0
	}
	return b
}

func isInvitation(method, path string) bool {
	return method == http.MethodPut && strings.HasSuffix(path, "/invitations")
}

// install makes rt the runtime in force and remembers it for queued tasks.
func (a *App) install(rt *runtime) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.recent[rt.cfg.Hash]; !ok {
		a.order = append(a.order, rt.cfg.Hash)
	}
	a.recent[rt.cfg.Hash] = rt
	for len(a.order) > recentRuntimes {
		delete(a.recent, a.order[0])
		a.order = a.order[1:]
	}
	a.current.Store(rt)
}

// runtimeFor returns the runtime of the config a user event was received
// under (its hash), when this process still has it, else the current one.
func (a *App) runtimeFor(configHash string) *runtime {
	if configHash != "" {
		a.mu.Lock()
		rt := a.recent[configHash]
		a.mu.Unlock()
		if rt != nil {
			return rt
		}
	}
	return a.current.Load()
}

func (a *App) serverConfig(o Options) asynq.Config {
	retryDelay := o.RetryDelay
	if retryDelay == nil {
		retryDelay = outcome.RetryDelay
	}
	c := asynq.Config{
		Concurrency:     a.cfg.Worker.Concurrency,
		Queues:          a.queueWeights(),
		RetryDelayFunc:  retryDelay,
		IsFailure:       outcome.IsFailure,
		ShutdownTimeout: a.cfg.Worker.ShutdownTimeout.D(),
		Logger:          asynqLogger{a.log.With().Str("component", "asynq").Logger()},
		LogLevel:        asynq.WarnLevel,
		// Batched calls: people bound for the same call wait together.
		GroupAggregator:  asynq.GroupAggregatorFunc(jobs.AggregateBatch),
		GroupGracePeriod: a.cfg.Worker.BatchWait.D(),
		GroupMaxDelay:    a.cfg.Worker.BatchMaxDelay.D(),
		GroupMaxSize:     a.cfg.Worker.BatchSize,
	}
	if o.PollInterval > 0 {
		c.TaskCheckInterval, c.DelayedTaskCheckInterval = o.PollInterval, o.PollInterval
	}
	a.notifyServerConfig(&c)
	return c
}

// DefaultRetryDelay is the service's delay between a task's tries (package
// outcome decides it; benchmarks run the service's own).
var DefaultRetryDelay asynq.RetryDelayFunc = outcome.RetryDelay

func (a *App) connectRedis() error {
	if a.cfg.Redis.Embedded() {
		addr := a.opts.EmbeddedRedisAddr
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		m := miniredis.NewMiniRedis()
		if err := m.StartAddr(addr); err != nil {
			return fmt.Errorf("start the embedded Redis on %s: %w: is another `autoinvite serve` running? Stop it, or set %s to another loopback address (for serve and the admin commands alike), or set redis.url", addr, err, EmbeddedRedisAddrEnv)
		}
		a.embedded = m
		a.closers = append(a.closers, m.Close)
		a.rdb = redis.NewClient(&redis.Options{Addr: m.Addr()})
		a.redisOpt = asynq.RedisClientOpt{Addr: m.Addr()}
		m.Set(embeddedMarker(a.cfg.Redis.KeyPrefix), a.opts.ConfigPath)
		a.log.Warn().Str("addr", m.Addr()).Msg("EMBEDDED REDIS: queue and ledger live in memory and vanish on exit; the admin commands find it at this address; set AUTOINVITE_REDIS_URL for real use")
	} else {
		var err error
		if a.rdb, a.redisConn, err = redisClients(a.cfg.Redis, a.opts.Secrets); err != nil {
			return err
		}
		a.redisOpt = a.redisConn
		if err := a.checkRedis(); err != nil {
			a.rdb.Close()
			return err
		}
	}
	a.closers = append(a.closers, func() { a.rdb.Close() })
	return nil
}

// checkRedis looks at the Redis just connected. Credentials it refuses stop
// the start: a wrong password is a configuration error, not an outage to
// wait out. One that does not answer is logged, and the service starts
// anyway (the intake answers 503 until Redis answers). An eviction policy
// that can drop keys is an error in the log: an evicted task is a lost
// signup and an evicted ledger entry a second invitation.
func (a *App) checkRedis() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := a.rdb.ConfigGet(ctx, "maxmemory-policy").Result()
	var reply redis.Error
	switch {
	case err == nil:
	case refusedCredentials(err):
		return fmt.Errorf("Redis refused the credentials (%w): check %s (or its _FILE) and the user and password in redis.url", err, config.RedisPasswordEnv)
	case !errors.As(err, &reply):
		a.log.Error().Err(err).Msg("Redis does not answer: the intake answers 503 and the workers wait until it does")
		return nil
	case strings.Contains(err.Error(), "unknown command"):
		return nil // not a real redis-server (miniredis in tests)
	default:
		a.log.Warn().Err(err).Msg("cannot read Redis maxmemory-policy (managed Redis may hide CONFIG): make sure it is noeviction")
		return nil
	}
	if policy := res["maxmemory-policy"]; policy != "" && policy != "noeviction" {
		a.log.Error().Str("maxmemory_policy", policy).
			Msg("REDIS MAY EVICT KEYS: maxmemory-policy is not noeviction; Asynq needs noeviction or tasks and ledger entries can silently vanish. Set maxmemory-policy noeviction")
	}
	return nil
}

// refusedCredentials reports whether Redis refused to authenticate: a wrong
// password or user (WRONGPASS), or none given to a Redis that needs one
// (NOAUTH).
func refusedCredentials(err error) bool {
	return redis.HasErrorPrefix(err, "WRONGPASS") || redis.HasErrorPrefix(err, "NOAUTH")
}

// ErrNoCredentials: no Atlassian credential is set and the sandbox may not
// stand in for them.
var ErrNoCredentials = errors.New("no Atlassian credentials in the environment")

// atlassianOptions returns the clients' identity and credentials, starting the
// sandbox (and pointing at it) when asked to (Options.Sandbox), or when no
// credential is set at all and Redis is the embedded one: a sandbox writing
// to an external Redis would record invitations that never happened in a
// real ledger.
func (a *App) atlassianOptions(s config.Secrets) (jiraOpts, bbOpts atlassian.Options, err error) {
	ua := "autoinvite/" + Version
	// Base URLs and timeouts come from the config in force (buildRuntime).
	jiraOpts = atlassian.Options{UserAgent: ua, Transport: a.opts.AtlassianTransport}
	bbOpts = atlassian.Options{UserAgent: ua, Transport: a.opts.AtlassianTransport}
	if a.opts.Sandbox || !s.HasAtlassianCredentials() {
		if !a.opts.Sandbox && !a.cfg.Redis.Embedded() {
			return jiraOpts, bbOpts, fmt.Errorf("%w and Redis is external (redis.url, redis.sentinel or redis.cluster): "+
				"set AUTOINVITE_JIRA_EMAIL + AUTOINVITE_JIRA_API_TOKEN (Jira Cloud) or AUTOINVITE_JIRA_BEARER_TOKEN (Data Center), "+
				"and AUTOINVITE_BITBUCKET_EMAIL + AUTOINVITE_BITBUCKET_API_TOKEN or AUTOINVITE_BITBUCKET_ACCESS_TOKEN; "+
				"or run `autoinvite serve --sandbox` to use the built-in fake Jira and Bitbucket against this Redis", ErrNoCredentials)
		}
		url, err := a.startSandbox()
		if err != nil {
			return jiraOpts, bbOpts, err
		}
		jiraOpts.BaseURL, bbOpts.BaseURL = url, url
		jiraOpts.Auth = atlassian.Auth{Email: "sandbox@autoinvite.invalid", Token: "sandbox"}
		bbOpts.Auth = jiraOpts.Auth
		return jiraOpts, bbOpts, nil
	}
	jiraOpts.Auth, bbOpts.Auth, err = atlassianAuth(s, a.cfg.Jira.Deployment)
	return jiraOpts, bbOpts, err
}

// atlassianAuth is how the Jira and Bitbucket clients authenticate, from the
// secrets.
func atlassianAuth(s config.Secrets, jiraDeployment string) (jiraAuth, bbAuth atlassian.Auth, err error) {
	if err := s.ValidateCredentials(jiraDeployment); err != nil {
		return jiraAuth, bbAuth, err
	}
	if jiraDeployment == config.DeploymentDataCenter {
		jiraAuth = atlassian.Auth{Bearer: s.JiraBearerToken}
	} else {
		jiraAuth = atlassian.Auth{Email: s.JiraEmail, Token: s.JiraAPIToken}
	}
	if s.BitbucketAccessToken != "" {
		bbAuth = atlassian.Auth{Bearer: s.BitbucketAccessToken}
	} else {
		bbAuth = atlassian.Auth{Email: s.BitbucketEmail, Token: s.BitbucketAPIToken}
	}
	return jiraAuth, bbAuth, nil
}

func (a *App) startSandbox() (string, error) {
	f := fake.New()
	f.SeedDemo()
	f.SeedAtlassianDemo()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("start sandbox: %w", err)
	}
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	a.sandbox = f
	a.closers = append(a.closers, func() { srv.Close() })
	url := "http://" + ln.Addr().String()
	why := "no Atlassian credentials in the environment and the embedded Redis"
	if a.opts.Sandbox {
		why = "--sandbox"
	}
	a.log.Warn().Str("sandbox_url", url).
		Msg("SANDBOX MODE (" + why + "): Jira and Bitbucket are the built-in fake. Nothing real is invited. Set AUTOINVITE_JIRA_* and AUTOINVITE_BITBUCKET_* (and drop --sandbox) to go live.")
	return url, nil
}

// Worker returns the worker of the config in force (tests, benchmarks and the CLI's backfill).
func (a *App) Worker() *worker.Worker { return a.current.Load().worker }

// StartScheduler fires the invitation sweep on invitations.sweep_schedule. Every
// serve process runs one; the tick-stamped sweep task lets one per tick through.
func (a *App) StartScheduler() error {
	sched, err := config.CronParser.Parse(a.cfg.Invitations.SweepSchedule)
	if err != nil {
		return fmt.Errorf("invitations.sweep_schedule: %w", err)
	}
	if err := a.scheduleDigest(); err != nil {
		return err
	}
	period := time.Minute
	if every, ok := sched.(cron.ConstantDelaySchedule); ok {
		period = every.Delay
	}
	c := cron.New(cron.WithLocation(time.UTC))
	c.Schedule(sched, cron.FuncJob(func() {
		// Processes started at different times tick at different instants:
		// truncating to the period gives them the same tick id.
		tick := a.now().UTC().Truncate(period)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		dup, err := a.enqueuer.EnqueueSweep(ctx, tick)
		a.log.Info().Err(err).Time("tick", tick).Bool("already_queued", dup).Msg("sweep tick")
	}))
	if err := a.scheduleReconcile(c); err != nil {
		return err
	}
	c.Start()
	a.closers = append(a.closers, func() { <-c.Stop().Done() })
	return nil
}

// Sandbox returns the built-in fake Atlassian, or nil when running for real.
func (a *App) Sandbox() *fake.Fake { return a.sandbox }

// Ledger returns the ledger store of the config in force.
func (a *App) Ledger() *ledger.Store { return a.current.Load().ledger }

// JiraUsers lists Jira's users (for backfill).
func (a *App) JiraUsers() *jira.Client { return a.current.Load().jira }

// Rules returns the rules in force.
func (a *App) Rules() *rules.Engine { return a.current.Load().engine }

// Metrics returns the app's metrics.
func (a *App) Metrics() *metrics.Metrics { return a.metrics }

// Redis returns the Redis client the app uses.
func (a *App) Redis() redis.UniversalClient { return a.rdb }

// Queue returns the name of the events queue.
func (a *App) Queue() string { return a.queue }

// queuedUserEvents counts the tasks queued and not yet started: in a burst,
// user events on their way to a worker.
func (a *App) queuedUserEvents(context.Context) (int, error) {
	info, err := a.inspector.GetQueueInfo(a.queue)
	if errors.Is(err, asynq.ErrQueueNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("count the queued tasks of %s: %w", a.queue, err)
	}
	return info.Pending, nil
}

// Handler is the HTTP API: webhooks, health and readiness.
func (a *App) Handler() http.Handler { return a.handler }

func (a *App) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.rdb.Ping(ctx).Err(); err != nil {
		http.Error(w, "redis unreachable", http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ready\n"))
}

// StartWorkers starts processing tasks in the background.
func (a *App) StartWorkers() error {
	if err := a.server.Start(a.mux); err != nil {
		return fmt.Errorf("start workers: %w", err)
	}
	a.serverUp = true
	return nil
}

// StopWorkers stops processing tasks: in-flight ones finish (or go back to
// the queue after the shutdown timeout), and this process leaves Asynq's list
// of servers.
func (a *App) StopWorkers() {
	if a.serverUp {
		a.server.Shutdown()
		a.serverUp = false
	}
}

// Run serves HTTP on the configured address and processes tasks until ctx is
// done, then shuts down gracefully: stop accepting, finish in-flight tasks.
func (a *App) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", a.cfg.Listen, err)
	}
	if a.opts.Roles.Worker {
		if err := a.StartWorkers(); err != nil {
			ln.Close()
			return err
		}
	}
	if a.opts.Roles.Scheduler {
		if err := a.StartScheduler(); err != nil {
			ln.Close()
			return err
		}
	}
	if a.webhookSecret == "" { // read before the watcher can reload (a reload never empties it)
		a.log.Warn().Msg("AUTOINVITE_JIRA_WEBHOOK_SECRET is not set: webhooks are accepted unsigned; set it (and the same secret in Jira) in production")
	}
	if a.opts.ConfigPath != "" {
		if err := a.WatchConfig(ctx); err != nil {
			a.log.Warn().Err(err).Msg("cannot watch the config file: reload with SIGHUP or POST /-/reload")
		}
	}
	srv := &http.Server{Handler: a.handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	a.log.Info().Str("listen", ln.Addr().String()).Str("queue", a.queue).Str("roles", a.opts.Roles.String()).Msg("autoinvite serving: POST /webhooks/jira, GET /healthz, GET /readyz, GET /metrics")
	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	}
	a.log.Info().Msg("shutting down: intake closed, finishing in-flight tasks")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(shutdownCtx)
	return nil
}

// Close stops the workers and releases everything; it is safe on an App
// that was only partly built, or nil.
func (a *App) Close() {
	if a == nil {
		return
	}
	a.StopWorkers()
	if a.client != nil {
		a.client.Close()
	}
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// asynqLogger sends asynq's own logs to zerolog.
type asynqLogger struct{ l zerolog.Logger }

func (l asynqLogger) Debug(args ...any) { l.l.Debug().Msg(fmt.Sprint(args...)) }
func (l asynqLogger) Info(args ...any)  { l.l.Info().Msg(fmt.Sprint(args...)) }
func (l asynqLogger) Warn(args ...any)  { l.l.Warn().Msg(fmt.Sprint(args...)) }
func (l asynqLogger) Error(args ...any) { l.l.Error().Msg(fmt.Sprint(args...)) }
func (l asynqLogger) Fatal(args ...any) { l.l.Fatal().Msg(fmt.Sprint(args...)) }

// ConnectRedis returns a go-redis client for the configured (not embedded)
// Redis, for commands that only read it (`autoinvite doctor`).
func ConnectRedis(r config.Redis, s config.Secrets) (redis.UniversalClient, error) {
	rdb, _, err := redisClients(r, s)
	return rdb, err
}
