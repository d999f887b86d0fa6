package app_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/app"
	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/internal/redistest"
	"github.com/autoinvite/autoinvite/internal/testenv"
	"github.com/autoinvite/autoinvite/ledger"
)

// The quick start: the example config with no Redis URL and no credentials
// runs the sandbox, which has one workspace administered in Bitbucket (acme)
// and one in Atlassian Administration (globex); the README's demo signups
// land in both.
func TestSandboxDemoCoversBothKindsOfWorkspace(t *testing.T) {
	cfg, err := config.LoadFile("../examples/autoinvite.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.SyncBuffer{}
	a, err := app.New(app.Options{Config: cfg, Logger: zerolog.New(logs), PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.StartWorkers(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	for id, user := range map[string]map[string]any{
		"demo-noah":  cloudUser(fake.DemoNewcomerAccountID, "noah@acme.com"),
		"demo-mia":   cloudUser(fake.DemoMemberAccountID, "mia@acme.com"),
		"demo-grace": cloudUser(fake.DemoDirectoryAccountID, "grace@globex.com"),
		"demo-henry": cloudUser(fake.DemoOrgNewcomerAccountID, "henry@globex.com"),
	} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/webhooks/jira", bytes.NewReader(testenv.Payload("user_created", user)))
		req.Header.Set("X-Atlassian-Webhook-Identifier", id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%s: status %d", id, resp.StatusCode)
		}
	}
	if _, idle := redistest.WaitQueueIdle(a.Redis(), a.Queue(), 30*time.Second); !idle {
		t.Fatal("queue not idle")
	}
	sandbox := a.Sandbox()
	want := map[string]ledger.Status{
		"acme\x00acct:" + fake.DemoNewcomerAccountID:      ledger.StatusInvited,
		"acme\x00acct:" + fake.DemoMemberAccountID:        ledger.StatusGranted,
		"globex\x00acct:" + fake.DemoDirectoryAccountID:   ledger.StatusGranted,
		"globex\x00acct:" + fake.DemoOrgNewcomerAccountID: ledger.StatusInvited,
	}
	for key, status := range want {
		ws, person, _ := bytes.Cut([]byte(key), []byte("\x00"))
		got, err := a.Ledger().Get(t.Context(), string(ws), string(person))
		if err != nil || got == nil || got.Status != status {
			t.Fatalf("%s %s: ledger = %+v, %v; want %s\nlogs:\n%s", ws, person, got, err, status, logs.String())
		}
	}
	if !slices.Contains(sandbox.OrgGroupMembers("developers"), fake.DemoDirectoryAccountID) {
		t.Fatal("grace is not in the organization's developers group")
	}
	if inv := sandbox.OrgInvites(); len(inv) != 1 || !slices.Equal(inv[0].Emails, []string{"henry@globex.com"}) {
		t.Fatalf("organization invitations = %+v", inv)
	}
	if !bytes.Contains([]byte(logs.String()), []byte("SANDBOX MODE")) {
		t.Fatal("the sandbox did not say so")
	}
}
