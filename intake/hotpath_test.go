package intake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/jobs"
)

// The answer is byte for byte what json.Encoder writes, escapes included.
func TestAnswerIsWhatEncodingJSONWrites(t *testing.T) {
	for _, r := range []response{
		{Status: OutcomeAccepted, TaskID: "delivery:d-1", RequestID: "0123456789abcdef"},
		{Status: OutcomeDuplicate, TaskID: "delivery:x", RequestID: "r"},
		{Status: OutcomeIgnored, RequestID: "r"},
		{Error: "use POST", RequestID: "r"},
		{Error: `malformed JSON: invalid character '}' looking for beginning of value`, RequestID: "r"},
		{Status: OutcomeAccepted, TaskID: `delivery:a"b\c`, RequestID: "r"},
		{Status: OutcomeAccepted, TaskID: "delivery:<script>&", RequestID: "r"},
		{Status: OutcomeAccepted, TaskID: "delivery:\x00\x1f\x7f\n\t", RequestID: "r"},
		{Status: OutcomeAccepted, TaskID: "delivery:é\u2028\xff", RequestID: "r"},
		{},
	} {
		if got, want := string(r.appendJSON(nil)), encoderJSON(r); got != want {
			t.Errorf("%+v:\n got %q\nwant %q", r, got, want)
		}
	}
}

func FuzzAnswerJSON(f *testing.F) {
	f.Add("accepted", "", "delivery:d", "r")
	f.Add("", "bad <input> & \"more\"", "", "r")
	f.Add("", "", "\u2028\xff", "")
	f.Fuzz(func(t *testing.T, status, errText, taskID, requestID string) {
		r := response{Status: status, Error: errText, TaskID: taskID, RequestID: requestID}
		if got, want := string(r.appendJSON(nil)), encoderJSON(r); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
}

func encoderJSON(r response) string {
	var b bytes.Buffer
	json.NewEncoder(&b).Encode(r)
	return b.String()
}

// readBody reads what io.ReadAll of a LimitReader reads, whatever the
// buffer it starts with and however the reader hands out its bytes.
func TestReadBodyReadsWhatReadAllReads(t *testing.T) {
	for _, size := range []int{0, 1, 100, 2047, 2048, 2049, 5000} {
		for _, limit := range []int64{1, 2048, 2049, 4097, 1 << 20} {
			for _, start := range []int{0, 16, 2048} {
				data := bytes.Repeat([]byte("0123456789"), size/10+1)[:size]
				want, _ := io.ReadAll(io.LimitReader(bytes.NewReader(data), limit))
				for name, r := range map[string]io.Reader{"whole": bytes.NewReader(data), "byte by byte": iotest.OneByteReader(bytes.NewReader(data)),
					"data with EOF": iotest.DataErrReader(bytes.NewReader(data))} {
					got, err := readBody(r, make([]byte, 0, start), limit)
					if err != nil || !bytes.Equal(got, want) {
						t.Fatalf("size %d, limit %d, start %d, %s: read %d bytes (%v), want %d", size, limit, start, name, len(got), err, len(want))
					}
				}
			}
		}
	}
	boom := errors.New("connection reset")
	if _, err := readBody(io.MultiReader(strings.NewReader("{"), iotest.ErrReader(boom)), nil, 100); err != boom {
		t.Fatalf("read error = %v", err)
	}
}

// Bodies of exactly the maximum pass, one byte more is 413, also when the
// client sends no Content-Length; a body larger than the pooled buffers is read whole.
func TestBodySizeLimitWithoutContentLength(t *testing.T) {
	enq := &recordingEnqueuer{}
	h, err := New(Options{Secret: fuzzSecret, MaxBodyBytes: 4096, Enqueuer: enq, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	base := userCreated("true")
	pad := func(n int) string { return base[:len(base)-1] + `,"pad":"` + strings.Repeat("x", n-len(base)-9) + `"}` }
	for _, tc := range []struct {
		size, status int
	}{{4096, 202}, {4097, 413}, {3000, 202}} {
		body := pad(tc.size)
		if len(body) != tc.size {
			t.Fatalf("padding: %d bytes", len(body))
		}
		req := httptest.NewRequest(http.MethodPost, "/webhooks/jira", iotest.HalfReader(strings.NewReader(body)))
		req.ContentLength = -1
		req.Header.Set(HeaderSignature, Sign(fuzzSecret, []byte(body)))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.status {
			t.Fatalf("%d bytes: status %d, want %d: %s", tc.size, rec.Code, tc.status, rec.Body)
		}
	}
	if len(enq.events) != 2 {
		t.Fatalf("%d events queued, want 2", len(enq.events))
	}
}

// Body buffers are reused: what was queued from one request must not change
// when the next request is read into the same buffer.
func TestQueuedEventOutlivesTheBodyBuffer(t *testing.T) {
	enq := &recordingEnqueuer{}
	h, err := New(Options{Secret: fuzzSecret, Enqueuer: enq, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	first := `{"timestamp":1,"webhookEvent":"user_created","user":{"accountId":"557058:aaaa","accountType":"atlassian","emailAddress":"aaaa@acme.com","displayName":"A"}}`
	second := `{"timestamp":2,"webhookEvent":"user_updated","user":{"accountId":"557058:bbbb","accountType":"customer","emailAddress":"bbbb@acme.com","displayName":"B"}}`
	for i := 0; i < 50; i++ {
		postSigned(t, h, first)
		postSigned(t, h, second)
	}
	for i, ev := range enq.events {
		want := []string{"user_created", "557058:aaaa", "atlassian", "aaaa@acme.com", "A"}
		if i%2 == 1 {
			want = []string{"user_updated", "557058:bbbb", "customer", "bbbb@acme.com", "B"}
		}
		if got := []string{ev.Event, ev.User.AccountID, ev.User.AccountType, ev.User.Email, ev.User.DisplayName}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("event %d = %v, want %v", i, got, want)
		}
	}
}

// HMAC states are pooled: concurrent requests, good and bad signatures
// interleaved, are each judged on their own body (run with -race).
func TestPooledSignatureChecksUnderConcurrency(t *testing.T) {
	var queued sync.Map
	h, err := New(Options{Secret: fuzzSecret, Enqueuer: enqueuerFunc(func(e jobs.UserEvent) { queued.Store(e.User.AccountID, true) }), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				id := fmt.Sprintf("557058:%d-%d", g, i)
				body := `{"timestamp":1,"webhookEvent":"user_created","user":{"accountId":"` + id + `"}}`
				sig := Sign(fuzzSecret, []byte(body))
				want := http.StatusAccepted
				switch i % 3 {
				case 1:
					sig = Sign([]byte("other secret"), []byte(body))
					want = http.StatusUnauthorized
				case 2:
					sig = "sha256=" + strings.ToUpper(sig[len("sha256="):]) // hex in capitals is the same signature
				}
				req := httptest.NewRequest(http.MethodPost, "/webhooks/jira", strings.NewReader(body))
				req.Header.Set(HeaderSignature, sig)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != want {
					t.Errorf("%s (%d): status %d, want %d", id, i%3, rec.Code, want)
				}
				if _, ok := queued.Load(id); ok != (want == http.StatusAccepted) {
					t.Errorf("%s: queued = %v", id, ok)
				}
			}
		}()
	}
	wg.Wait()
}

type enqueuerFunc func(jobs.UserEvent)

func (f enqueuerFunc) EnqueueUserEvent(_ context.Context, e jobs.UserEvent) (string, bool, error) {
	f(e)
	return jobs.TaskID(e.DeliveryID), false, nil
}

// The task says when the webhook arrived: the time the request came in,
// not a later reading of the clock.
func TestReceivedAtIsTheArrival(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 3, 0, 0, 0, time.FixedZone("CET", 3600))
	clock := t0
	enq := &recordingEnqueuer{}
	h, err := New(Options{Secret: fuzzSecret, Enqueuer: enq, Logger: zerolog.Nop(),
		Now: func() time.Time { now := clock; clock = clock.Add(time.Second); return now }})
	if err != nil {
		t.Fatal(err)
	}
	postSigned(t, h, userCreated(""))
	if len(enq.events) != 1 || !enq.events[0].ReceivedAt.Equal(t0) || enq.events[0].ReceivedAt.Location() != time.UTC {
		t.Fatalf("queued %+v, want ReceivedAt %s in UTC", enq.events, t0.UTC())
	}
}

// Every request leaves one log line naming it and one observation.
func TestLogLineAndMetricsPerRequest(t *testing.T) {
	var logs bytes.Buffer
	type obs struct{ event, outcome string }
	var seen []obs
	h, err := New(Options{Secret: fuzzSecret, Enqueuer: &recordingEnqueuer{}, Logger: zerolog.New(&logs),
		Observe: func(event, outcome string, _ time.Duration) { seen = append(seen, obs{event, outcome}) }})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/webhooks/jira", strings.NewReader(userCreated("true")))
	req.Header.Set(HeaderSignature, Sign(fuzzSecret, []byte(userCreated("true"))))
	req.Header.Set(HeaderDeliveryID, "d-log")
	req.Header.Set(HeaderRequestID, "req-1")
	req.Header.Set(HeaderRetry, "2")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	bad := httptest.NewRequest(http.MethodPost, "/webhooks/jira", strings.NewReader(userCreated("true")))
	bad.Header.Set(HeaderSignature, "sha256="+strings.Repeat("0", 64))
	h.ServeHTTP(httptest.NewRecorder(), bad)

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d log lines:\n%s", len(lines), logs.String())
	}
	var ok, refused map[string]any
	json.Unmarshal([]byte(lines[0]), &ok)
	json.Unmarshal([]byte(lines[1]), &refused)
	for k, v := range map[string]any{"level": "info", "message": "jira webhook", "request_id": "req-1", "method": "POST", "event": "user_created",
		"delivery_id": "d-log", "person": "acct:557058:noah", "task_id": "delivery:d-log", "status": 202.0, "outcome": "accepted", "jira_retry": "2"} {
		if ok[k] != v {
			t.Errorf("accepted: %s = %v, want %v", k, ok[k], v)
		}
	}
	if _, has := ok["duration_ms"]; !has || rec.Header().Get(HeaderRequestID) != "req-1" || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("accepted: line %s, headers %v", lines[0], rec.Header())
	}
	for k, v := range map[string]any{"level": "warn", "status": 401.0, "outcome": "refused_signature", "error": ErrSignature.Error()} {
		if refused[k] != v {
			t.Errorf("refused: %s = %v, want %v", k, refused[k], v)
		}
	}
	if fmt.Sprint(seen) != fmt.Sprint([]obs{{"user_created", "accepted"}, {"other", "refused_signature"}}) {
		t.Errorf("observed %v", seen)
	}
}

// A hidden email (null or absent) is empty; a present one is trimmed; a
// boolean active flag is kept as decoded.
func TestDecodeEmailAndActive(t *testing.T) {
	for _, tc := range []struct{ user, email, active string }{
		{`"accountId":"a","emailAddress":null`, "", "<nil>"},
		{`"accountId":"a"`, "", "<nil>"},
		{`"accountId":"a","emailAddress":" noah@acme.com\n","active":false`, "noah@acme.com", "false"},
		{`"accountId":"a","emailAddress":"","active":true`, "", "true"},
	} {
		ev, err := Decode([]byte(`{"webhookEvent":"user_updated","user":{` + tc.user + `}}`))
		active := "<nil>"
		if ev.User.Active != nil {
			active = fmt.Sprint(*ev.User.Active)
		}
		if err != nil || ev.User.Email != tc.email || active != tc.active {
			t.Errorf("%s: email %q, active %s, err %v", tc.user, ev.User.Email, active, err)
		}
	}
	if _, err := Decode([]byte(`{"webhookEvent":"user_updated","user":{"accountId":"a","emailAddress":7}}`)); err == nil {
		t.Error("a number for an email decoded")
	}
}
