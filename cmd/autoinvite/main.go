// Command autoinvite gives new Jira users their Bitbucket access.
//
//	autoinvite serve --config FILE          run the webhook intake and the workers
//	autoinvite check-config --config FILE   validate a config file and exit
//	autoinvite doctor --config FILE         check credentials, workspaces and groups live
//	autoinvite healthcheck --config FILE    probe the running service (container healthcheck)
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/app"
	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/internal/logwriter"
)

const usage = `autoinvite gives new Jira users their Bitbucket access.

Usage:
  autoinvite serve        --config FILE   run the webhook intake, the workers and the sweep
                          [--sandbox]     with the built-in fake Jira and Bitbucket (automatic
                                          only with the embedded Redis and no credentials)
  autoinvite check-config --config FILE   report every problem in a config file
  autoinvite doctor       --config FILE   live preflight: credentials, workspaces, groups,
                                          administration; read-only, exit 1 on a failure
  autoinvite plan --email E [--jira-groups a,b] [--account-type T] [--account-id ID]
                                          dry run: which rules match, which calls would be made
  autoinvite invites list [--workspace W] [--status S] [--email E] [--json]
  autoinvite invites show   EMAIL|ACCOUNT [--json]
  autoinvite invites resend EMAIL|ACCOUNT [--workspace W] [--timeout 30s]
  autoinvite invites cancel EMAIL|ACCOUNT [--workspace W] [--timeout 30s]
  autoinvite sweep --once [--timeout 30s] run one invitation sweep now
  autoinvite revocations status|resume --workspace W [--timeout 30s]
  autoinvite backfill [--workspace W] [--jira-group G] [--dry-run] [--limit N]
                                          run existing Jira users through the rules
  autoinvite reconcile [--workspace W] [--dry-run] [--json] [--timeout 30s]
                                          repair what webhooks missed: Jira vs Bitbucket vs ledger
  autoinvite audit [--since 24h] [--email E] [--follow] [--json]
                                          the audit trail: every decision and Atlassian change
  autoinvite status                       queues, tasks waiting for the Atlassian budget, its use, ETA
  autoinvite healthcheck [--url URL]      exit 0 when the running service is ready (GET /readyz
                                          on the config's listen address); for containers
  autoinvite version                      module version and VCS revision of this build

Every command takes --config FILE (default $AUTOINVITE_CONFIG or autoinvite.yaml).
Durations are written 90s, 15m, 24h or 7d.
The admin commands talk to the service's Redis (redis.url or AUTOINVITE_REDIS_URL; with
neither, the embedded Redis of a running serve at 127.0.0.1:6380, moved with
AUTOINVITE_EMBEDDED_REDIS_ADDR) and need no Atlassian credentials: resend, cancel, sweep and
revocations resume are queued for the running service's workers, and wait --timeout for one
to take them. backfill runs in the command itself and needs the same credentials as serve.
Secrets come from the environment; see README.md.
`

func main() {
	c := &cli{stdout: os.Stdout, stderr: os.Stderr, env: os.Getenv, now: time.Now}
	os.Exit(c.run(context.Background(), os.Args[1:]))
}

// cli holds what commands read and write, so tests can substitute them.
type cli struct {
	stdout, stderr io.Writer
	env            func(string) string
	now            func() time.Time
}

// run is kept for the tests written against the original signature.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, env func(string) string) int {
	return (&cli{stdout: stdout, stderr: stderr, env: env, now: time.Now}).run(ctx, args)
}

func (c *cli) run(ctx context.Context, args []string) int {
	stdout, stderr, env := c.stdout, c.stderr, c.env
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr, env)
	case "check-config":
		return checkConfig(args[1:], stdout, stderr, env)
	case "doctor":
		return c.doctor(ctx, args[1:])
	case "plan":
		return c.plan(args[1:])
	case "invites":
		return c.invites(ctx, args[1:])
	case "sweep":
		return c.sweep(ctx, args[1:])
	case "revocations":
		return c.revocations(ctx, args[1:])
	case "audit":
		return c.audit(ctx, args[1:])
	case "status":
		return c.status(ctx, args[1:])
	case "backfill":
		return c.backfill(ctx, args[1:])
	case "reconcile":
		return c.reconcile(ctx, args[1:])
	case "healthcheck":
		return c.healthcheck(ctx, args[1:])
	case "version":
		bi, _ := debug.ReadBuildInfo()
		_, long := app.DescribeBuild(bi)
		fmt.Fprintln(stdout, long)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

func configFlag(fs *flag.FlagSet, env func(string) string) *string {
	def := env("AUTOINVITE_CONFIG")
	if def == "" {
		def = "autoinvite.yaml"
	}
	return fs.String("config", def, "config file (env AUTOINVITE_CONFIG)")
}

func checkConfig(args []string, stdout, stderr io.Writer, env func(string) string) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configFlag(fs, env)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.LoadFile(*path, env)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	rulesCount := 0
	for _, ws := range cfg.Workspaces {
		rulesCount += len(ws.Rules)
	}
	fmt.Fprintf(stdout, "%s: OK (%d workspaces, %d rules)\n", *path, len(cfg.Workspaces), rulesCount)
	return 0
}

func serve(ctx context.Context, args []string, stderr io.Writer, env func(string) string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configFlag(fs, env)
	level := fs.String("log-level", "info", "debug, info, warn or error")
	roleFlag := fs.String("role", "all", "what this process runs: intake, worker, scheduler or all (comma-separated)")
	sandbox := fs.Bool("sandbox", false, "use the built-in fake Jira and Bitbucket, even against an external Redis (nothing real is invited)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	roles, err := app.ParseRoles(*roleFlag)
	if err != nil {
		fmt.Fprintf(stderr, "--role: %v\n", err)
		return 2
	}
	lvl, err := zerolog.ParseLevel(*level)
	if err != nil {
		fmt.Fprintf(stderr, "--log-level: %v\n", err)
		return 2
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	// Info lines go out in batches, at most logDelay after they are logged
	// (one write(2) for many under load); warnings and errors at once. The
	// deferred Close, which runs last, writes any still queued.
	logOut := logwriter.New(stderr, logDelay)
	defer logOut.Close()
	log := zerolog.New(logOut).Level(lvl).With().Timestamp().Str("service", "autoinvite").Logger()
	// go-redis logs through a process-wide logger: keep its lines in the JSON stream.
	redis.SetLogger(redisLogger{log.With().Str("component", "redis").Logger()})

	cfg, err := config.LoadFile(*path, env)
	if err != nil {
		log.Error().Str("config", *path).Msg("invalid config:\n" + err.Error())
		return 1
	}
	secrets, err := config.SecretsFromEnv(env)
	if err != nil {
		log.Error().Err(err).Msg("read secrets")
		return 1
	}
	log.Info().Str("config", *path).Int("workspaces", len(cfg.Workspaces)).Str("secrets", secrets.String()).Msg("config loaded")

	a, err := app.New(app.Options{Config: cfg, ConfigPath: *path, Env: env, Secrets: secrets, Logger: log, Roles: roles, Sandbox: *sandbox,
		EmbeddedRedisAddr: embeddedRedisAddr(env)})
	if err != nil {
		log.Error().Err(err).Msg("start")
		return 1
	}
	defer a.Close()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				a.Reload() // logs and counts its own outcome
			}
		}
	}()
	if err := a.Run(ctx); err != nil {
		log.Error().Err(err).Msg("serve")
		return 1
	}
	return 0
}

// logDelay: the longest an info line waits to be written (and what a
// crash can lose of them); docs/performance.md section 1.
const logDelay = 5 * time.Millisecond

type redisLogger struct{ l zerolog.Logger }

func (r redisLogger) Printf(_ context.Context, format string, v ...any) {
	r.l.Warn().Msgf(format, v...)
}
