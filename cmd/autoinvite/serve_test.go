package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/autoinvite/autoinvite/internal/redistest"
	"github.com/autoinvite/autoinvite/internal/testenv"
)

// serveFor runs `serve` in process until it logs that it serves (then stops
// it) or exits on its own; a panic fails the test instead of the binary.
func serveFor(t *testing.T, env map[string]string, args ...string) (stderr string, code int) {
	t.Helper()
	if _, ok := env["AUTOINVITE_EMBEDDED_REDIS_ADDR"]; !ok {
		// Never the fixed default port: tests run in parallel.
		env["AUTOINVITE_EMBEDDED_REDIS_ADDR"] = "127.0.0.1:0"
	}
	logs := &testenv.SyncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan int, 1)
	panicked := make(chan any, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				panicked <- p
			}
		}()
		done <- run(ctx, append([]string{"serve"}, args...), &bytes.Buffer{}, logs, func(k string) string { return env[k] })
	}()
	for {
		select {
		case code := <-done:
			return logs.String(), code
		case p := <-panicked:
			t.Fatalf("serve panicked: %v\n%s", p, logs.String())
		case <-time.After(20 * time.Millisecond):
			if strings.Contains(logs.String(), "autoinvite serving") {
				cancel()
			}
		}
	}
}

func writeConfig(t *testing.T, yaml string) string {
	path := filepath.Join(t.TempDir(), "autoinvite.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// An external Redis holds a real ledger: without credentials serve refuses
// to start rather than run the sandbox against it.
func TestServeRefusesExternalRedisWithoutCredentials(t *testing.T) {
	r := redistest.New(t)
	cfg := writeConfig(t, "redis: {key_prefix: "+r.Prefix+"}\n"+testenv.DefaultRules)
	env := map[string]string{"AUTOINVITE_REDIS_URL": r.URL, "AUTOINVITE_LISTEN": "127.0.0.1:0"}
	logs, code := serveFor(t, env, "--config", cfg)
	for _, want := range []string{
		"no Atlassian credentials in the environment and Redis is external",
		"set AUTOINVITE_JIRA_EMAIL + AUTOINVITE_JIRA_API_TOKEN (Jira Cloud) or AUTOINVITE_JIRA_BEARER_TOKEN (Data Center), and AUTOINVITE_BITBUCKET_EMAIL + AUTOINVITE_BITBUCKET_API_TOKEN or AUTOINVITE_BITBUCKET_ACCESS_TOKEN",
		"or run `autoinvite serve --sandbox`",
	} {
		if !strings.Contains(logs, want) {
			t.Fatalf("exit %d; logs lack %q:\n%s", code, want, logs)
		}
	}
	if code != 1 || strings.Contains(logs, "SANDBOX MODE") || strings.Contains(logs, "autoinvite serving") {
		t.Fatalf("exit %d, want 1 without a sandbox:\n%s", code, logs)
	}
}

// The sandbox runs when asked (--sandbox), or in the quick start: the
// embedded Redis and no credentials.
func TestServeRunsTheSandboxOnlyWhenAskedOrEmbedded(t *testing.T) {
	r := redistest.New(t)
	cfg := writeConfig(t, "redis: {key_prefix: "+r.Prefix+"}\n"+testenv.DefaultRules)
	logs, code := serveFor(t, map[string]string{"AUTOINVITE_REDIS_URL": r.URL, "AUTOINVITE_LISTEN": "127.0.0.1:0"}, "--config", cfg, "--sandbox")
	if code != 0 || !strings.Contains(logs, "SANDBOX MODE (--sandbox)") || !strings.Contains(logs, "autoinvite serving") {
		t.Fatalf("--sandbox: exit %d:\n%s", code, logs)
	}

	logs, code = serveFor(t, map[string]string{"AUTOINVITE_LISTEN": "127.0.0.1:0"}, "--config", "../../examples/autoinvite.yaml")
	if code != 0 || !strings.Contains(logs, "EMBEDDED REDIS") ||
		!strings.Contains(logs, "SANDBOX MODE (no Atlassian credentials in the environment and the embedded Redis)") {
		t.Fatalf("quick start: exit %d:\n%s", code, logs)
	}
}

// Some credentials but not all: serve names what is missing and exits 1
// (it used to panic closing the half-built app).
func TestServeWithPartialCredentialsNamesWhatIsMissing(t *testing.T) {
	r := redistest.New(t)
	cfg := writeConfig(t, "redis: {key_prefix: "+r.Prefix+"}\n"+testenv.DefaultRules)
	env := map[string]string{"AUTOINVITE_REDIS_URL": r.URL, "AUTOINVITE_JIRA_EMAIL": "bot@acme.com", "AUTOINVITE_LISTEN": "127.0.0.1:0"}
	logs, code := serveFor(t, env, "--config", cfg)
	if code != 1 || !strings.Contains(logs, "AUTOINVITE_JIRA_API_TOKEN") || strings.Contains(logs, "panic") {
		t.Fatalf("exit %d:\n%s", code, logs)
	}
}

// A Redis that refuses the password stops the start, naming where the
// password comes from and never showing it: a wrong password is not an outage
// to wait out. A Redis that does not answer at all is logged, and the service
// starts (its intake answers 503 until Redis answers).
func TestServeStopsWhenRedisRefusesThePassword(t *testing.T) {
	redis := miniredis.RunT(t)
	redis.RequireAuth("redis-right")
	cfg := writeConfig(t, "redis: {key_prefix: serve-auth}\n"+testenv.DefaultRules)
	env := map[string]string{"AUTOINVITE_REDIS_URL": "redis://" + redis.Addr() + "/0", "AUTOINVITE_REDIS_PASSWORD": "redis-wrong", "AUTOINVITE_LISTEN": "127.0.0.1:0"}
	logs, code := serveFor(t, env, "--config", cfg, "--sandbox")
	if code != 1 || !strings.Contains(logs, "Redis refused the credentials (WRONGPASS") || !strings.Contains(logs, "check AUTOINVITE_REDIS_PASSWORD") ||
		strings.Contains(logs, "autoinvite serving") || strings.Contains(logs, "redis-wrong") {
		t.Fatalf("wrong password: exit %d; want 1 with the reason and without the password:\n%s", code, logs)
	}

	env["AUTOINVITE_REDIS_PASSWORD"] = "redis-right"
	if logs, code := serveFor(t, env, "--config", cfg, "--sandbox"); code != 0 || !strings.Contains(logs, "autoinvite serving") {
		t.Fatalf("right password: exit %d; want it serving:\n%s", code, logs)
	}

	env["AUTOINVITE_REDIS_URL"] = "redis://127.0.0.1:1/0"
	if logs, code := serveFor(t, env, "--config", cfg, "--sandbox"); code != 0 || !strings.Contains(logs, "Redis does not answer") || !strings.Contains(logs, "autoinvite serving") {
		t.Fatalf("no Redis: exit %d; want it serving, the outage logged:\n%s", code, logs)
	}
}
