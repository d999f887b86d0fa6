package main

import (
	"strings"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/ledger"
)

// With no worker running against the Redis, a queued action is withdrawn
// after --timeout and the command says so: nothing is sent or recorded later.
func TestResendWithoutWorkersTimesOut(t *testing.T) {
	c := newCLIEnv(t)
	c.e.App.StopWorkers()
	c.clock.Advance(2 * time.Minute)
	c.e.Fake.ResetCalls()
	noah := "acct:" + fake.DemoNewcomerAccountID
	before := c.e.Entry("acme", noah)
	storyBefore := c.e.History("acme", noah)

	out, errOut, code := c.run("invites", "resend", "noah@acme.com", "--timeout", "300ms")
	want := "error: no autoinvite worker took the action within 300ms: is `autoinvite serve` running against this Redis?\n"
	if code != 1 || out != "" || errOut != want {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 1, nothing, %q", code, out, errOut, want)
	}
	if info := c.e.QueueInfo(); info.Pending+info.Scheduled+info.Active+info.Retry+info.Archived != 0 {
		t.Fatalf("the action was left in the queue: %+v", *info)
	}
	if calls := c.e.Fake.CallStrings(); len(calls) != 0 {
		t.Fatalf("Atlassian calls = %q", calls)
	}
	after := c.e.Entry("acme", noah)
	if len(c.e.History("acme", noah)) != len(storyBefore) || after.Invitations[0].Resends != before.Invitations[0].Resends {
		t.Fatalf("ledger changed: %+v", after)
	}
}

// The CLI holds no Atlassian credential: the resend is carried out by the
// service's worker, which makes the one invitation call.
func TestCLIWithoutCredentialsResendsThroughTheService(t *testing.T) {
	c := newCLIEnv(t)
	c.env = map[string]string{"AUTOINVITE_REDIS_URL": c.e.Redis.URL, "AUTOINVITE_ACTOR": "alice"}
	c.clock.Advance(2 * time.Minute)
	c.e.Fake.ResetCalls()

	if out := c.ok("invites", "resend", "noah@acme.com"); out != "noah@acme.com: re-sent 1 invitation(s) in acme\n" {
		t.Fatalf("stdout %q", out)
	}
	var invitations []string
	for _, call := range c.e.Fake.Calls() {
		if call.Method == "PUT" && call.Path == "/1.0/users/acme/invitations" {
			invitations = append(invitations, call.Body)
		}
	}
	if len(invitations) != 1 || !strings.Contains(invitations[0], "noah@acme.com") {
		t.Fatalf("invitation calls = %q, want one for noah", invitations)
	}
	e := c.e.Entry("acme", "acct:"+fake.DemoNewcomerAccountID)
	hist := c.e.History("acme", "acct:"+fake.DemoNewcomerAccountID)
	last := hist[len(hist)-1]
	if e.Invitations[0].Resends != 1 || last.Actor != "cli:alice" || last.Action != ledger.ActionInvitationResent {
		t.Fatalf("ledger: resends %d, last event %+v", e.Invitations[0].Resends, last)
	}
	if logs := c.e.Logs.String(); !strings.Contains(logs, `"action":"resend","actor":"cli:alice"`) {
		t.Fatalf("the service did not carry out the resend:\n%s", logs)
	}
}
