package app_test

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	writeToken := func(token string) {
		t.Helper()
		if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
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
