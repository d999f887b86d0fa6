package jobs_test

import (
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/autoinvite/autoinvite/internal/redistest"
	"github.com/autoinvite/autoinvite/jobs"
)

// An admin action names what it acts on, is never retried behind the admin's
// back, and each request is its own task.
func TestAdminActionTask(t *testing.T) {
	for _, bad := range []jobs.AdminAction{
		{Action: "frobnicate"},
		{Action: jobs.AdminResend, Workspace: "acme"},
		{Action: jobs.AdminCancel, PersonID: "acct:1"},
		{Action: jobs.AdminResumeRevocations},
	} {
		if _, err := jobs.NewAdminActionTask(bad, "q:events", time.Minute); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	act := jobs.AdminAction{Action: jobs.AdminResend, Workspace: "acme", PersonID: "acct:1", Actor: "cli:alice"}
	a, err := jobs.NewAdminActionTask(act, "q:events", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := jobs.NewAdminActionTask(act, "q:events", time.Minute)
	if a.Type() != jobs.TypeAdminAction || string(a.Payload()) != string(b.Payload()) {
		t.Fatalf("task %s %s", a.Type(), a.Payload())
	}
	got, err := jobs.DecodeAdminAction(a.Payload())
	if err != nil || got != act {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	if _, err := jobs.DecodeAdminAction([]byte(`{"action":"sweep"`)); err == nil {
		t.Fatal("truncated payload accepted")
	}
}

// Two identical requests are two tasks, not retried and kept for their result.
func TestAdminActionTasksAreNotDeduplicated(t *testing.T) {
	r := redistest.New(t)
	rdb := r.Client(t)
	client, ins, q := asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), jobs.EventsQueue(r.Prefix)
	act := jobs.AdminAction{Action: jobs.AdminSweep, Actor: "cli:alice"}
	for range 2 {
		task, err := jobs.NewAdminActionTask(act, q, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.Enqueue(task); err != nil {
			t.Fatal(err)
		}
	}
	tasks, err := ins.ListPendingTasks(q)
	if err != nil || len(tasks) != 2 || tasks[0].ID == tasks[1].ID {
		t.Fatalf("pending = %v, %v", tasks, err)
	}
	for _, task := range tasks {
		if task.MaxRetry != 0 || task.Retention != time.Hour || task.Timeout != time.Minute {
			t.Fatalf("task %s: max retry %d, retention %s, timeout %s", task.ID, task.MaxRetry, task.Retention, task.Timeout)
		}
	}
}
