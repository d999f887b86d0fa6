package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/autoinvite/autoinvite/internal/redistest"
	"github.com/autoinvite/autoinvite/jobs"
)

func enqueuer(t *testing.T) (*jobs.Enqueuer, *asynq.Inspector, string) {
	r := redistest.New(t)
	rdb := r.Client(t)
	q := jobs.EventsQueue(r.Prefix)
	return jobs.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), jobs.EnqueueOptions{Queue: q, MaxRetry: 3, Timeout: time.Minute, Retention: time.Hour}),
		asynq.NewInspectorFromRedisClient(rdb), q
}

// Several serve processes fire the same tick: one sweep task gets through.
func TestSweepTickIsEnqueuedOnce(t *testing.T) {
	enq, ins, q := enqueuer(t)
	ctx := context.Background()
	tick := time.Date(2026, 11, 2, 9, 15, 0, 0, time.UTC)
	for i, want := range []bool{false, true, true} {
		dup, err := enq.EnqueueSweep(ctx, tick)
		if err != nil || dup != want {
			t.Fatalf("scheduler %d: duplicate = %v, %v", i, dup, err)
		}
	}
	if dup, _ := enq.EnqueueSweep(ctx, tick.Add(15*time.Minute)); dup {
		t.Fatal("the next tick must get through")
	}
	for i := 0; i < 3; i++ {
		if err := enq.EnqueueFollowUp(ctx, jobs.FollowUp{Workspace: "acme", PersonID: "acct:x", Reason: jobs.ReasonDue, Tick: tick}); err != nil {
			t.Fatal(err)
		}
	}
	info, err := ins.GetQueueInfo(q)
	if err != nil || info.Pending != 3 { // two sweeps + one follow-up
		t.Fatalf("pending = %d, %v", info.Pending, err)
	}
}

func TestUserEventIDsAndDeactivation(t *testing.T) {
	no, yes := false, true
	cases := []struct {
		ev     jobs.UserEvent
		person string
		off    bool
	}{
		{jobs.UserEvent{Event: jobs.EventUserCreated, User: jobs.User{AccountID: "a1", Key: "k"}}, "acct:a1", false},
		{jobs.UserEvent{Event: jobs.EventUserUpdated, User: jobs.User{Key: "JIRAUSER1", Name: "dave", Active: &no}}, "dc:JIRAUSER1", true},
		{jobs.UserEvent{Event: jobs.EventUserUpdated, User: jobs.User{Name: "dave", Active: &yes}}, "dc:dave", false},
		{jobs.UserEvent{Event: jobs.EventUserDeleted, User: jobs.User{AccountID: "a1"}}, "acct:a1", true},
	}
	for _, tc := range cases {
		if got := tc.ev.User.PersonID(); got != tc.person || tc.ev.Deactivated() != tc.off {
			t.Errorf("%+v: person %q deactivated %v", tc.ev, got, tc.ev.Deactivated())
		}
	}
}

// Asynq keeps schedules in whole seconds, truncated: a follow-up due at
// x.5 s must not be handed to a worker at x.0 s (a removal re-check that runs
// before a late add lands misses it).
func TestFollowUpIsNeverScheduledEarly(t *testing.T) {
	enq, ins, q := enqueuer(t)
	ctx := context.Background()
	due := time.Now().Add(time.Hour).Truncate(time.Second).Add(500 * time.Millisecond)
	f := jobs.FollowUp{Workspace: "acme", PersonID: "acct:x", Reason: jobs.ReasonRecheckRemoval, Groups: []string{"developers"}, Tick: due, NotBefore: due}
	if err := enq.EnqueueFollowUp(ctx, f); err != nil {
		t.Fatal(err)
	}
	tasks, err := ins.ListScheduledTasks(q)
	if err != nil || len(tasks) != 1 {
		t.Fatalf("scheduled = %d, %v", len(tasks), err)
	}
	if at := tasks[0].NextProcessAt; at.Before(due) || at.After(due.Add(time.Second)) {
		t.Fatalf("scheduled for %s, due %s", at.Format(time.RFC3339Nano), due.Format(time.RFC3339Nano))
	}
}
