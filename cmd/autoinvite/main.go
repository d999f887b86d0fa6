// Command autoinvite gives new Jira users their Bitbucket access.
//
//	autoinvite serve --config FILE          run the webhook intake and the workers
//	autoinvite check-config --config FILE   validate a config file and exit
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/app"
	"github.com/autoinvite/autoinvite/config"
)

const usage = `autoinvite gives new Jira users their Bitbucket access.

Usage:
  autoinvite serve        --config FILE   run the webhook intake and the workers
  autoinvite check-config --config FILE   report every problem in a config file
  autoinvite version

Secrets come from the environment; see README.md.
`

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, env func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr, env)
	case "check-config":
		return checkConfig(args[1:], stdout, stderr, env)
	case "version":
		fmt.Fprintln(stdout, "autoinvite", app.Version)
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
	if err := fs.Parse(args); err != nil {
		return 2
	}
	lvl, err := zerolog.ParseLevel(*level)
	if err != nil {
		fmt.Fprintf(stderr, "--log-level: %v\n", err)
		return 2
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	log := zerolog.New(stderr).Level(lvl).With().Timestamp().Str("service", "autoinvite").Logger()
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

	a, err := app.New(app.Options{Config: cfg, Secrets: secrets, Logger: log})
	if err != nil {
		log.Error().Err(err).Msg("start")
		return 1
	}
	defer a.Close()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := a.Run(ctx); err != nil {
		log.Error().Err(err).Msg("serve")
		return 1
	}
	return 0
}

type redisLogger struct{ l zerolog.Logger }

func (r redisLogger) Printf(_ context.Context, format string, v ...any) {
	r.l.Warn().Msgf(format, v...)
}
