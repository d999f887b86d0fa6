package app_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/autoinvite/autoinvite/internal/testenv"
)

func TestLedgerViewNeedsTheAdminCredentials(t *testing.T) {
	closed := testenv.New(t, testenv.WithoutAdmin())
	if r := closed.Do(http.MethodGet, "/ledger/", "anyone", "anything"); r.Status != http.StatusForbidden {
		t.Fatalf("admin not configured: %d %s", r.Status, r.Raw)
	}
	e := testenv.New(t)
	for _, c := range []struct{ user, password string }{{"", ""}, {testenv.AdminUser, "nope"}} {
		r := e.Do(http.MethodGet, "/ledger/?q=noah", c.user, c.password)
		if r.Status != http.StatusUnauthorized || strings.Contains(r.Raw, "noah") {
			t.Fatalf("%q/%q: %d %s", c.user, c.password, r.Status, r.Raw)
		}
	}
	if r := e.Do(http.MethodGet, "/ledger/person?id=acct:x", "", ""); r.Status != http.StatusUnauthorized {
		t.Fatalf("person page without credentials: %d", r.Status)
	}
	if r := e.Do(http.MethodGet, "/ledger/", testenv.AdminUser, testenv.AdminPassword); r.Status != http.StatusOK {
		t.Fatalf("with credentials: %d %s", r.Status, r.Raw)
	}
	// The Asynq dashboard links to the ledger view.
	r := e.Do(http.MethodGet, "/monitoring/", testenv.AdminUser, testenv.AdminPassword)
	if r.Status != http.StatusOK || !strings.Contains(r.Raw, `href="/ledger/"`) || !strings.Contains(r.Raw, "autoinvite ledger") {
		t.Fatalf("dashboard page has no link to the ledger: %d %.300s", r.Status, r.Raw)
	}
	if r := e.Do(http.MethodGet, "/monitoring/api/queues", testenv.AdminUser, testenv.AdminPassword); strings.Contains(r.Raw, "autoinvite ledger") {
		t.Fatal("the dashboard's API must be left alone")
	}
}

func TestLedgerViewInHeadlessChromium(t *testing.T) {
	exe := chromium(t)
	e := testenv.New(t)
	assertAccepted(t, e.Webhook("user_created", "lv-noah", cloudUser(noah, "noah@acme.com")), "accepted")
	assertAccepted(t, e.Webhook("user_created", "lv-mia", cloudUser(mia, "mia@acme.com")), "accepted")
	e.WaitIdle()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1366, 900),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
	)
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	shots := os.Getenv("AUTOINVITE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(testenv.AdminUser+":"+testenv.AdminPassword))
	ctx, cancelTab := chromedp.NewContext(alloc)
	defer cancelTab()
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	defer cancelT()

	// Without credentials the page does not load (401, no prompt headless).
	noAuth, cancelNoAuth := chromedp.NewContext(alloc)
	err := chromedp.Run(noAuth, chromedp.Navigate(e.URL+"/ledger/"))
	cancelNoAuth()
	if err == nil || !strings.Contains(err.Error(), "ERR_INVALID_AUTH_CREDENTIALS") {
		t.Fatalf("without credentials the ledger must not load, got err = %v", err)
	}

	var list, search, filtered, person string
	var listShot, personShot []byte
	var personURL string
	err = chromedp.Run(ctx,
		network.Enable(),
		network.SetExtraHTTPHeaders(network.Headers{"Authorization": auth}),
		chromedp.Navigate(e.URL+"/ledger/"),
		chromedp.WaitVisible(`#people`, chromedp.ByQuery),
		chromedp.Text("body", &list, chromedp.ByQuery),
		chromedp.FullScreenshot(&listShot, 100),
		// Search as a person would: type, submit.
		chromedp.SetValue(`input[name=q]`, "noah", chromedp.ByQuery),
		chromedp.Submit(`form.search`, chromedp.ByQuery),
		chromedp.WaitVisible(`#people`, chromedp.ByQuery),
		chromedp.Text("#people", &search, chromedp.ByQuery),
		// Filter by status.
		chromedp.Navigate(e.URL+"/ledger/?status=granted&workspace=acme"),
		chromedp.WaitVisible(`#people`, chromedp.ByQuery),
		chromedp.Text("#people", &filtered, chromedp.ByQuery),
		// Follow a pending invitation to the person's story.
		chromedp.Navigate(e.URL+"/ledger/"),
		chromedp.Click(`#pending-table a`, chromedp.ByQuery),
		chromedp.WaitVisible(`#audit`, chromedp.ByQuery),
		chromedp.Location(&personURL),
		chromedp.Text("body", &person, chromedp.ByQuery),
		chromedp.FullScreenshot(&personShot, 100),
	)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	os.WriteFile(filepath.Join(shots, "ledger.png"), listShot, 0o644)
	os.WriteFile(filepath.Join(shots, "ledger-person.png"), personShot, 0o644)
	t.Logf("screenshots in %s", shots)

	for _, want := range []string{"noah@acme.com", "mia@acme.com", "invited", "granted", "developers, readers", "Pending invitations by age", "<1d", "Asynq dashboard"} {
		if !strings.Contains(list, want) {
			t.Errorf("ledger page lacks %q:\n%s", want, list)
		}
	}
	if !strings.Contains(search, "noah@acme.com") || strings.Contains(search, "mia@acme.com") {
		t.Errorf("search for noah shows:\n%s", search)
	}
	if !strings.Contains(filtered, "mia@acme.com") || strings.Contains(filtered, "noah@acme.com") {
		t.Errorf("status=granted shows:\n%s", filtered)
	}
	if !strings.Contains(personURL, "/ledger/person?id=acct%3A") {
		t.Errorf("person URL = %s", personURL)
	}
	for _, want := range []string{
		"noah@acme.com", noah, "Workspace acme", "Rules that matched", "engineers", "everyone",
		"Groups waiting", "Pending invitations", "invitation-sent", "Audit records", "webhook",
	} {
		if !strings.Contains(person, want) {
			t.Errorf("person page lacks %q:\n%s", want, person)
		}
	}
	if !regexp.MustCompile(`developers\s+\d+m\s`).MatchString(person) {
		t.Errorf("person page shows no pending invitation with its age:\n%s", person)
	}
}

func TestNotificationsAndLifecycleMetrics(t *testing.T) {
	var mu sync.Mutex
	var got []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m map[string]any
		json.Unmarshal(body, &m)
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	}))
	defer hook.Close()
	notifications := "notifications:\n  public_url: https://autoinvite.acme.com\n  aggregate_window: 1s\n  webhooks:\n    - {url: \"" + hook.URL + "\"}\n"
	e := testenv.New(t, testenv.WithRules(testenv.DefaultRules+notifications))
	assertAccepted(t, e.Webhook("user_created", "n-noah", cloudUser(noah, "noah@acme.com")), "accepted")
	assertAccepted(t, e.Webhook("user_created", "n-mia", cloudUser(mia, "mia@acme.com")), "accepted")
	e.WaitIdle()

	// Two refused reloads in a burst: one message, with a count.
	e.WriteRules("workspaces:\n  - workspace: acme\n    rules:\n      - {name: everyone, match: {}, groups: []}\n" + notifications)
	for range 2 {
		if r := e.Do(http.MethodPost, "/-/reload", testenv.AdminUser, testenv.AdminPassword); r.Status != http.StatusBadRequest {
			t.Fatalf("reload = %d %s", r.Status, r.Raw)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("want exactly one notification (routine signups notify nobody, the burst is one), got %d: %v", len(got), got)
	}
	m := got[0]
	if m["event"] != "reload_failed" || m["count"] != float64(2) || !strings.Contains(m["detail"].(string), "a rule needs at least one Bitbucket group") ||
		m["link"] != "https://autoinvite.acme.com/ledger/" {
		t.Fatalf("notification = %v", m)
	}

	r := e.Do(http.MethodGet, "/metrics", "", "")
	for _, want := range []string{
		`autoinvite_pending_invitations{age="<1d"} 1`,
		`autoinvite_webhook_to_first_action_seconds_count 2`,
		`autoinvite_notifications_total{outcome="sent",sink="webhook"} 1`,
		`autoinvite_invitation_to_acceptance_seconds_count 0`,
		`autoinvite_ledger_stats_scrape_ok 1`,
	} {
		if !strings.Contains(r.Raw, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
