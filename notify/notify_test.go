package notify_test

import (
	"bufio"
	"context"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/internal/redistest"
	"github.com/autoinvite/autoinvite/ledger"
	"github.com/autoinvite/autoinvite/notify"
)

const secret = "notify-secret-must-not-leak"

// receiver is a local HTTP endpoint that records what it gets; it answers
// fail 500s first.
type receiver struct {
	mu     sync.Mutex
	bodies [][]byte
	sigs   []string
	hits   int
	fail   int
	srv    *httptest.Server
}

func newReceiver(t *testing.T, fail int) *receiver {
	r := &receiver{fail: fail}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.hits++
		if r.hits <= r.fail {
			http.Error(w, "down for a moment", http.StatusInternalServerError)
			return
		}
		r.bodies = append(r.bodies, body)
		r.sigs = append(r.sigs, req.Header.Get(notify.HeaderSignature))
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got() ([][]byte, []string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.bodies...), append([]string(nil), r.sigs...), r.hits
}

// smtpServer is a minimal SMTP server: enough of RFC 5321 for net/smtp.
type smtpServer struct {
	mu    sync.Mutex
	mails []string
	auths []string
	ln    net.Listener
}

func startSMTP(t *testing.T) *smtpServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *smtpServer) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	say := func(line string) { io.WriteString(c, line+"\r\n") }
	say("220 test ESMTP")
	var data strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			say("250-test")
			say("250 AUTH PLAIN")
		case strings.HasPrefix(cmd, "AUTH PLAIN"):
			s.mu.Lock()
			s.auths = append(s.auths, strings.TrimSpace(line)[len("AUTH PLAIN "):])
			s.mu.Unlock()
			say("235 2.7.0 ok")
		case strings.HasPrefix(cmd, "MAIL FROM"), strings.HasPrefix(cmd, "RCPT TO"):
			data.WriteString(strings.TrimSpace(line) + "\n")
			say("250 ok")
		case cmd == "DATA":
			say("354 go on")
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(l)
			}
			s.mu.Lock()
			s.mails = append(s.mails, data.String())
			s.mu.Unlock()
			data.Reset()
			say("250 queued")
		case cmd == "QUIT":
			say("221 bye")
			return
		default:
			say("250 ok")
		}
	}
}

func (s *smtpServer) got() ([]string, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.mails...), append([]string(nil), s.auths...)
}

type counts struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counts) add(sink, outcome string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[sink+"/"+outcome]++
}

// String is the counts, read under the lock (for failure messages).
func (c *counts) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprint(c.n)
}

func (c *counts) get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}

type harness struct {
	n      *notify.Notifier
	counts *counts
	rdb    redis.UniversalClient
	prefix string
}

// start runs a Notifier and an Asynq server processing its queue.
func start(t *testing.T, cfg config.Notifications, env map[string]string, digest func(context.Context, time.Time, time.Time) (notify.Digest, error)) *harness {
	t.Helper()
	r := redistest.New(t)
	rdb := r.Client(t)
	client := asynq.NewClientFromRedisClient(rdb)
	if cfg.Window == 0 {
		cfg.Window = config.Duration(300 * time.Millisecond)
	}
	c := &counts{n: map[string]int{}}
	n, err := notify.New(notify.Options{
		Redis: rdb, Prefix: r.Prefix, Enqueue: client.EnqueueContext,
		Config: func() config.Notifications { return cfg },
		Env:    func(k string) string { return env[k] }, Logger: zerolog.Nop(),
		MaxRetry: 5, Observe: c.add, Digest: digest,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 4, Queues: map[string]int{notify.Queue(r.Prefix): 1},
		RetryDelayFunc:    func(int, error, *asynq.Task) time.Duration { return 50 * time.Millisecond },
		TaskCheckInterval: 20 * time.Millisecond, DelayedTaskCheckInterval: 20 * time.Millisecond,
		LogLevel: asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(notify.TypeFlush, n.HandleFlush)
	mux.HandleFunc(notify.TypeDeliver, n.HandleDeliver)
	mux.HandleFunc(notify.TypeDigest, n.HandleDigest)
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return &harness{n: n, counts: c, rdb: rdb, prefix: r.Prefix}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func givenUp(email string) notify.Event {
	ev, ok := notify.FromAudit(ledger.AuditRecord{
		Time: time.Now(), PersonID: "acct:557058:" + email[:4], Email: email, Workspace: "acme", Group: "developers",
		Actor: "sweep", Action: ledger.ActionInvitationExpired, Outcome: ledger.OutcomeOK, Detail: "given up after 3 re-sends",
	})
	if !ok {
		panic("invitation-expired must notify")
	}
	return ev
}

func TestWebhookIsSignedAndBurstsAreAggregated(t *testing.T) {
	hook := newReceiver(t, 0)
	other := newReceiver(t, 0)
	h := start(t, config.Notifications{
		PublicURL: "https://autoinvite.acme.com",
		Webhooks: []config.WebhookSink{
			{URL: hook.srv.URL, SecretEnv: "NOTIFY_SECRET"},
			{URL: other.srv.URL, Events: []string{config.EventAuthFailure}},
		},
	}, map[string]string{"NOTIFY_SECRET": secret}, nil)
	ctx := context.Background()
	for _, email := range []string{"noah@acme.com", "mia@acme.com", "liam@acme.com"} {
		if err := h.n.Emit(ctx, givenUp(email)); err != nil {
			t.Fatal(err)
		}
	}
	// Another workspace is another window, another message.
	ev := givenUp("zoe@globex.com")
	ev.Workspace = "globex"
	if err := h.n.Emit(ctx, ev); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two messages", func() bool { b, _, _ := hook.got(); return len(b) >= 2 })
	time.Sleep(500 * time.Millisecond) // nothing more comes
	bodies, sigs, _ := hook.got()
	if len(bodies) != 2 {
		t.Fatalf("want one message per workspace, got %d: %s", len(bodies), bodies)
	}
	byWS := map[string]map[string]any{}
	for i, body := range bodies {
		if want := notify.Sign([]byte(secret), body); !hmac.Equal([]byte(sigs[i]), []byte(want)) || !strings.HasPrefix(sigs[i], "sha256=") {
			t.Fatalf("signature %q, want %q", sigs[i], want)
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		byWS[m["workspace"].(string)] = m
	}
	acme := byWS["acme"]
	person, _ := acme["person"].(map[string]any)
	if acme["event"] != config.EventInvitationGivenUp || acme["count"] != float64(3) || person["email"] != "noah@acme.com" ||
		person["account_id"] != "557058:noah" || !strings.Contains(acme["detail"].(string), "given up after 3 re-sends") {
		t.Fatalf("acme message = %v", acme)
	}
	if acme["link"] != "https://autoinvite.acme.com/ledger/person?id=acct%3A557058%3Anoah&workspace=acme" {
		t.Fatalf("link = %v", acme["link"])
	}
	if _, err := time.Parse(time.RFC3339Nano, acme["time"].(string)); err != nil {
		t.Fatalf("time = %v", acme["time"])
	}
	others, _ := acme["others"].([]any)
	if len(others) != 2 {
		t.Fatalf("others = %v", acme["others"])
	}
	if byWS["globex"]["count"] != float64(1) {
		t.Fatalf("globex = %v", byWS["globex"])
	}
	// The second sink filters: it wants auth failures only.
	if b, _, hits := other.got(); len(b) != 0 || hits != 0 {
		t.Fatalf("filtered sink got %d messages", hits)
	}
	if h.counts.get("webhook/sent") != 2 {
		t.Fatalf("counts = %v", h.counts)
	}
	// Routine records notify nobody.
	for _, action := range []string{ledger.ActionInvitationSent, ledger.ActionGroupAdded, ledger.ActionDecided} {
		if _, ok := notify.FromAudit(ledger.AuditRecord{Action: action, Outcome: ledger.OutcomeOK}); ok {
			t.Fatalf("%s must not notify", action)
		}
	}
	if _, ok := notify.FromAudit(ledger.AuditRecord{Action: ledger.ActionInvitationExpired, Outcome: ledger.OutcomeDryRun}); ok {
		t.Fatal("dry run must not notify")
	}
}

func TestDeliveryIsRetriedAfterA500(t *testing.T) {
	hook := newReceiver(t, 2)
	h := start(t, config.Notifications{Webhooks: []config.WebhookSink{{URL: hook.srv.URL}}}, nil, nil)
	if err := h.n.Emit(context.Background(), notify.Event{Event: config.EventReloadFailed, Detail: "autoinvite.yaml:3: listen: bad"}); err != nil {
		t.Fatal(err)
	}
	// The receiver has the message before the sender has read the answer
	// and counted it: wait for both.
	waitFor(t, "delivery after two 500s", func() bool { b, _, _ := hook.got(); return len(b) == 1 && h.counts.get("webhook/sent") == 1 })
	bodies, sigs, hits := hook.got()
	if hits != 3 || sigs[0] != "" {
		t.Fatalf("hits = %d, signature %q (no secret: unsigned)", hits, sigs[0])
	}
	var m notify.Message
	json.Unmarshal(bodies[0], &m)
	if m.Event != config.EventReloadFailed || m.Count != 1 || m.Person != nil || m.Link != "/ledger/" {
		t.Fatalf("message = %+v", m)
	}
	if h.counts.get("webhook/failed") != 2 || h.counts.get("webhook/sent") != 1 {
		t.Fatalf("counts = %v", h.counts)
	}
}

func TestA4xxIsNotRetried(t *testing.T) {
	gone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no such hook", http.StatusNotFound)
	}))
	defer gone.Close()
	h := start(t, config.Notifications{Webhooks: []config.WebhookSink{{URL: gone.URL}}}, nil, nil)
	h.n.Emit(context.Background(), notify.Event{Event: config.EventAuthFailure, Detail: "bitbucket answered 401"})
	waitFor(t, "dropped", func() bool { return h.counts.get("webhook/dropped") == 1 })
	time.Sleep(200 * time.Millisecond)
	if h.counts.get("webhook/failed") != 0 {
		t.Fatalf("a 404 must not be retried: %v", h.counts)
	}
}

func TestSlackGetsAReadableMessage(t *testing.T) {
	slack := newReceiver(t, 0)
	h := start(t, config.Notifications{
		PublicURL: "https://autoinvite.acme.com",
		Slack:     []config.SlackSink{{WebhookURLEnv: "SLACK_URL", Events: []string{config.EventRevocationHeld}}},
	}, map[string]string{"SLACK_URL": slack.srv.URL}, nil)
	ev, _ := notify.FromAudit(ledger.AuditRecord{
		Time: time.Now(), PersonID: "acct:557058:olivia", Email: "olivia@acme.com", Workspace: "acme", Group: "developers",
		Action: ledger.ActionRevocationHeld, Outcome: ledger.OutcomeHeld, Detail: "removal limit reached, waiting for `autoinvite revocations resume`",
	})
	h.n.Emit(context.Background(), ev)
	h.n.Emit(context.Background(), givenUp("noah@acme.com")) // filtered out: nothing for Slack
	waitFor(t, "slack", func() bool { b, _, _ := slack.got(); return len(b) == 1 })
	time.Sleep(400 * time.Millisecond)
	bodies, _, _ := slack.got()
	if len(bodies) != 1 {
		t.Fatalf("want 1 Slack message, got %d", len(bodies))
	}
	var m struct{ Text string }
	json.Unmarshal(bodies[0], &m)
	for _, want := range []string{
		":warning: *Revocation held by the circuit breaker* in workspace `acme`",
		"olivia@acme.com (557058:olivia): group developers: removal limit reached",
		"<https://autoinvite.acme.com/ledger/person?id=acct%3A557058%3Aolivia&workspace=acme|Open in the ledger>",
	} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("Slack text lacks %q:\n%s", want, m.Text)
		}
	}
}

func TestEmailThroughSMTP(t *testing.T) {
	smtpd := startSMTP(t)
	h := start(t, config.Notifications{
		PublicURL: "https://autoinvite.acme.com",
		Email: &config.EmailSink{
			SMTPAddr: smtpd.ln.Addr().String(), From: "autoinvite@acme.com", To: []string{"it-ops@acme.com", "sec@acme.com"},
			UsernameEnv: "SMTP_USER", PasswordEnv: "SMTP_PASSWORD",
		},
	}, map[string]string{"SMTP_USER": "mailer", "SMTP_PASSWORD": "smtp-password"}, nil)
	h.n.Emit(context.Background(), givenUp("noah@acme.com"))
	waitFor(t, "mail", func() bool { m, _ := smtpd.got(); return len(m) == 1 })
	mails, auths := smtpd.got()
	mail := mails[0]
	for _, want := range []string{
		"MAIL FROM:<autoinvite@acme.com>", "RCPT TO:<it-ops@acme.com>", "RCPT TO:<sec@acme.com>",
		"Subject: [autoinvite] Invitation given up in acme: noah@acme.com",
		"Person:    noah@acme.com (account 557058:noah)",
		"Detail:    group developers: given up after 3 re-sends",
		"`autoinvite invites resend <email>` sends it again.",
		"In the ledger: https://autoinvite.acme.com/ledger/person?id=acct%3A557058%3Anoah&workspace=acme",
	} {
		if !strings.Contains(mail, want) {
			t.Errorf("mail lacks %q:\n%s", want, mail)
		}
	}
	if len(auths) != 1 || auths[0] == "" {
		t.Fatalf("AUTH PLAIN not used: %v", auths)
	}
	if h.counts.get("email/sent") != 1 {
		t.Fatalf("counts = %v", h.counts)
	}
}

func TestMissingSecretIsReported(t *testing.T) {
	_, err := notify.Sinks(config.Notifications{Slack: []config.SlackSink{{WebhookURLEnv: "SLACK_URL"}}}, func(string) string { return "" }, nil)
	if err == nil || !strings.Contains(err.Error(), "notifications.slack[0].webhook_url_env: the environment variable SLACK_URL") {
		t.Fatalf("err = %v", err)
	}
}

func TestDigestGoesToTheSinksThatWantIt(t *testing.T) {
	hook := newReceiver(t, 0)
	quiet := newReceiver(t, 0)
	var since, until time.Time
	h := start(t, config.Notifications{Webhooks: []config.WebhookSink{
		{URL: hook.srv.URL, Events: []string{config.EventDigest}},
		{URL: quiet.srv.URL, Events: []string{config.EventAuthFailure}},
	}}, nil, func(_ context.Context, s, u time.Time) (notify.Digest, error) {
		since, until = s, u
		return notify.Digest{Since: s, Until: u, Workspaces: []notify.WorkspaceDigest{{
			Workspace: "acme", Invited: 4, Accepted: 2, GivenUp: 1,
			Pending: []notify.AgeCount{{Age: "<1d", Count: 1}, {Age: "1-3d", Count: 0}, {Age: ">7d", Count: 2}},
		}}}, nil
	})
	tick := time.Date(2026, 11, 3, 8, 0, 0, 0, time.UTC)
	for range 2 { // two schedulers, one digest
		if err := h.n.EnqueueDigest(context.Background(), tick); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "digest", func() bool { b, _, _ := hook.got(); return len(b) == 1 })
	time.Sleep(300 * time.Millisecond)
	bodies, _, _ := hook.got()
	if len(bodies) != 1 {
		t.Fatalf("digests = %d", len(bodies))
	}
	var m notify.Message
	json.Unmarshal(bodies[0], &m)
	if m.Event != config.EventDigest || m.Digest == nil || m.Digest.Workspaces[0].Accepted != 2 || m.Detail != "4 invited, 2 accepted, 1 given up; 3 pending" {
		t.Fatalf("digest = %s", bodies[0])
	}
	if !until.Equal(tick) || !since.Equal(tick.Add(-24*time.Hour)) {
		t.Fatalf("period %s..%s", since, until)
	}
	if _, _, hits := quiet.got(); hits != 0 {
		t.Fatal("digest sent to a sink that does not want it")
	}
	text := notify.PlainText(m)
	if !strings.Contains(text, "acme: 4 invited, 2 accepted, 1 given up") || !strings.Contains(text, "pending by age: <1d: 1, >7d: 2") {
		t.Fatalf("digest text:\n%s", text)
	}
}

func TestNoSinkNoRedisWrite(t *testing.T) {
	h := start(t, config.Notifications{}, nil, nil)
	if err := h.n.Emit(context.Background(), givenUp("noah@acme.com")); err != nil {
		t.Fatal(err)
	}
	keys, _ := h.rdb.Keys(context.Background(), "{"+h.prefix+"}:notify:*").Result()
	if len(keys) != 0 {
		t.Fatalf("keys written without a sink: %v", keys)
	}
}
