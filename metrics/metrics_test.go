package metrics

import (
	"io"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// Alerts on auth failures and reload failures need their series before the
// first event; the config in force is one labelled series.
func TestCountersStartAtZeroAndConfigInfoIsALabel(t *testing.T) {
	m := New(nil)
	out := scrape(t, m)
	for _, api := range []string{"jira", "bitbucket", "bitbucket-dc", "organization"} {
		for _, status := range []string{"401", "403"} {
			want := `autoinvite_atlassian_auth_failures_total{api="` + api + `",status="` + status + `"} 0`
			if !strings.Contains(out, want+"\n") {
				t.Errorf("missing %s", want)
			}
		}
	}
	for _, result := range []string{"success", "unchanged", "failure"} {
		if want := `autoinvite_config_reloads_total{result="` + result + `"} 0`; !strings.Contains(out, want+"\n") {
			t.Errorf("missing %s", want)
		}
	}
	m.ConfigLoaded("0123456789abcdef", time.Unix(1700000000, 0))
	m.ConfigLoaded("fedcba9876543210", time.Unix(1700000100, 0))
	out = scrape(t, m)
	infos := regexp.MustCompile(`(?m)^autoinvite_config_info.*$`).FindAllString(out, -1)
	if len(infos) != 1 || infos[0] != `autoinvite_config_info{hash="fedcba9876543210"} 1` {
		t.Fatalf("config_info = %q", infos)
	}
	if strings.Contains(out, "autoinvite_config_hash") {
		t.Fatal("autoinvite_config_hash is still exported")
	}
}
