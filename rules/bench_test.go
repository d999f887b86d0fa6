package rules

import "testing"

func BenchmarkEvaluate(b *testing.B) {
	e := engine(b)
	p := Person{AccountType: "atlassian", Email: "lead-dee@acme.com", JiraGroups: []string{"jira-software-users", "confluence-users"}}
	b.ReportAllocs()
	for b.Loop() {
		if len(e.Evaluate(p)) == 0 {
			b.Fatal("no decision")
		}
	}
}
