package app_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/autoinvite/autoinvite/intake"
	"github.com/autoinvite/autoinvite/internal/testenv"
	"github.com/autoinvite/autoinvite/jobs"
)

func sign(body []byte) string { return intake.Sign([]byte(testenv.WebhookSecret), body) }

// Every refused request gets its exact status and enqueues nothing.
func TestRefusedInputEnqueuesNothing(t *testing.T) {
	e := testenv.New(t, testenv.IntakeOnly())
	good := testenv.Payload("user_created", cloudUser(noah, "noah@acme.com"))
	big := append([]byte(`{"webhookEvent":"user_created","pad":"`), []byte(strings.Repeat("x", 1<<20))...)
	big = append(big, []byte(`"}`)...)
	noUser := []byte(`{"timestamp":1,"webhookEvent":"user_created"}`)
	anonymous := []byte(`{"timestamp":1,"webhookEvent":"user_created","user":{"displayName":"nobody"}}`)
	unknown := []byte(`{"timestamp":1,"webhookEvent":"jira:issue_created","issue":{}}`)

	cases := []struct {
		name   string
		method string
		body   []byte
		header map[string]string
		status int
		want   string
	}{
		{"no signature", "POST", good, nil, 401, `"error":"missing or invalid X-Hub-Signature"`},
		{"wrong signature", "POST", good, map[string]string{"X-Hub-Signature": sign([]byte("other body"))}, 401, `missing or invalid`},
		{"not sha256", "POST", good, map[string]string{"X-Hub-Signature": "sha1=abcd"}, 401, `missing or invalid`},
		{"malformed JSON", "POST", []byte(`{"webhookEvent":`), map[string]string{"X-Hub-Signature": sign([]byte(`{"webhookEvent":`))}, 400, `"error":"malformed JSON: unexpected end of JSON input"`},
		{"no user", "POST", noUser, map[string]string{"X-Hub-Signature": sign(noUser)}, 400, `"error":"payload has no user"`},
		{"user without id", "POST", anonymous, map[string]string{"X-Hub-Signature": sign(anonymous)}, 400, `neither accountId`},
		{"too large", "POST", big, map[string]string{"X-Hub-Signature": sign(big)}, 413, `"error":"body larger than 1048576 bytes"`},
		{"wrong method", "GET", nil, nil, 405, `"error":"use POST"`},
		{"unknown event", "POST", unknown, map[string]string{"X-Hub-Signature": sign(unknown)}, 202, `"status":"ignored"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.Post(tc.method, tc.body, tc.header)
			if r.Status != tc.status || !strings.Contains(r.Raw, tc.want) {
				t.Fatalf("answer = %d %s, want %d containing %s", r.Status, r.Raw, tc.status, tc.want)
			}
			if tc.status == 405 && r.Header.Get("Allow") != "POST" {
				t.Fatalf("Allow = %q", r.Header.Get("Allow"))
			}
			if r.Body["request_id"] == "" {
				t.Fatal("no request_id in answer")
			}
		})
	}
	if info := e.QueueInfo(); info.Size != 0 {
		t.Fatalf("refused requests enqueued %d tasks", info.Size)
	}
	if calls := e.Fake.Calls(); len(calls) != 0 {
		t.Fatalf("the intake called Atlassian: %v", calls)
	}
	logged := false
	for _, line := range strings.Split(e.Logs.String(), "\n") {
		logged = logged || (strings.Contains(line, `"event":"jira:issue_created"`) && strings.Contains(line, `"status":202`) && strings.Contains(line, `"outcome":"ignored"`))
	}
	if !logged {
		t.Fatal("ignored event not logged")
	}
}

func TestRedisUnreachableAnswers503(t *testing.T) {
	e := testenv.New(t, testenv.IntakeOnly(), testenv.WithRedisURL("redis://127.0.0.1:1/0"))
	body := testenv.Payload("user_created", cloudUser(noah, "noah@acme.com"))
	r := e.Post(http.MethodPost, body, map[string]string{"X-Hub-Signature": sign(body)})
	if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") != "30" || r.Body["error"] != "queue unavailable; retry later" {
		t.Fatalf("answer = %d %s (Retry-After %q)", r.Status, r.Raw, r.Header.Get("Retry-After"))
	}
	resp, err := http.Get(e.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d", resp.StatusCode)
	}
	resp, err = http.Get(e.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz = %d", resp.StatusCode)
	}
}

// A queued user event that cannot be decoded (written by something other than
// the intake) is archived at once, not retried, and calls nothing.
func TestUndecodableTaskIsArchivedWithoutRetry(t *testing.T) {
	e := testenv.New(t)
	client := asynq.NewClientFromRedisClient(e.App.Redis())
	if _, err := client.Enqueue(asynq.NewTask(jobs.TypeUserEvent, []byte(`{"user":`)), asynq.Queue(e.App.Queue()), asynq.TaskID("broken-1")); err != nil {
		t.Fatal(err)
	}
	e.WaitIdle()
	archived, err := asynq.NewInspectorFromRedisClient(e.App.Redis()).ListArchivedTasks(e.App.Queue())
	if err != nil {
		t.Fatal(err)
	}
	if len(archived) != 1 || archived[0].ID != "broken-1" || archived[0].Retried != 0 ||
		archived[0].LastErr != "decode "+jobs.TypeUserEvent+" payload: unexpected end of JSON input: skip retry for the task" {
		t.Fatalf("archived = %+v", archived)
	}
	if calls := e.Fake.Calls(); len(calls) != 0 {
		t.Fatalf("an undecodable task called Atlassian: %v", calls)
	}
}
