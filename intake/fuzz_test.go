package intake

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/jobs"
)

type countingEnqueuer struct{ n int }

func (c *countingEnqueuer) EnqueueUserEvent(_ context.Context, e jobs.UserEvent) (string, bool, error) {
	c.n++
	return jobs.TaskID(e.DeliveryID), false, nil
}

var fuzzSecret = []byte("fuzz-secret")

func addWebhookSeeds(f *testing.F) {
	f.Add([]byte(`{"timestamp":1,"webhookEvent":"user_created","user":{"accountId":"557058:a","accountType":"atlassian","emailAddress":"a@acme.com"}}`), true)
	f.Add([]byte(`{"webhookEvent":"user_updated","user":{"name":"dave","key":"JIRAUSER1","emailAddress":null,"active":false}}`), true)
	f.Add([]byte(`{"webhookEvent":"user_deleted","user":{}}`), true)
	f.Add([]byte(`{"webhookEvent":"jira:issue_created"}`), false)
	f.Add([]byte(`{"webhookEvent":`), true)
	f.Add([]byte(`[]`), false)
}

// The decoder never panics, gives no user with an error, and keeps emails
// trimmed (so no stray whitespace or line breaks reach an invitation).
func FuzzDecode(f *testing.F) {
	addWebhookSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte, _ bool) {
		ev, err := Decode(body)
		if err != nil && ev.User != (jobs.User{}) {
			t.Fatalf("error with a user: %v %+v", err, ev.User)
		}
		if ev.User.Email != strings.TrimSpace(ev.User.Email) {
			t.Fatalf("untrimmed email %q", ev.User.Email)
		}
	})
}

// Whatever arrives, the handler answers one of its documented statuses, and
// enqueues only a correctly signed, well-formed, known event about someone.
func FuzzHandler(f *testing.F) {
	addWebhookSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte, signed bool) {
		enq := &countingEnqueuer{}
		h, err := New(Options{Secret: fuzzSecret, MaxBodyBytes: 4096, Enqueuer: enq, Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/webhooks/jira", bytes.NewReader(body))
		if signed {
			req.Header.Set(HeaderSignature, Sign(fuzzSecret, body))
		} else {
			req.Header.Set(HeaderSignature, "sha256="+strings.Repeat("0", 64))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 202, 400, 401, 413:
		default:
			t.Fatalf("status %d", rec.Code)
		}
		if enq.n > 0 {
			ev, err := Decode(body)
			if !signed || rec.Code != 202 || err != nil || !jobs.KnownEvent(ev.Event) || ev.User.PersonID() == "" {
				t.Fatalf("enqueued %q (signed %v, status %d)", body, signed, rec.Code)
			}
		}
		if strings.Contains(rec.Body.String(), string(fuzzSecret)) {
			t.Fatal("secret in the answer")
		}
	})
}

// Only the exact HMAC of the exact body verifies.
func FuzzVerifySignature(f *testing.F) {
	f.Add([]byte("secret"), []byte(`{"a":1}`), "")
	f.Add([]byte("secret"), []byte(`{"a":1}`), "sha256=zz")
	f.Add([]byte(""), []byte(""), "sha256=")
	f.Fuzz(func(t *testing.T, secret, body []byte, header string) {
		good := Sign(secret, body)
		if VerifySignature(secret, body, good) != nil {
			t.Fatal("own signature refused")
		}
		if VerifySignature(secret, body, header) == nil && !strings.EqualFold(strings.TrimSpace(header), good) {
			t.Fatalf("accepted %q for %q", header, good)
		}
	})
}
