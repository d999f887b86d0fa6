package main

import (
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/autoinvite/autoinvite/app"
	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/ledger"
)

// durationValue is a flag that reads durations as the config does, so that
// `--since 7d` works where `expire_after: 7d` does.
type durationValue struct{ d *time.Duration }

func (v durationValue) String() string {
	if v.d == nil {
		return ""
	}
	return v.d.String()
}

func (v durationValue) Set(s string) error {
	d, err := config.ParseDuration(s)
	if err != nil {
		return err
	}
	*v.d = d
	return nil
}

func durationFlag(fs *flag.FlagSet, name string, def time.Duration, usage string) *time.Duration {
	d := def
	fs.Var(durationValue{&d}, name, usage+" (90s, 15m, 24h or 7d)")
	return &d
}

// choice refuses a value that is not one of valid, listing the valid ones.
func choice(what, value string, valid []string) error {
	if slices.Contains(valid, value) {
		return nil
	}
	return fmt.Errorf("unknown %s %q: use %s", what, value, orList(valid))
}

// orList writes "a, b or c", each quoted as typed.
func orList(items []string) string {
	switch len(items) {
	case 0:
		return "(none)"
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// statusNames are the ledger statuses `invites list --status` accepts.
func statusNames() []string {
	var out []string
	for _, s := range []ledger.Status{
		ledger.StatusGranted, ledger.StatusInvited, ledger.StatusWaitingForEmail, ledger.StatusFailed,
		ledger.StatusExcluded, ledger.StatusExpired, ledger.StatusCancelled, ledger.StatusRevoked,
		ledger.StatusRevocationHeld, ledger.StatusSeatLimit, ledger.StatusBatched, ledger.StatusUserMissing,
	} {
		out = append(out, string(s))
	}
	return out
}

func workspaceNames(cfg *config.Config) []string {
	out := make([]string, len(cfg.Workspaces))
	for i, ws := range cfg.Workspaces {
		out[i] = ws.Workspace
	}
	return out
}

// usageError prints a refused argument and returns the usage exit code.
func (c *cli) usageError(err error) int {
	fmt.Fprintln(c.stderr, "error:", err)
	return 2
}

// embeddedRedisAddr is where `serve` runs the embedded Redis and where the
// admin commands look for it.
func embeddedRedisAddr(env func(string) string) string {
	if addr := strings.TrimSpace(env(app.EmbeddedRedisAddrEnv)); addr != "" {
		return addr
	}
	return app.DefaultEmbeddedRedisAddr
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
