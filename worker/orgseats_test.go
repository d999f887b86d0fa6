package worker_test

import (
	"context"
	"strings"
	"testing"

	"github.com/autoinvite/autoinvite/ledger"
)

// The seat guard of an Atlassian-administered workspace counts its members
// once for a burst, not once per signup: the count is shared for a minute,
// and the reservations keep the cap exact.
func TestOrgSeatCountSharedInABurst(t *testing.T) {
	e := newOrgEnv(t, strings.Replace(orgCheckRules, "administration: atlassian", "administration: atlassian\n    max_members: 3", 1))
	e.fake.AddMember("globex", "557058:already") // 1 member: 2 seats left
	ps := people("burst", 5)
	e.fake.ResetCalls()
	for _, p := range ps {
		if err := e.w.ProcessUserEvent(context.Background(), signup(p.account, p.email)); err != nil {
			t.Fatalf("signup %s: %v", p.email, err)
		}
	}
	if counts := e.fake.CallsTo("GET", "/2.0/workspaces/globex/members"); len(counts) != 1 {
		t.Fatalf("%d member counts for 5 signups, want 1 (%q)", len(counts), e.fake.CallStrings())
	}
	want := []ledger.Status{ledger.StatusBatched, ledger.StatusBatched, ledger.StatusSeatLimit, ledger.StatusSeatLimit, ledger.StatusSeatLimit}
	for i, p := range ps {
		if s := e.orgStatus(t, p); s != want[i] {
			t.Errorf("%s: %s, want %s", p.email, s, want[i])
		}
	}
}
