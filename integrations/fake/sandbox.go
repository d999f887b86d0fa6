package fake

// Demo people seeded into the sandbox, so the README's sample webhooks flow
// through the example config (examples/autoinvite.yaml).
const (
	DemoMemberAccountID    = "557058:0b1f2c3d-mia"    // already in workspace acme
	DemoNewcomerAccountID  = "557058:1c2d3e4f-noah"   // not in acme: gets an invitation
	DemoHiddenAccountID    = "557058:2d3e4f5a-olivia" // email hidden in Jira
	DemoCustomerAccountID  = "qm:5e6f7a8b-customer"   // Service Desk customer
	DemoDataCenterUsername = "dave"

	// Workspace globex is administered in Atlassian Administration.
	DemoOrgID                = "5b1e9f3a-0c4d-4e6f-8a9b-sandbox0org1"
	DemoOrgDirectoryID       = "7c2d4e6f-sandbox-directory"
	DemoGlobexResourceID     = "ari:cloud:bitbucket::workspace/6a1f0c2e-sandbox-globex"
	DemoDirectoryAccountID   = "557058:3e4f5a6b-grace" // in the organization's directory
	DemoOrgNewcomerAccountID = "557058:4f5a6b7c-henry" // not in it: gets an organization invitation
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

// SeedAtlassianDemo adds the sandbox's second kind of workspace: globex,
// administered in Atlassian Administration (its 1.0 writes are refused), with
// its organization, groups and people. Tests build their own organizations.
func (f *Fake) SeedAtlassianDemo() {
	f.AddWorkspace("globex", "developers", "readers")
	f.AdministerInAtlassian("globex", 403)
	f.AddOrganization(DemoOrgID, DemoOrgDirectoryID, "Globex")
	f.AddOrgGroup("developers", false)
	f.AddOrgGroup("readers", false)
	f.AddOrgWorkspace("globex", DemoGlobexResourceID)
	f.AddOrgUser(DemoDirectoryAccountID, "grace@globex.com")
	for _, u := range []JiraUser{
		{AccountID: DemoDirectoryAccountID, AccountType: "atlassian", Email: "grace@globex.com", DisplayName: "Grace Hopper", Active: true},
		{AccountID: DemoOrgNewcomerAccountID, AccountType: "atlassian", Email: "henry@globex.com", DisplayName: "Henry Ford", Active: true},
	} {
		f.AddJiraUser(u)
	}
}
