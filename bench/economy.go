package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/autoinvite/autoinvite/app"
	"github.com/autoinvite/autoinvite/intake"
	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/internal/testenv"
)

// clock is a settable clock shared by autoinvite and the fake.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

const economyRules = noRateLimits + `
worker: {batch_wait: 1s, batch_size: 10}
workspaces:
  - workspace: acme
    rules:
      - name: engineers
        match: {jira_groups: [jira-software-users]}
        groups: [developers, readers, leads]
`

const economyDCRules = noRateLimits + `
jira: {deployment: datacenter}
worker: {batch_wait: 1s, batch_size: 10}
workspaces:
  - workspace: acme-dc
    bitbucket: {deployment: datacenter, base_url: $FAKE_URL}
    rules:
      - name: engineers
        match: {jira_groups: [jira-software-users]}
        groups: [developers, readers, leads]
`

type economyRow struct {
	scenario    string
	calls       float64
	lowerBound  float64
	explanation string
}

// benchEconomy counts the Atlassian calls per signup against the calls that
// cannot be avoided.
func benchEconomy(ctx context.Context, env *benchEnv) error {
	var rows []economyRow
	cloud, err := economyCloud(ctx, env)
	if err != nil {
		return err
	}
	rows = append(rows, cloud...)
	dc, err := economyDataCenter(ctx, env)
	if err != nil {
		return err
	}
	rows = append(rows, dc)
	fmt.Println("| scenario (3 groups each) | Atlassian calls per signup | lower bound | the unavoidable calls |")
	fmt.Println("| --- | ---: | ---: | --- |")
	met := true
	for _, r := range rows {
		fmt.Printf("| %s | %.1f | %.1f | %s |\n", r.scenario, r.calls, r.lowerBound, r.explanation)
		met = met && r.calls <= r.lowerBound
	}
	fmt.Printf("\nequal to the lower bound everywhere: %s\n", verdict(met))
	return nil
}

// queueThenDrain queues n signups (delivery(i) names the i-th) while
// no worker runs, then starts the workers and times them to an idle queue.
func (env *benchEnv) queueThenDrain(a *app.App, n int, delivery func(i int) string, timeout time.Duration) (time.Duration, error) {
	for i := range n {
		user := map[string]any{"accountId": accountID(i), "accountType": "atlassian", "emailAddress": fmt.Sprintf("p%07d@acme.com", i), "active": true}
		if err := post(a, "user_created", delivery(i), user); err != nil {
			return 0, err
		}
	}
	start := time.Now()
	if err := a.StartWorkers(); err != nil {
		return 0, err
	}
	if err := env.waitIdle(a.Queue(), timeout); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func post(a *app.App, event, delivery string, user map[string]any) error {
	body := testenv.Payload(event, user)
	req := httptest.NewRequest(http.MethodPost, "/webhooks/jira", bytes.NewReader(body))
	req.Header.Set(intake.HeaderSignature, intake.Sign([]byte(webhookSecret), body))
	if delivery != "" {
		req.Header.Set(intake.HeaderDeliveryID, delivery)
	}
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted {
		return fmt.Errorf("webhook answered %d: %s", rec.Code, rec.Body)
	}
	return nil
}

func economyCloud(ctx context.Context, env *benchEnv) ([]economyRow, error) {
	env.flush(ctx)
	clk := &clock{now: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
	f := fake.New(fake.WithClock(clk.Now))
	f.AddWorkspace("acme", "developers", "readers", "leads")
	member, newcomer := "557058:member", "557058:newcomer"
	f.AddMember("acme", member)
	for _, u := range []fake.JiraUser{
		{AccountID: member, AccountType: "atlassian", Email: "member@acme.com", Active: true, Groups: []string{"jira-software-users"}},
		{AccountID: newcomer, AccountType: "atlassian", Email: "newcomer@acme.com", Active: true, Groups: []string{"jira-software-users"}},
	} {
		f.AddJiraUser(u)
	}
	fakeURL, stop, err := serveFake(f)
	if err != nil {
		return nil, err
	}
	defer stop()
	a, err := env.newApp(fakeURL, economyRules, app.AllRoles, func(o *app.Options) { o.Now = clk.Now })
	if err != nil {
		return nil, err
	}
	defer a.Close()
	if err := a.StartWorkers(); err != nil {
		return nil, err
	}
	user := func(id, email string) map[string]any {
		return map[string]any{"accountId": id, "accountType": "atlassian", "emailAddress": email, "active": true}
	}
	count := func(fn func() error) (int, error) {
		before := len(f.Calls())
		if err := fn(); err != nil {
			return 0, err
		}
		if err := env.waitIdle(a.Queue(), time.Minute); err != nil {
			return 0, err
		}
		return len(f.Calls()) - before, nil
	}
	memberCalls, err := count(func() error { return post(a, "user_created", "e-member", user(member, "member@acme.com")) })
	if err != nil {
		return nil, err
	}
	dupCalls, err := count(func() error { return post(a, "user_created", "e-member", user(member, "member@acme.com")) })
	if err != nil {
		return nil, err
	}
	updateCalls, err := count(func() error { return post(a, "user_updated", "e-member-2", user(member, "member@acme.com")) })
	if err != nil {
		return nil, err
	}
	signupCalls, err := count(func() error { return post(a, "user_created", "e-newcomer", user(newcomer, "newcomer@acme.com")) })
	if err != nil {
		return nil, err
	}
	f.Accept("acme", "newcomer@acme.com", newcomer)
	clk.Advance(6*time.Hour + time.Minute) // the early check finds they joined
	joinCalls, err := count(func() error {
		_, err := a.Worker().SweepOnce(ctx, "bench")
		return err
	})
	if err != nil {
		return nil, err
	}
	return []economyRow{
		{"Cloud workspace member", float64(memberCalls), 5, "Jira user with groups (the webhook has none) + membership check + 3 group adds"},
		{"the same webhook delivered again", float64(dupCalls), 0, "none: the delivery id is already queued"},
		{"user_updated for a member already granted", float64(updateCalls), 1, "Jira user with groups (they may have changed); the ledger knows the rest"},
		{"Cloud non-member, at signup", float64(signupCalls), 3, "Jira user with groups + membership check + one invitation (one email, not one per group)"},
		{"Cloud non-member, whole life (signup + joining)", float64(signupCalls + joinCalls), 7, "the 3 above + one check that finds them a member + 3 group adds (idempotent; the one they were invited to answers 409)"},
	}, nil
}

func economyDataCenter(ctx context.Context, env *benchEnv) (economyRow, error) {
	env.flush(ctx)
	const people = 10
	f := fake.New()
	f.AddDataCenterGroups("developers", "readers", "leads")
	for i := 0; i < people; i++ {
		name := fmt.Sprintf("dev%02d", i)
		f.AddDataCenterUsers(name)
		f.AddJiraUser(fake.JiraUser{Name: name, Key: "JIRAUSER" + name, Email: name + "@acme.com", Active: true, Groups: []string{"jira-software-users"}})
	}
	fakeURL, stop, err := serveFake(f)
	if err != nil {
		return economyRow{}, err
	}
	defer stop()
	a, err := env.newApp(fakeURL, economyDCRules, app.AllRoles, nil)
	if err != nil {
		return economyRow{}, err
	}
	defer a.Close()
	if err := a.StartWorkers(); err != nil {
		return economyRow{}, err
	}
	for i := 0; i < people; i++ {
		name := fmt.Sprintf("dev%02d", i)
		if err := post(a, "user_created", "", map[string]any{"name": name, "key": "JIRAUSER" + name, "emailAddress": name + "@acme.com", "active": true}); err != nil {
			return economyRow{}, err
		}
	}
	if err := env.waitIdle(a.Queue(), time.Minute); err != nil {
		return economyRow{}, err
	}
	per := float64(len(f.Calls())) / people
	return economyRow{fmt.Sprintf("Data Center user, %d signing up together", people), per, 1 + 3.0/people,
		fmt.Sprintf("Jira user with groups + one add-users call per group shared by the batch (3/%d)", people)}, nil
}
