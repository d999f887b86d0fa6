package atlassian

import (
	"net/http"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Now().UTC()
	in90s := now.Add(90 * time.Second)
	cases := []struct {
		name   string
		header map[string]string
		want   time.Duration // 0 means exactly 0; otherwise within 2s below
	}{
		{"nothing", nil, 0},
		{"seconds", map[string]string{"Retry-After": "7"}, 7 * time.Second},
		{"http date", map[string]string{"Retry-After": in90s.Format(http.TimeFormat)}, 90 * time.Second},
		{"retry-after wins over reset", map[string]string{"Retry-After": "3", "X-RateLimit-Reset": in90s.Format(time.RFC3339)}, 3 * time.Second},
		{"reset RFC 3339 Z", map[string]string{"X-RateLimit-Reset": in90s.Format(time.RFC3339)}, 90 * time.Second},
		{"reset fractional", map[string]string{"X-RateLimit-Reset": in90s.Format("2006-01-02T15:04:05.000Z")}, 90 * time.Second},
		{"reset offset", map[string]string{"X-RateLimit-Reset": in90s.In(time.FixedZone("CET", 3600)).Format(time.RFC3339)}, 90 * time.Second},
		{"reset offset without colon", map[string]string{"X-RateLimit-Reset": in90s.In(time.FixedZone("X", -5*3600)).Format("2006-01-02T15:04:05-0700")}, 90 * time.Second},
		{"reset without zone is UTC", map[string]string{"X-RateLimit-Reset": in90s.Format("2006-01-02T15:04:05")}, 90 * time.Second},
		{"reset in the past", map[string]string{"X-RateLimit-Reset": now.Add(-time.Minute).Format(time.RFC3339)}, 0},
		{"reset unparsable", map[string]string{"X-RateLimit-Reset": "soon"}, 0},
		{"bad retry-after falls back to reset", map[string]string{"Retry-After": "later", "X-RateLimit-Reset": in90s.Format(time.RFC3339)}, 90 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range c.header {
				h.Set(k, v)
			}
			got := RetryAfter(h)
			if c.want == 0 {
				if got != 0 {
					t.Fatalf("RetryAfter = %v, want 0", got)
				}
				return
			}
			if got > c.want || got < c.want-2*time.Second {
				t.Fatalf("RetryAfter = %v, want about %v", got, c.want)
			}
		})
	}
}
