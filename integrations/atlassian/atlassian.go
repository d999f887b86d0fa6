// Package atlassian holds what the Jira and Bitbucket clients share: the HTTP
// client setup, authentication and the classification of answers.
package atlassian

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-resty/resty/v2"
)

// Auth is one way to authenticate: Basic (email + API token) or Bearer.
type Auth struct {
	Email  string
	Token  string
	Bearer string
}

// Options configures a client.
type Options struct {
	BaseURL   string
	Auth      Auth
	Timeout   time.Duration
	UserAgent string
	// Transport replaces the HTTP transport (tests).
	Transport http.RoundTripper
	// Instrument is given the client to hook metrics on.
	Instrument func(*resty.Client)
}

// NewClient returns a resty client for one Atlassian API. It never retries on
// its own: retries belong to the task queue, which knows what was already done.
func NewClient(o Options) *resty.Client {
	c := resty.New().
		SetBaseURL(o.BaseURL).
		SetTimeout(o.Timeout).
		SetHeader("Accept", "application/json").
		SetHeader("User-Agent", o.UserAgent).
		SetRedirectPolicy(resty.NoRedirectPolicy()).
		SetRetryCount(0).
		SetDisableWarn(true) // its plain-text warnings would break the JSON log stream
	if o.Transport != nil {
		c.SetTransport(o.Transport)
	} else {
		// Workers call one host from many goroutines: keep their connections
		// (Go's default keeps 2 idle per host and redials the rest).
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		c.SetTransport(t)
	}
	if o.Instrument != nil {
		o.Instrument(c)
	}
	switch {
	case o.Auth.Bearer != "":
		c.SetAuthToken(o.Auth.Bearer)
	case o.Auth.Email != "":
		c.SetBasicAuth(o.Auth.Email, o.Auth.Token)
	}
	return c
}

// APIError is an Atlassian call that failed: a transport error or an unexpected status.
type APIError struct {
	API    string // "jira" or "bitbucket"
	Op     string // what we tried, e.g. "add to group"
	Method string
	Path   string
	Status int    // 0 for transport errors
	Body   string // first bytes of the answer, for the operator
	Err    error  // transport error, if any
	// RetryAfter is what a 429 or 503 asked for (0 when it did not say).
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("%s %s: %s %s: %v", e.API, e.Op, e.Method, e.Path, e.Err)
	}
	msg := fmt.Sprintf("%s %s: %s %s: HTTP %d", e.API, e.Op, e.Method, e.Path, e.Status)
	if e.Body != "" {
		msg += ": " + e.Body
	}
	if hint := e.hint(); hint != "" {
		msg += " (" + hint + ")"
	}
	return msg
}

func (e *APIError) Unwrap() error { return e.Err }

func (e *APIError) hint() string {
	switch e.Status {
	case http.StatusUnauthorized:
		return "check the credentials in the environment"
	case http.StatusForbidden:
		return "the credentials lack the permission or scope for this call"
	}
	return ""
}

// Temporary reports whether trying again later may succeed: transport errors,
// timeouts, 408, 429 and 5xx.
func (e *APIError) Temporary() bool {
	return e.Status == 0 || e.Status == http.StatusRequestTimeout ||
		e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// IsTemporary reports whether err is worth retrying. Context cancellation (a
// shutdown) is temporary too: the task goes back to the queue.
func IsTemporary(err error) bool {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.Temporary()
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// StatusOf returns the HTTP status of an APIError, or 0.
func StatusOf(err error) int {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.Status
	}
	return 0
}

const maxErrorBody = 300

// Check turns a resty result into nil or an *APIError; ok lists the statuses
// that count as success (2xx when empty).
func Check(api, op string, resp *resty.Response, err error, ok ...int) error {
	method, path := "", ""
	if resp != nil && resp.Request != nil {
		method = resp.Request.Method
		if resp.Request.RawRequest != nil {
			path = resp.Request.RawRequest.URL.Path
		} else {
			path = resp.Request.URL
		}
	}
	if err != nil {
		return &APIError{API: api, Op: op, Method: method, Path: path, Err: err}
	}
	status := resp.StatusCode()
	if len(ok) == 0 && status >= 200 && status < 300 {
		return nil
	}
	for _, s := range ok {
		if status == s {
			return nil
		}
	}
	body := string(resp.Body())
	if len(body) > maxErrorBody {
		body = body[:maxErrorBody] + "…"
	}
	return &APIError{API: api, Op: op, Method: method, Path: path, Status: status, Body: body, RetryAfter: RetryAfter(resp.Header())}
}

// RetryAfter is how long an answer asked us to wait (0 when it did not say):
// Retry-After in seconds or as an HTTP date, else X-RateLimit-Reset as an ISO
// 8601 instant (the Admin API sends no Retry-After, only the reset time).
func RetryAfter(h http.Header) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if secs, err := strconv.Atoi(v); err == nil && secs > 0 {
			return time.Duration(secs) * time.Second
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(time.Until(t), 0)
		}
	}
	if t, ok := parseReset(h.Get("X-RateLimit-Reset")); ok {
		return max(time.Until(t), 0)
	}
	return 0
}

// parseReset reads an ISO 8601 instant: RFC 3339 (with or without fractional
// seconds, Z or an offset), or without a zone, which the Admin API documents as UTC.
func parseReset(v string) (time.Time, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, false
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05.999999999Z0700"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// AsAPIError returns the APIError in err, if any.
func AsAPIError(err error) (*APIError, bool) {
	var apiErr *APIError
	ok := errors.As(err, &apiErr)
	return apiErr, ok
}
