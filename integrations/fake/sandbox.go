package fake

// Demo people seeded into the sandbox, so the README's sample webhooks flow
// through the example config (examples/autoinvite.yaml).
const (
	DemoMemberAccountID    = "557058:0b1f2c3d-mia"    // already in workspace acme
	DemoNewcomerAccountID  = "557058:1c2d3e4f-noah"   // not in acme: gets an invitation
	DemoHiddenAccountID    = "557058:2d3e4f5a-olivia" // email hidden in Jira
	DemoCustomerAccountID  = "qm:5e6f7a8b-customer"   // Service Desk customer
	DemoDataCenterUsername = "dave"
)

// SeedDemo fills the fake with the demo workspace and Jira users.
func (f *Fake) SeedDemo() {
	f.AddWorkspace("acme", "developers", "readers", "leads")
	f.AddMember("acme", DemoMemberAccountID)
	users := []JiraUser{
		{AccountID: DemoMemberAccountID, AccountType: "atlassian", Email: "mia@acme.com", DisplayName: "Mia Krystof", Active: true, Groups: []string{"jira-software-users"}},
		{AccountID: DemoNewcomerAccountID, AccountType: "atlassian", Email: "noah@acme.com", DisplayName: "Noah Berg", Active: true, Groups: []string{"jira-software-users"}},
		{AccountID: DemoHiddenAccountID, AccountType: "atlassian", Email: "olivia@acme.com", EmailHidden: true, DisplayName: "Olivia Hart", Active: true, Groups: []string{"jira-software-users"}},
		{AccountID: DemoCustomerAccountID, AccountType: "customer", Email: "buyer@example.com", DisplayName: "A Customer", Active: true},
		{Name: DemoDataCenterUsername, Key: "JIRAUSER10100", Email: "dave@acme.com", DisplayName: "Dave Data", Active: true, Groups: []string{"jira-software-users"}},
	}
	for _, u := range users {
		f.AddJiraUser(u)
	}
}
