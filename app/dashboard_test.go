package app_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/autoinvite/autoinvite/internal/testenv"
)

func TestAdminEndpointsAreClosedWithoutCredentialsConfigured(t *testing.T) {
	e := testenv.New(t, testenv.WithoutAdmin())
	for _, path := range []string{"/monitoring/", "/-/reload", "/debug/pprof/", "/debug/pprof/profile"} {
		r := e.Do(http.MethodGet, path, "anyone", "anything")
		if r.Status != http.StatusForbidden || !strings.Contains(r.Raw, "set AUTOINVITE_ADMIN_USER and AUTOINVITE_ADMIN_PASSWORD") {
			t.Fatalf("%s = %d %s", path, r.Status, r.Raw)
		}
	}
}

func TestDashboardNeedsTheAdminCredentials(t *testing.T) {
	e := testenv.New(t)
	assertAccepted(t, e.Webhook("user_created", "d1", cloudUser(mia, "mia@acme.com")), "accepted")
	e.WaitIdle()
	r := e.Do(http.MethodGet, "/monitoring/", "", "")
	if r.Status != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") != `Basic realm="autoinvite", charset="UTF-8"` {
		t.Fatalf("no credentials: %d %v", r.Status, r.Header)
	}
	if r := e.Do(http.MethodGet, "/monitoring/api/queues", testenv.AdminUser, "nope"); r.Status != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", r.Status)
	}
	r = e.Do(http.MethodGet, "/monitoring/api/queues", testenv.AdminUser, testenv.AdminPassword)
	if r.Status != http.StatusOK || !strings.Contains(r.Raw, `"queue":"`+e.App.Queue()+`"`) {
		t.Fatalf("queues API = %d %s", r.Status, r.Raw)
	}
	if r := e.Do(http.MethodGet, "/metrics", "", ""); r.Status != http.StatusOK {
		t.Fatalf("/metrics must stay open for Prometheus: %d", r.Status)
	}
}

// Go's profiler is an admin endpoint: a profile shows the code, not secrets,
// but taking one costs the process CPU.
func TestProfilerNeedsTheAdminCredentials(t *testing.T) {
	e := testenv.New(t)
	if r := e.Do(http.MethodGet, "/debug/pprof/", "", ""); r.Status != http.StatusUnauthorized {
		t.Fatalf("no credentials: %d", r.Status)
	}
	r := e.Do(http.MethodGet, "/debug/pprof/", testenv.AdminUser, testenv.AdminPassword)
	if r.Status != http.StatusOK || !strings.Contains(r.Raw, "goroutine") {
		t.Fatalf("profiles index = %d %s", r.Status, r.Raw)
	}
	r = e.Do(http.MethodGet, "/debug/pprof/goroutine?debug=1", testenv.AdminUser, testenv.AdminPassword)
	if r.Status != http.StatusOK || !strings.Contains(r.Raw, "goroutine profile: total") {
		t.Fatalf("goroutine profile = %d %.200s", r.Status, r.Raw)
	}
}

// chromium finds Debian's chromium; .ci/run installs it, so CI never skips.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not installed (.ci/run installs it)")
	}
	t.Skip("chromium not installed: apt-get install chromium")
	return ""
}

func TestDashboardInHeadlessChromium(t *testing.T) {
	exe := chromium(t)
	e := testenv.New(t)
	assertAccepted(t, e.Webhook("user_created", "d1", cloudUser(noah, "noah@acme.com")), "accepted")
	e.WaitIdle()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
	)
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	browse := func(auth string) (string, []byte, error) {
		ctx, cancel := chromedp.NewContext(alloc)
		defer cancel()
		ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
		defer cancelT()
		var text string
		var shot []byte
		actions := []chromedp.Action{network.Enable()}
		if auth != "" {
			actions = append(actions, network.SetExtraHTTPHeaders(network.Headers{"Authorization": auth}))
		}
		actions = append(actions, chromedp.Navigate(e.URL+"/monitoring/"))
		if auth != "" {
			// The React app fetches the queues after load: wait for the row.
			actions = append(actions, chromedp.WaitVisible(`//*[contains(text(), "`+e.App.Queue()+`")]`, chromedp.BySearch))
		}
		actions = append(actions, chromedp.Text("body", &text, chromedp.ByQuery), chromedp.CaptureScreenshot(&shot))
		err := chromedp.Run(ctx, actions...)
		return text, shot, err
	}

	// Without credentials the server answers 401 with a Basic challenge, which
	// headless Chromium (no prompt) reports as a failed load.
	if _, _, err := browse(""); err == nil || !strings.Contains(err.Error(), "ERR_INVALID_AUTH_CREDENTIALS") {
		t.Fatalf("without credentials the page must not load, got err = %v", err)
	}
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(testenv.AdminUser+":"+testenv.AdminPassword))
	text, shot, err := browse(auth)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	if !strings.Contains(text, e.App.Queue()) || !strings.Contains(text, "Queues") {
		t.Fatalf("dashboard does not list the queue %s: %q", e.App.Queue(), text)
	}
	if dir := os.Getenv("AUTOINVITE_SCREENSHOTS"); dir != "" {
		os.WriteFile(filepath.Join(dir, "dashboard.png"), shot, 0o644)
	}
}
