package rules

import (
	"reflect"
	"testing"

	"github.com/autoinvite/autoinvite/config"
)

const rulesYAML = `
workspaces:
  - workspace: acme
    exclude: {emails: [ceo@acme.com], email_domains: [contractor.acme.com]}
    rules:
      - name: engineers
        match: {email_domains: [acme.com], jira_groups: [jira-software-users, Jira-Admins]}
        groups: [developers]
      - name: everyone
        match: {}
        groups: [readers]
      - name: leads
        match: {email_regex: "^lead-.*@acme\\.com$"}
        groups: [developers, leads]
  - workspace: partners
    rules:
      - name: partner-domain
        match: {email_domains: [partner.io]}
        groups: [guests]
`

func engine(t testing.TB) *Engine {
	t.Helper()
	cfg, err := config.Parse("rules.yaml", []byte(rulesYAML), nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestEvaluate(t *testing.T) {
	e := engine(t)
	if !e.NeedsEmail() || !e.NeedsJiraGroups() {
		t.Fatal("engine should need email and groups")
	}
	cases := []struct {
		name   string
		person Person
		want   []Decision
	}{
		{"engineer gets union of rules", Person{AccountType: "atlassian", Email: "Ann@ACME.com", JiraGroups: []string{"jira-software-users"}},
			[]Decision{{Workspace: "acme", Groups: []string{"developers", "readers"},
				RulesByGroup: map[string][]string{"developers": {"engineers"}, "readers": {"everyone"}}}}},
		{"jira group names are case-insensitive", Person{Email: "bo@acme.com", JiraGroups: []string{"jira-admins"}},
			[]Decision{{Workspace: "acme", Groups: []string{"developers", "readers"},
				RulesByGroup: map[string][]string{"developers": {"engineers"}, "readers": {"everyone"}}}}},
		{"domain without group gets only everyone", Person{Email: "cy@acme.com"},
			[]Decision{{Workspace: "acme", Groups: []string{"readers"}, RulesByGroup: map[string][]string{"readers": {"everyone"}}}}},
		{"regex rule merges groups and rule names", Person{Email: "lead-dee@acme.com", JiraGroups: []string{"jira-software-users"}},
			[]Decision{{Workspace: "acme", Groups: []string{"developers", "readers", "leads"},
				RulesByGroup: map[string][]string{"developers": {"engineers", "leads"}, "readers": {"everyone"}, "leads": {"leads"}}}}},
		{"excluded address", Person{Email: "ceo@acme.com", JiraGroups: []string{"jira-software-users"}},
			[]Decision{{Workspace: "acme", Excluded: true, RulesByGroup: map[string][]string{}}}},
		{"excluded domain", Person{Email: "x@contractor.acme.com"},
			[]Decision{{Workspace: "acme", Excluded: true, RulesByGroup: map[string][]string{}}}},
		{"two workspaces", Person{Email: "p@partner.io"},
			[]Decision{{Workspace: "acme", Groups: []string{"readers"}, RulesByGroup: map[string][]string{"readers": {"everyone"}}},
				{Workspace: "partners", Groups: []string{"guests"}, RulesByGroup: map[string][]string{"guests": {"partner-domain"}}}}},
		{"hidden email: provisional", Person{AccountType: "atlassian", JiraGroups: []string{"jira-software-users"}},
			[]Decision{{Workspace: "acme", Groups: []string{"readers"}, RulesByGroup: map[string][]string{"readers": {"everyone"}}, EmailUnknown: true, Held: true},
				{Workspace: "partners", RulesByGroup: map[string][]string{}, EmailUnknown: true}}},
		{"customer account never matches", Person{AccountType: "customer", Email: "ann@acme.com"}, nil},
		{"app account never matches", Person{AccountType: "app", Email: "bot@acme.com"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := e.Evaluate(tc.person)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("\n got  %+v\n want %+v", got, tc.want)
			}
		})
	}
}
