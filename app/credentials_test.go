package app_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/autoinvite/autoinvite/intake"
	"github.com/autoinvite/autoinvite/internal/testenv"
	"github.com/autoinvite/autoinvite/ledger"
)

// A Bitbucket token rotated in its file (a Kubernetes Secret, say) is used
// from the next reload, which the file's change brings about; the old token
// is revoked at the fake as Atlassian revokes it (401). A token file that
// cannot be read is refused and the running credentials stay. No token is
// ever logged.
func TestRotatedCredentialsAreUsedAfterReload(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "bitbucket-api-token")
	writeToken := func(token string) { writeSecretFile(t, tokenFile, token+"\n") }
	writeToken("rotated-token-2")
	e := testenv.New(t, testenv.WithRules(readersOnly),
		testenv.WithEnv("AUTOINVITE_JIRA_EMAIL", "bot@acme.com"), testenv.WithEnv("AUTOINVITE_JIRA_API_TOKEN", testenv.JiraToken),
		testenv.WithEnv("AUTOINVITE_BITBUCKET_EMAIL", "bot@acme.com"), testenv.WithEnv("AUTOINVITE_BITBUCKET_API_TOKEN_FILE", tokenFile))
	basic := func(token string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte("bot@acme.com:"+token))
	}
	// The token the service started with has been replaced and revoked.
	e.Fake.AcceptOnly(basic(testenv.JiraToken), basic("rotated-token-2"))
	res, err := e.App.Reload()
	if err != nil || !res.Changed || !res.CredentialsChanged {
		t.Fatalf("reload after the token file changed = %+v, %v; want the credentials changed", res, err)
	}
	assertAccepted(t, e.Webhook("user_created", "rot-mia", cloudUser(mia, "mia@acme.com")), "accepted")
	e.WaitIdle()
	if got := e.Entry("acme", "acct:"+mia); got.Status != ledger.StatusGranted {
		t.Fatalf("mia after the first rotation = %+v; want granted with the new token", got)
	}
	if res, err := e.App.Reload(); err != nil || res.Changed {
		t.Fatalf("reload with nothing changed = %+v, %v", res, err)
	}

	// Rotated again while the watcher runs: the file's change reloads.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := e.App.WatchConfig(ctx); err != nil {
		t.Fatal(err)
	}
	e.Fake.AcceptOnly(basic(testenv.JiraToken), basic("rotated-token-3"))
	writeToken("rotated-token-3")
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(e.Logs.String(), `"credentials_changed":true`) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the token file's change did not reload the credentials")
		}
		time.Sleep(20 * time.Millisecond)
	}
	assertAccepted(t, e.Webhook("user_created", "rot-noah", cloudUser(noah, "noah@acme.com")), "accepted")
	e.WaitIdle()
	if got := e.Entry("acme", "acct:"+noah); got.Status != ledger.StatusInvited {
		t.Fatalf("noah after the second rotation = %+v; want invited with the newest token", got)
	}

	// A token file that cannot be read: refused, the running credentials stay.
	cancel()
	if err := os.Remove(tokenFile); err != nil {
		t.Fatal(err)
	}
	if _, err := e.App.Reload(); err == nil || !strings.Contains(err.Error(), "AUTOINVITE_BITBUCKET_API_TOKEN_FILE") {
		t.Fatalf("reload without the token file: %v; want it refused, naming the variable", err)
	}
	for _, c := range e.Fake.Calls() {
		if c.Status == 401 {
			t.Fatalf("a call was made with a revoked token: %s", c)
		}
	}
	if logs := e.Logs.String(); strings.Contains(logs, "rotated-token") {
		t.Fatal("a token reached the logs")
	}
}

// A webhook secret is rotated without losing a delivery (Jira does not retry
// a 401): both secrets, one per line, are accepted while Jira switches, then
// only the new one. An emptied secret file is refused: it would accept
// unsigned deliveries.
func TestWebhookSecretRotationLosesNoDelivery(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "webhook-secret")
	writeSecret := func(secret string) { writeSecretFile(t, secretFile, secret) }
	writeSecret(testenv.WebhookSecret + "\n")
	e := testenv.New(t, testenv.IntakeOnly(), testenv.WithEnv("AUTOINVITE_JIRA_WEBHOOK_SECRET_FILE", secretFile))
	post := func(secret, deliveryID string) int {
		t.Helper()
		body := testenv.Payload("user_created", cloudUser(mia, "mia@acme.com"))
		return e.Post(http.MethodPost, body, map[string]string{
			intake.HeaderSignature: intake.Sign([]byte(secret), body), intake.HeaderDeliveryID: deliveryID, "Content-Type": "application/json",
		}).Status
	}
	const newSecret = "whsec-rotated-must-not-leak"
	if got := post(newSecret, "w1"); got != http.StatusUnauthorized {
		t.Fatalf("signed with the next secret before the rotation: %d; want 401", got)
	}

	writeSecret(testenv.WebhookSecret + "\n" + newSecret + "\n") // the rotation begins
	if res, err := e.App.Reload(); err != nil || !res.CredentialsChanged {
		t.Fatalf("reload with both secrets = %+v, %v", res, err)
	}
	if old, next := post(testenv.WebhookSecret, "w2"), post(newSecret, "w3"); old != http.StatusAccepted || next != http.StatusAccepted {
		t.Fatalf("during the rotation: old secret %d, new secret %d; want 202 both", old, next)
	}

	writeSecret(newSecret) // Jira signs with the new one: the old one goes
	if res, err := e.App.Reload(); err != nil || !res.CredentialsChanged {
		t.Fatalf("reload with the new secret alone = %+v, %v", res, err)
	}
	if old, next := post(testenv.WebhookSecret, "w4"), post(newSecret, "w5"); old != http.StatusUnauthorized || next != http.StatusAccepted {
		t.Fatalf("after the rotation: old secret %d, new secret %d; want 401, 202", old, next)
	}

	writeSecret("\n")
	if _, err := e.App.Reload(); err == nil || !strings.Contains(err.Error(), "unsigned") {
		t.Fatalf("reload with an empty secret file: %v; want it refused", err)
	}
	if unsigned := e.Post(http.MethodPost, testenv.Payload("user_created", cloudUser(mia, "mia@acme.com")), nil).Status; unsigned != http.StatusUnauthorized {
		t.Fatalf("unsigned delivery after the refused reload: %d; want 401", unsigned)
	}
	if next := post(newSecret, "w6"); next != http.StatusAccepted {
		t.Fatalf("after the refused reload, new secret: %d; want 202", next)
	}
	if strings.Contains(e.Logs.String(), newSecret) {
		t.Fatal("the webhook secret reached the logs")
	}
}

// The admin password is rotated by a reload too: the new one opens the
// dashboard, the old one no longer does.
func TestAdminPasswordRotatesOnReload(t *testing.T) {
	passwordFile := filepath.Join(t.TempDir(), "admin-password")
	writeSecretFile(t, passwordFile, "admin-password-rotated\n")
	e := testenv.New(t, testenv.IntakeOnly(),
		testenv.WithEnv("AUTOINVITE_ADMIN_USER", testenv.AdminUser), testenv.WithEnv("AUTOINVITE_ADMIN_PASSWORD_FILE", passwordFile))
	if got := e.Do(http.MethodGet, "/monitoring/", testenv.AdminUser, testenv.AdminPassword).Status; got != http.StatusOK {
		t.Fatalf("dashboard with the starting password: %d", got)
	}
	if res, err := e.App.Reload(); err != nil || !res.CredentialsChanged {
		t.Fatalf("reload = %+v, %v; want the credentials changed", res, err)
	}
	if old, next := e.Do(http.MethodGet, "/monitoring/", testenv.AdminUser, testenv.AdminPassword).Status,
		e.Do(http.MethodGet, "/monitoring/", testenv.AdminUser, "admin-password-rotated").Status; old != http.StatusUnauthorized || next != http.StatusOK {
		t.Fatalf("after the rotation: old password %d, new %d; want 401, 200", old, next)
	}
	if strings.Contains(e.Logs.String(), "admin-password-rotated") {
		t.Fatal("the admin password reached the logs")
	}
}

// A workspace added by a reload has its token file watched from then on: its
// rotation reloads too.
func TestTokenFileOfAWorkspaceAddedByReloadIsWatched(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "dc-token")
	writeToken := func(token string) { writeSecretFile(t, tokenFile, token) }
	writeToken("dc-token-1")
	e := testenv.New(t, testenv.WithRules(readersOnly), testenv.WithEnv("AUTOINVITE_NEWDC_TOKEN_FILE", tokenFile))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := e.App.WatchConfig(ctx); err != nil {
		t.Fatal(err)
	}
	e.WriteRules(readersOnly + `  - workspace: acme-dc
    bitbucket: {deployment: datacenter, base_url: $FAKE_URL, token_env: AUTOINVITE_NEWDC_TOKEN}
    rules: [{name: staff, match: {}, groups: [developers]}]
`)
	if res, err := e.App.Reload(); err != nil || !res.Changed {
		t.Fatalf("reload adding the workspace = %+v, %v", res, err)
	}
	changed := func() int { return strings.Count(e.Logs.String(), `"credentials_changed":true`) }
	before := changed()
	time.Sleep(300 * time.Millisecond) // the watcher's own reload of the rules file settles
	before = max(before, changed())
	writeToken("dc-token-2")
	deadline := time.Now().Add(10 * time.Second)
	for changed() <= before {
		if time.Now().After(deadline) {
			t.Fatal("the token file of the workspace added by the reload is not watched")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(e.Logs.String(), "dc-token-") {
		t.Fatal("a token reached the logs")
	}
}

// writeSecretFile writes a secret's file, as a Secret volume or an operator would.
func writeSecretFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A Redis password rotated in its file is what the connections opened after
// the reload authenticate with: when Redis drops every connection (a restart,
// a failover) after its password changed, signups and the dashboard go on.
// An emptied password file is refused; one Redis refuses is applied and
// reported. No password is ever logged.
func TestRedisPasswordRotatesOnReload(t *testing.T) {
	redis := miniredis.RunT(t)
	redis.RequireAuth("redis-password-old")
	passwordFile := filepath.Join(t.TempDir(), "redis-password")
	writeSecretFile(t, passwordFile, "redis-password-old\n")
	e := testenv.New(t, testenv.WithRules(readersOnly), testenv.WithRedisURL("redis://"+redis.Addr()+"/0"),
		testenv.WithEnv("AUTOINVITE_REDIS_PASSWORD_FILE", passwordFile))
	assertAccepted(t, e.Webhook("user_created", "redis-mia", cloudUser(mia, "mia@acme.com")), "accepted")
	e.WaitIdle()

	redis.RequireAuth("redis-password-new")
	writeSecretFile(t, passwordFile, "redis-password-new\n")
	if res, err := e.App.Reload(); err != nil || !res.CredentialsChanged {
		t.Fatalf("reload after the password file changed = %+v, %v; want the credentials changed", res, err)
	}
	redis.Close() // every connection drops; the next ones authenticate anew
	if err := redis.Restart(); err != nil {
		t.Fatal(err)
	}
	assertAccepted(t, e.Webhook("user_created", "redis-noah", cloudUser(noah, "noah@acme.com")), "accepted")
	e.WaitIdle()
	if got := e.Entry("acme", "acct:"+noah); got == nil || got.Status != ledger.StatusInvited {
		t.Fatalf("noah after the rotation = %+v; want invited", got)
	}
	if got := e.Do(http.MethodGet, "/monitoring/api/queues", testenv.AdminUser, testenv.AdminPassword).Status; got != http.StatusOK {
		t.Fatalf("dashboard after the rotation: %d; want 200", got)
	}

	writeSecretFile(t, passwordFile, "\n")
	if _, err := e.App.Reload(); err == nil || !strings.Contains(err.Error(), "AUTOINVITE_REDIS_PASSWORD") {
		t.Fatalf("reload with an empty password file: %v; want it refused, naming the variable", err)
	}
	redis.Close()
	if err := redis.Restart(); err != nil {
		t.Fatal(err)
	}
	assertAccepted(t, e.Webhook("user_created", "redis-ava", cloudUser(mia, "mia@acme.com")), "accepted")
	if strings.Contains(e.Logs.String(), "Redis refuses the new password") {
		t.Fatal("a password Redis accepts was reported as refused")
	}

	// A password Redis does not know yet: applied (the file is the truth),
	// and said at once.
	writeSecretFile(t, passwordFile, "redis-password-unknown\n")
	if res, err := e.App.Reload(); err != nil || !res.CredentialsChanged {
		t.Fatalf("reload with a password Redis refuses = %+v, %v; want it applied", res, err)
	}
	if !strings.Contains(e.Logs.String(), "Redis refuses the new password (AUTOINVITE_REDIS_PASSWORD)") {
		t.Fatalf("no word of the refused password in the logs:\n%s", e.Logs.String())
	}
	if strings.Contains(e.Logs.String(), "redis-password") {
		t.Fatal("a Redis password reached the logs")
	}
}
