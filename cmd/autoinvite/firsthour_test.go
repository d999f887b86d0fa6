package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/autoinvite/autoinvite/app"
	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/internal/testenv"
)

// check-config reports unknown fields and wrong types together with every
// validation error, in file order.
func TestCheckConfigReportsShapeAndValidationErrorsTogether(t *testing.T) {
	path := filepath.Join(t.TempDir(), "autoinvite.yaml")
	os.WriteFile(path, []byte(`invitations:
  expire_after: 7d
  max_resend: 3
worker: {concurrency: ten}
workspaces:
  - workspace: acme
    rules:
      - name: engineers
        match: {email_domains: [acme.com]}
        groups: [Developers]
`), 0o600)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"check-config", "--config", path}, &out, &errOut, func(string) string { return "" })
	if code != 1 || out.Len() != 0 {
		t.Fatalf("exit %d, stdout %q", code, out.String())
	}
	golden(t, "check-config-all-at-once", strings.ReplaceAll(errOut.String(), path, "autoinvite.yaml"))
}

// Unknown subcommands, statuses and workspaces are refused with the valid
// choices; day durations are accepted wherever a duration is.
func TestCLIArgumentsAreCheckedStrictly(t *testing.T) {
	c := newCLIEnv(t)
	var got strings.Builder
	for _, args := range [][]string{
		{"invites", "lst"},
		{"invites", "list", "--status", "bogus"},
		{"invites", "list", "--workspace", "nope"},
		{"invites", "list", "noah@acme.com"},
		{"invites", "show", "noah@acme.com", "--workspace", "nope"},
		{"invites", "resend", "noah@acme.com", "--timeout", "1 minute"},
		{"revocations", "status", "--workspace", "nope"},
		{"revocations", "stats", "--workspace", "acme"},
		{"backfill", "--dry-run", "--workspace", "nope"},
		{"audit", "--since", "7 days"},
	} {
		out, errOut, code := c.run(args...)
		got.WriteString("$ autoinvite " + strings.Join(args, " ") + "\n" + out + errOut + "exit " + string(rune('0'+code)) + "\n")
	}
	golden(t, "cli-refusals", got.String())

	week := c.ok("audit", "--since", "7d")
	if hours := c.ok("audit", "--since", "168h"); week != hours || strings.Count(week, "\n") < 4 {
		t.Fatalf("audit --since 7d:\n%s\n--since 168h:\n%s", week, hours)
	}
	if out := c.ok("invites", "list", "--status", "granted", "--workspace", "acme"); !strings.Contains(out, "mia@acme.com") || strings.Contains(out, "noah@acme.com") {
		t.Fatalf("valid filters:\n%s", out)
	}
}

// A resend or cancel that changes nothing says why.
func TestResendAndCancelSayWhyNothingChanged(t *testing.T) {
	c := newCLIEnv(t)
	// The CLI's config may name a workspace the person has no entry in.
	os.WriteFile(c.cfg, []byte("redis: {key_prefix: "+c.e.Redis.Prefix+"}\n"+testenv.DefaultRules+
		"  - workspace: beta\n    rules: [{name: all, match: {}, groups: [readers]}]\n"), 0o600)
	var got strings.Builder
	step := func(args ...string) {
		out, errOut, code := c.run(args...)
		got.WriteString("$ autoinvite " + strings.Join(args, " ") + "\n" + out + errOut + "exit " + string(rune('0'+code)) + "\n")
	}
	step("invites", "resend", "noah@acme.com") // sent at 09:00, it is 09:00
	step("invites", "resend", "mia@acme.com")  // granted: no invitation
	step("invites", "cancel", "mia@acme.com")
	step("invites", "resend", "noah@acme.com", "--workspace", "beta")
	step("invites", "cancel", "noah@acme.com")
	c.clock.Advance(2 * time.Minute)
	step("invites", "resend", "noah@acme.com")
	step("invites", "cancel", "noah@acme.com")
	golden(t, "invites-nothing-changed", got.String())
}

// backfill --dry-run leaves out people already in the ledger and ends with
// a summary.
func TestBackfillDryRunSkipsTheLedgerAndSummarises(t *testing.T) {
	c := newCLIEnv(t) // Mia, Noah and Olivia are in the ledger; Ann is not
	c.e.Fake.AddJiraUser(fake.JiraUser{AccountID: "557058:ann", AccountType: "atlassian", Email: "ann@acme.com", Active: true})
	c.e.Fake.ResetCalls()
	out := c.ok("backfill", "--dry-run")
	golden(t, "backfill-dry-run", out)
	for _, call := range c.e.Fake.CallStrings() {
		if !strings.HasPrefix(call, "GET /rest/api/3/users/search") {
			t.Fatalf("dry run made %s", call)
		}
	}
}

// Alerts see the labelled counters from the start; the config hash is a
// label; a reload keeps saying what still needs a restart.
func TestMetricsAndReloadForOperators(t *testing.T) {
	e := testenv.New(t)
	scrape := func() string {
		resp, err := http.Get(e.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	m := scrape()
	for _, want := range []string{
		`autoinvite_atlassian_auth_failures_total{api="jira",status="401"} 0`,
		`autoinvite_atlassian_auth_failures_total{api="bitbucket",status="403"} 0`,
		`autoinvite_atlassian_auth_failures_total{api="organization",status="401"} 0`,
		`autoinvite_atlassian_auth_failures_total{api="bitbucket-dc",status="403"} 0`,
		`autoinvite_config_reloads_total{result="failure"} 0`,
		`autoinvite_config_reloads_total{result="success"} 0`,
		`autoinvite_config_reloads_total{result="unchanged"} 0`,
		`autoinvite_config_info{hash="` + e.App.ConfigHash() + `"} 1`,
	} {
		if !strings.Contains(m, "\n"+want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(m, "autoinvite_config_hash") {
		t.Error("the float autoinvite_config_hash is still exported")
	}

	e.WriteRules("worker: {concurrency: 3}\n" + testenv.DefaultRules)
	first, err := e.App.Reload()
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.App.Reload() // nothing changed since: the restart is still due
	if err != nil {
		t.Fatal(err)
	}
	if !first.Changed || !slices.Equal(first.NeedsRestart, []string{"worker"}) || again.Changed || !slices.Equal(again.NeedsRestart, []string{"worker"}) {
		t.Fatalf("first reload %+v, second %+v: want needs_restart [worker] both times", first, again)
	}
	m = scrape()
	infos := regexp.MustCompile(`(?m)^autoinvite_config_info\{.*$`).FindAllString(m, -1)
	if len(infos) != 1 || infos[0] != `autoinvite_config_info{hash="`+first.Hash+`"} 1` {
		t.Fatalf("config_info after reload: %q", infos)
	}
}

// `autoinvite version` reports the module version and VCS revision.
func TestVersionComesFromTheBuild(t *testing.T) {
	settings := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i+1 < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	rev := "0dfbf38a1b2c3d4e5f60718293a4b5c6d7e8f901"
	for _, tc := range []struct {
		bi          *debug.BuildInfo
		short, long string
	}{
		{&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.4.0"}},
			"v1.4.0", "autoinvite v1.4.0 (no VCS revision in this build, built with go1.26.8)"},
		{&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: settings("vcs.revision", rev, "vcs.time", "2026-11-28T00:26:24Z", "vcs.modified", "true")},
			"devel+0dfbf38a1b2c.dirty", "autoinvite devel (revision " + rev + ", modified (uncommitted changes), committed 2026-11-28T00:26:24Z, built with go1.26.8)"},
		{&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261128002624-0dfbf38a1b2c"}, Settings: settings("vcs.revision", rev, "vcs.modified", "false")},
			"v0.0.0-20261128002624-0dfbf38a1b2c", "autoinvite v0.0.0-20261128002624-0dfbf38a1b2c (revision " + rev + ", built with go1.26.8)"},
		{nil, "devel", "autoinvite devel (no VCS revision in this build)"},
	} {
		short, long := app.DescribeBuild(tc.bi)
		if short != tc.short || long != tc.long {
			t.Errorf("DescribeBuild:\n got  %q, %q\n want %q, %q", short, long, tc.short, tc.long)
		}
	}

	// The binary built from this checkout names its commit.
	out, err := exec.Command(autoinviteBinary(t), "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "autoinvite ") || strings.Contains(string(out), " dev\n") {
		t.Fatalf("autoinvite version: %v: %q", err, out)
	}
	if exec.Command("git", "rev-parse", "HEAD").Run() != nil {
		t.Logf("not a git checkout: %s", out)
		return
	}
	m := regexp.MustCompile(`\(revision ([0-9a-f]{40})`).FindStringSubmatch(string(out))
	if m == nil || exec.Command("git", "cat-file", "-e", m[1]+"^{commit}").Run() != nil {
		t.Fatalf("autoinvite version names no commit of this repository: %q", out)
	}
}

// `autoinvite healthcheck` is the container's probe: exit 0 when the
// service answers /readyz, 1 otherwise, with the reason.
func TestHealthcheck(t *testing.T) {
	e := testenv.New(t, testenv.IntakeOnly())
	var out, errOut bytes.Buffer
	cl := &cli{stdout: &out, stderr: &errOut, env: func(string) string { return "" }, now: time.Now}
	if code := cl.run(context.Background(), []string{"healthcheck", "--url", e.URL + "/readyz"}); code != 0 || out.String() != e.URL+"/readyz: ready\n" {
		t.Fatalf("ready service: exit %d, %q %q", code, out.String(), errOut.String())
	}

	// Without --url: /readyz on the config's listen address, over loopback.
	addr := freeAddr(t)
	cfg := writeConfig(t, "listen: \"0.0.0.0:"+addr[strings.LastIndex(addr, ":")+1:]+"\"\n"+testenv.DefaultRules)
	out.Reset()
	errOut.Reset()
	code := cl.run(context.Background(), []string{"healthcheck", "--config", cfg, "--timeout", "2s"})
	if want := "error: healthcheck http://" + addr + "/readyz: "; code != 1 || !strings.HasPrefix(errOut.String(), want) || !strings.Contains(errOut.String(), "connection refused") {
		t.Fatalf("nothing listening: exit %d, stderr %q, want prefix %q", code, errOut.String(), want)
	}
	for listen, want := range map[string]string{":8080": "127.0.0.1:8080", "[::]:9000": "127.0.0.1:9000", "10.0.0.5:8080": "10.0.0.5:8080"} {
		if got := probeAddr(listen); got != want {
			t.Errorf("probeAddr(%q) = %q, want %q", listen, got, want)
		}
	}
}

// The container setup passes every variable the service reads (secrets also
// as NAME_FILE), keeps .git and secrets out of the build context, and has a
// healthcheck that needs nothing but the binary.
func TestContainerSetup(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("../..", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	var compose struct {
		Services map[string]struct {
			Environment map[string]string `yaml:"environment"`
			Healthcheck struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal([]byte(read("docker-compose.yml")), &compose); err != nil {
		t.Fatal(err)
	}
	svc := compose.Services["autoinvite"]

	// Every AUTOINVITE_* variable the service's code names.
	notForCompose := map[string]string{
		"AUTOINVITE_EMBEDDED_REDIS_ADDR": "compose runs a real Redis",
	}
	notSecret := map[string]bool{"AUTOINVITE_LISTEN": true, "AUTOINVITE_REDIS_URL": true, "AUTOINVITE_JIRA_BASE_URL": true,
		"AUTOINVITE_BITBUCKET_BASE_URL": true, "AUTOINVITE_CONFIG": true, "AUTOINVITE_ACTOR": true}
	literal := regexp.MustCompile(`"(AUTOINVITE_[A-Z0-9_]*[A-Z0-9])"`)
	seen := map[string]bool{}
	for _, dir := range []string{"app", "cmd/autoinvite", "config", "doctor", "intake", "jobs", "ledger", "worker", "rules", "metrics"} {
		files, _ := filepath.Glob(filepath.Join("../..", dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, _ := os.ReadFile(f)
			for _, m := range literal.FindAllStringSubmatch(string(b), -1) {
				seen[m[1]] = true
			}
		}
	}
	if len(seen) < 15 {
		t.Fatalf("found only %d variables: %v", len(seen), seen)
	}
	for name := range seen {
		if _, skip := notForCompose[name]; skip {
			continue
		}
		if _, ok := svc.Environment[name]; !ok {
			t.Errorf("docker-compose.yml does not pass %s", name)
		}
		if _, ok := svc.Environment[name+"_FILE"]; !notSecret[name] && !ok {
			t.Errorf("docker-compose.yml does not pass %s_FILE", name)
		}
	}
	if got := strings.Join(svc.Healthcheck.Test, " "); !strings.HasPrefix(got, "CMD /autoinvite healthcheck") {
		t.Errorf("compose healthcheck = %q, want the binary's own probe", got)
	}
	if df := read("Dockerfile"); !regexp.MustCompile(`(?m)^HEALTHCHECK .*\n\s+CMD \["/autoinvite", "healthcheck"\]`).MatchString(df) {
		t.Errorf("Dockerfile has no HEALTHCHECK with `autoinvite healthcheck`")
	}
	ignored := strings.Fields(read(".dockerignore"))
	for _, want := range []string{".git", ".env", "/autoinvite", "*.test"} {
		if !slices.Contains(ignored, want) {
			t.Errorf(".dockerignore does not leave out %s", want)
		}
	}
}
