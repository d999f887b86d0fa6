package worker_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/integrations/atlassian"
	"github.com/autoinvite/autoinvite/integrations/bitbucketdc"
	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/integrations/fake/faketest"
	"github.com/autoinvite/autoinvite/integrations/organization"
	"github.com/autoinvite/autoinvite/internal/testenv"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
	"github.com/autoinvite/autoinvite/worker"
)

const dcRules = `
workspaces:
  - workspace: acme-dc
    bitbucket: {deployment: datacenter, base_url: $FAKE_URL}
    rules: [{name: all, match: {}, groups: [developers]}]
`

func withDataCenter(o *worker.Options, f *faketest.Server) {
	dc := bitbucketdc.New(atlassian.Options{BaseURL: f.URL, Auth: atlassian.Auth{Bearer: testenv.DataCenterToken}, Timeout: 5 * time.Second})
	o.DataCenter = func(ws string) worker.DataCenter {
		if ws == "acme-dc" {
			return dc
		}
		return nil
	}
}

// A batch that called Data Center and then could not settle (the process
// stopped: here, a person's lock it could not get before its deadline) is
// retried under the same task id: it settles from the stored outcome and
// does not call Data Center again.
func TestBatchRetryAfterCallSettlesFromStoredOutcome(t *testing.T) {
	h := newHarness(t, dcRules, 10*time.Second, withDataCenter)
	h.fake.AddDataCenterGroups("developers")
	h.fake.AddDataCenterUsers("ann", "bob")
	batch := jobs.Batch{Items: []jobs.BatchItem{
		{Kind: jobs.BatchDataCenterAdd, Workspace: "acme-dc", Groups: []string{"developers"}, PersonID: "dc:K1", Who: "ann"},
		{Kind: jobs.BatchDataCenterAdd, Workspace: "acme-dc", Groups: []string{"developers"}, PersonID: "dc:K2", Who: "bob"},
	}}
	held, err := h.ledger.Lock(context.Background(), "dc:K1", "another-task", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	if err := h.w.RunBatch(ctx, batch, "batch-1"); err == nil {
		t.Fatal("the first run settled although a person was locked past its deadline")
	}
	cancel()
	held.Unlock()
	calls := h.fake.CallsTo("POST", "/rest/api/latest/admin/groups/add-users")
	if len(calls) != 1 {
		t.Fatalf("add-users calls after the first run = %d, want 1", len(calls))
	}

	if err := h.w.RunBatch(context.Background(), batch, "batch-1"); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if n := len(h.fake.CallsTo("POST", "/rest/api/latest/admin/groups/add-users")); n != 1 {
		t.Fatalf("add-users calls after the retry = %d, want still 1", n)
	}
	for _, p := range []string{"dc:K1", "dc:K2"} {
		e, err := h.ledger.Get(context.Background(), "acme-dc", p)
		if err != nil || e == nil || e.Status != ledger.StatusGranted || !slices.Equal(e.Granted, []string{"developers"}) {
			t.Fatalf("%s: ledger = %+v, %v", p, e, err)
		}
	}
}

const orgRules = `
workspaces:
  - workspace: globex
    administration: atlassian
    organization: {id: ` + fake.DemoOrgID + `, base_url: $FAKE_URL}
    rules: [{name: all, match: {}, groups: [developers, readers]}]
`

func withOrganization(o *worker.Options, f *faketest.Server) {
	f.SeedAtlassianDemo()
	org := organization.New(atlassian.Options{BaseURL: f.URL, Auth: atlassian.Auth{Bearer: testenv.OrgAPIKey}, Timeout: 5 * time.Second}, fake.DemoOrgID, "AUTOINVITE_ORG_API_KEY")
	o.Organization = func(ws string) worker.OrgAdmin {
		if ws == "globex" {
			return org
		}
		return nil
	}
}

// The same for an organization invitation: the retry of a batch whose
// invite call went out sends no second invitation email.
func TestOrgBatchRetryDoesNotInviteTwice(t *testing.T) {
	h := newHarness(t, orgRules, 10*time.Second, withOrganization)
	henry := "acct:" + fake.DemoOrgNewcomerAccountID
	batch := jobs.Batch{Items: []jobs.BatchItem{
		{Kind: jobs.BatchOrgAdmin, Workspace: "globex", Groups: []string{"developers", "readers"}, PersonID: henry, Who: "henry@globex.com", AccountID: fake.DemoOrgNewcomerAccountID},
	}}
	held, err := h.ledger.Lock(context.Background(), henry, "another-task", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	if err := h.w.RunBatch(ctx, batch, "org-batch-1"); err == nil {
		t.Fatal("the first run settled although the person was locked past its deadline")
	}
	cancel()
	held.Unlock()
	if n := len(h.fake.OrgInvites()); n != 1 {
		t.Fatalf("invitation calls after the first run = %d, want 1", n)
	}
	if err := h.w.RunBatch(context.Background(), batch, "org-batch-1"); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if n := len(h.fake.OrgInvites()); n != 1 {
		t.Fatalf("invitation calls after the retry = %d, want still 1", n)
	}
	e, err := h.ledger.Get(context.Background(), "globex", henry)
	if err != nil || e == nil || e.Status != ledger.StatusInvited || e.PendingInvitation("developers") == nil || e.PendingInvitation("readers") == nil {
		t.Fatalf("ledger = %+v, %v", e, err)
	}
}
