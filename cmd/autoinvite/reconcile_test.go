package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/autoinvite/autoinvite/integrations/fake"
)

// `autoinvite reconcile` queues a pass for the service's workers and prints
// its table. The service runs reconcile mode report (the default): neither
// the dry run nor the pass writes anything to Atlassian.
func TestReconcileCommand(t *testing.T) {
	c := newCLIEnv(t)
	f := c.e.Fake
	// Drift behind autoinvite's back: Mia's deactivation webhook was lost,
	// Sam's signup webhook never came, and someone gave Ola developers by hand.
	f.UpdateJiraUser(fake.DemoMemberAccountID, func(u *fake.JiraUser) { u.Active = false })
	f.AddJiraUser(fake.JiraUser{AccountID: "557058:sam", AccountType: "atlassian", Email: "sam@acme.com", Active: true})
	f.AddMember("acme", "557058:ola", "developers")
	f.ResetCalls()

	out := c.ok("reconcile", "--dry-run") + "----\n" + c.ok("reconcile", "--workspace", "acme")
	golden(t, "reconcile", out)
	for _, call := range f.Calls() {
		if call.Method != http.MethodGet {
			t.Fatalf("write call %s", call)
		}
	}

	_, errOut, code := c.run("reconcile", "--workspace", "acmee")
	if code != 2 || !strings.Contains(errOut, `"acmee"`) {
		t.Fatalf("unknown workspace: exit %d %q", code, errOut)
	}
}
