package intake

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rs/zerolog"
)

// BenchmarkHandler measures the intake's own cost per signed webhook
// (signature, decode, validation, response), with an enqueuer that does nothing.
func BenchmarkHandler(b *testing.B) {
	h, err := New(Options{Secret: fuzzSecret, Enqueuer: &countingEnqueuer{}, Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"timestamp":1763800000000,"webhookEvent":"user_created","user":{"accountId":"557058:1c2d3e4f-noah","accountType":"atlassian","emailAddress":"noah@acme.com","displayName":"Noah Berg","active":true}}`)
	sig := Sign(fuzzSecret, body)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/webhooks/jira", bytes.NewReader(body))
		req.Header.Set(HeaderSignature, sig)
		req.Header.Set(HeaderDeliveryID, "bench")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			b.Fatal(rec.Code)
		}
	}
}
