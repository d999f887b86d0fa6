package intake

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/jobs"
)

// recordingEnqueuer keeps what the handler queued.
type recordingEnqueuer struct{ events []jobs.UserEvent }

func (r *recordingEnqueuer) EnqueueUserEvent(_ context.Context, e jobs.UserEvent) (string, bool, error) {
	r.events = append(r.events, e)
	return jobs.TaskID(e.DeliveryID), false, nil
}

func postSigned(t *testing.T, h http.Handler, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/webhooks/jira", strings.NewReader(body))
	req.Header.Set(HeaderSignature, Sign(fuzzSecret, []byte(body)))
	req.Header.Set(HeaderDeliveryID, "delivery-1")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func userCreated(active string) string {
	user := `"accountId":"557058:noah","accountType":"atlassian","emailAddress":"noah@acme.com"`
	if active != "" {
		user += `,"active":` + active
	}
	return `{"timestamp":1763800000000,"webhookEvent":"user_created","user":{` + user + `}}`
}

// Atlassian's documented sample carries "active" as a string; real deliveries
// as a boolean. Both are the same event; any other value is malformed (400)
// and nothing is queued.
func TestHandlerAcceptsActiveAsBooleanOrString(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		name, active string
		status       int
		want         *bool
	}{
		{"boolean true", `true`, 202, &yes},
		{"boolean false", `false`, 202, &no},
		{"string true", `"true"`, 202, &yes},
		{"string false", `"false"`, 202, &no},
		{"string TRUE", `"TRUE"`, 202, &yes},
		{"string False", `"False"`, 202, &no},
		{"absent", ``, 202, nil},
		{"null", `null`, 202, nil},
		{"string yes", `"yes"`, 400, nil},
		{"empty string", `""`, 400, nil},
		{"padded string", `" true"`, 400, nil},
		{"number", `1`, 400, nil},
		{"object", `{"value":true}`, 400, nil},
		{"list", `[true]`, 400, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enq := &recordingEnqueuer{}
			h, err := New(Options{Secret: fuzzSecret, Enqueuer: enq, Logger: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			rec := postSigned(t, h, userCreated(tc.active))
			if rec.Code != tc.status {
				t.Fatalf("status = %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			var resp response
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatal(err)
			}
			if tc.status != 202 {
				if len(enq.events) != 0 || !strings.Contains(resp.Error, "user.active must be true or false") {
					t.Fatalf("queued %d events, error %q", len(enq.events), resp.Error)
				}
				return
			}
			if resp.Status != OutcomeAccepted || len(enq.events) != 1 {
				t.Fatalf("answer %+v, %d events queued", resp, len(enq.events))
			}
			got := enq.events[0]
			if got.Event != jobs.EventUserCreated || got.User.AccountID != "557058:noah" || got.User.Email != "noah@acme.com" || got.DeliveryID != "delivery-1" {
				t.Fatalf("queued %+v", got)
			}
			switch {
			case tc.want == nil && got.User.Active != nil:
				t.Fatalf("Active = %v, want unset", *got.User.Active)
			case tc.want != nil && (got.User.Active == nil || *got.User.Active != *tc.want):
				t.Fatalf("Active = %v, want %v", got.User.Active, *tc.want)
			}
		})
	}
}

// The decoded payload survives the queue: a string "false" arrives at the
// worker as a deactivation, exactly as the boolean would.
func TestDecodeStringFalseIsADeactivationOnTheQueue(t *testing.T) {
	fromString, err := Decode([]byte(userCreated(`"false"`)))
	if err != nil {
		t.Fatal(err)
	}
	fromBool, err := Decode([]byte(userCreated(`false`)))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(fromString)
	b, _ := json.Marshal(fromBool)
	if !bytes.Equal(a, b) || !bytes.Contains(a, []byte(`"active":false`)) {
		t.Fatalf("payloads differ:\n%s\n%s", a, b)
	}
	var queued jobs.UserEvent
	if err := json.Unmarshal(a, &queued); err != nil || !queued.Deactivated() {
		t.Fatalf("queued %s: Deactivated() = false (%v)", a, err)
	}
}
