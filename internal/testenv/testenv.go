// Package testenv runs a whole autoinvite for a test: its own Redis (or key
// prefix on a real one), the fake Atlassian validated against the official
// specs, the app's HTTP API on a loopback port and its workers.
package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/app"
	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/intake"
	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/integrations/fake/faketest"
	"github.com/autoinvite/autoinvite/integrations/ratelimit"
	"github.com/autoinvite/autoinvite/internal/redistest"
	"github.com/autoinvite/autoinvite/ledger"
)

// DefaultRules is the rule set tests use unless they pass their own.
const DefaultRules = `
workspaces:
  - workspace: acme
    rules:
      - name: engineers
        match: {email_domains: [acme.com], jira_groups: [jira-software-users]}
        groups: [developers]
      - name: everyone
        match: {}
        groups: [readers]
`

// Secrets used by every test env; tests assert they never reach the logs.
const (
	WebhookSecret     = "whsec-test-0123456789"
	AdminUser         = "ops"
	AdminPassword     = "admin-password-must-not-leak"
	JiraToken         = "jira-token-must-not-leak"
	BitbucketToken    = "bitbucket-token-must-not-leak"
	DataCenterToken   = "bitbucket-dc-token-must-not-leak"
	OrgAPIKey         = "org-api-key-must-not-leak"
	deploymentDefault = config.DeploymentCloud
)

type settings struct {
	rules      string
	deployment string
	workers    bool
	now        func() time.Time
	redisURL   string
	cluster    []string
	sentinel   string
	noAdmin    bool
	env        map[string]string
}

// WithEnv sets an environment variable of the app (a secret's _FILE, say).
func WithEnv(name, value string) Option {
	return func(s *settings) {
		if s.env == nil {
			s.env = map[string]string{}
		}
		s.env[name] = value
	}
}

// WithRedisCluster points the app at a Redis Cluster (redis.cluster).
func WithRedisCluster(addrs []string) Option { return func(s *settings) { s.cluster = addrs } }

// WithRedisSentinel points the app at a Sentinel-managed master (redis.sentinel).
func WithRedisSentinel(masterName, addr string) Option {
	return func(s *settings) { s.sentinel = "{master_name: " + masterName + ", addrs: [\"" + addr + "\"]}" }
}

// WithoutAdmin leaves AUTOINVITE_ADMIN_USER/PASSWORD unset.
func WithoutAdmin() Option { return func(s *settings) { s.noAdmin = true } }

// Option changes the env.
type Option func(*settings)

// WithRules replaces DefaultRules (YAML with a workspaces key, and optionally more).
func WithRules(yaml string) Option { return func(s *settings) { s.rules = yaml } }

// DataCenter makes Jira a Data Center site.
func DataCenter() Option { return func(s *settings) { s.deployment = config.DeploymentDataCenter } }

// IntakeOnly starts no workers: tasks stay queued.
func IntakeOnly() Option { return func(s *settings) { s.workers = false } }

// WithRedisURL points the app at this Redis instead of the test's own.
func WithRedisURL(url string) Option { return func(s *settings) { s.redisURL = url } }

// Env is a running autoinvite under test.
type Env struct {
	t          testing.TB
	ConfigPath string
	header     string
	App        *app.App
	Fake       *faketest.Server
	Redis      *redistest.Redis
	URL        string
	Logs       *SyncBuffer
	Now        func() time.Time
}

// New starts an env; everything stops at the end of the test.
func New(t testing.TB, opts ...Option) *Env {
	t.Helper()
	s := settings{rules: DefaultRules, deployment: deploymentDefault, workers: true, now: time.Now}
	for _, o := range opts {
		o(&s)
	}
	r := redistest.New(t)
	f := faketest.Start(t, fake.WithClock(s.now))
	f.SeedDemo()
	redisURL := r.URL
	if s.redisURL != "" {
		redisURL = s.redisURL
	}
	env := map[string]string{
		"AUTOINVITE_REDIS_URL":           redisURL,
		"AUTOINVITE_JIRA_BASE_URL":       f.URL,
		"AUTOINVITE_BITBUCKET_BASE_URL":  f.URL,
		config.DefaultDataCenterTokenEnv: DataCenterToken,
		config.DefaultOrgAPIKeyEnv:       OrgAPIKey,
	}
	redisYAML := "key_prefix: " + r.Prefix
	switch {
	case len(s.cluster) > 0:
		redisYAML += ", cluster: {addrs: [" + strings.Join(s.cluster, ", ") + "]}"
	case s.sentinel != "":
		redisYAML += ", sentinel: " + s.sentinel
	}
	if len(s.cluster) > 0 || s.sentinel != "" {
		delete(env, "AUTOINVITE_REDIS_URL")
	}
	for k, v := range s.env {
		env[k] = v
	}
	header := "jira: {deployment: " + s.deployment + "}\nredis: {" + redisYAML + "}\n"
	path := filepath.Join(t.TempDir(), "autoinvite.yaml")
	// Rules may point per-workspace targets at the fake with $FAKE_URL.
	s.rules = strings.ReplaceAll(s.rules, "$FAKE_URL", f.URL)
	if err := os.WriteFile(path, []byte(header+s.rules), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string { return env[k] }
	cfg, err := config.LoadFile(path, getenv)
	if err != nil {
		t.Fatalf("test config: %v", err)
	}
	secrets := config.Secrets{
		JiraEmail: "bot@acme.com", JiraAPIToken: JiraToken, JiraBearerToken: JiraToken,
		BitbucketEmail: "bot@acme.com", BitbucketAPIToken: BitbucketToken, WebhookSecret: WebhookSecret,
	}
	if !s.noAdmin {
		secrets.AdminUser, secrets.AdminPassword = AdminUser, AdminPassword
	}
	if secrets.RedisPassword, err = config.Secret(getenv, config.RedisPasswordEnv); err != nil {
		t.Fatal(err)
	}
	logs := &SyncBuffer{}
	a, err := app.New(app.Options{
		Config: cfg, ConfigPath: path, Env: getenv, Secrets: secrets, Now: s.now,
		Logger:       zerolog.New(logs).Level(zerolog.DebugLevel),
		RetryDelay:   fastRetry,
		PollInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		srv.Close()
		a.Close()
		if t.Failed() {
			t.Logf("service logs:\n%s", logs.String())
		}
	})
	if s.workers {
		if err := a.StartWorkers(); err != nil {
			t.Fatal(err)
		}
	}
	return &Env{t: t, App: a, Fake: f, Redis: r, URL: srv.URL, Logs: logs, Now: s.now, ConfigPath: path, header: header}
}

// fastRetry retries failures after 10ms, but waits for the rate budget as
// the service does (capped at a second).
func fastRetry(_ int, err error, _ *asynq.Task) time.Duration {
	if w, ok := ratelimit.AsWait(err); ok {
		return min(w.RetryAfter, time.Second)
	}
	return 10 * time.Millisecond
}

// WriteRules replaces the rules part of the config file (the service does not
// notice until a reload).
func (e *Env) WriteRules(rules string) {
	e.t.Helper()
	rules = strings.ReplaceAll(rules, "$FAKE_URL", e.Fake.URL)
	if err := os.WriteFile(e.ConfigPath, []byte(e.header+rules), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// Do sends a request to the service; user "" sends no credentials.
func (e *Env) Do(method, path, user, password string) Response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	return e.send(req)
}

func (e *Env) send(req *http.Request) Response {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := Response{Status: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
	json.Unmarshal(raw, &out.Body)
	return out
}

// Response is an HTTP answer with its JSON body decoded.
type Response struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    string
}

// Post sends body to the webhook endpoint with the given headers, as is.
func (e *Env) Post(method string, body []byte, header map[string]string) Response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.URL+"/webhooks/jira", bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return e.send(req)
}

// Webhook sends a signed Jira webhook about user; deliveryID "" sends no
// identifier header (as Data Center does).
func (e *Env) Webhook(event, deliveryID string, user map[string]any) Response {
	e.t.Helper()
	body := Payload(event, user)
	h := map[string]string{intake.HeaderSignature: intake.Sign([]byte(WebhookSecret), body), "Content-Type": "application/json"}
	if deliveryID != "" {
		h[intake.HeaderDeliveryID] = deliveryID
	}
	return e.Post(http.MethodPost, body, h)
}

// WebhookAt sends a signed webhook whose body carries Jira's timestamp ts (ms).
func (e *Env) WebhookAt(event, deliveryID string, ts int64, user map[string]any) Response {
	e.t.Helper()
	body, _ := json.Marshal(map[string]any{"timestamp": ts, "webhookEvent": event, "user": user})
	h := map[string]string{intake.HeaderSignature: intake.Sign([]byte(WebhookSecret), body), "Content-Type": "application/json", intake.HeaderDeliveryID: deliveryID}
	return e.Post(http.MethodPost, body, h)
}

// Payload is a Jira webhook body.
func Payload(event string, user map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"timestamp": 1763800000000, "webhookEvent": event, "user": user})
	return b
}

// WaitIdle waits until the events queue has nothing pending, running,
// waiting in a batch or due for retry. It fails the test after 30 s.
func (e *Env) WaitIdle() {
	e.t.Helper()
	if _, idle := redistest.WaitQueueIdle(e.App.Redis(), e.App.Queue(), 30*time.Second); !idle {
		e.t.Fatalf("queue %s not idle after 30s", e.App.Queue())
	}
}

// QueueInfo returns the events queue's counters.
func (e *Env) QueueInfo() *asynq.QueueInfo {
	e.t.Helper()
	info, err := asynq.NewInspectorFromRedisClient(e.App.Redis()).GetQueueInfo(e.App.Queue())
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return &asynq.QueueInfo{}
		}
		e.t.Fatal(err)
	}
	return info
}

// Entry returns the ledger entry of a person in a workspace (nil if none).
func (e *Env) Entry(workspace, personID string) *ledger.Entry {
	e.t.Helper()
	entry, err := e.App.Ledger().Get(context.Background(), workspace, personID)
	if err != nil {
		e.t.Fatal(err)
	}
	return entry
}

// History returns a person's story in a workspace, oldest first, from the
// audit stream (where the ledger keeps it).
func (e *Env) History(workspace, personID string) []ledger.Event {
	e.t.Helper()
	story, err := e.App.Ledger().History(context.Background(), workspace, personID, 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	return story
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
