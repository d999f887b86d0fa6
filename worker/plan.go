package worker

import (
	"fmt"

	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/rules"
)

// Plan lists the Atlassian calls the worker would make for a decision, on each
// branch of the membership check. It mirrors applyWorkspace for `autoinvite plan`.
type Plan struct {
	Lookup    []string // Jira, before deciding
	IfMember  []string // when the account is already a workspace member
	Otherwise []string // when it is not (or no account id is known)
	Waiting   []string // groups granted only once they join
}

// PlanFor describes what a signup would cause in one workspace. jiraLookup is
// whether the rules need Jira data the plan was not given.
// target is the workspace's Bitbucket.
func PlanFor(d rules.Decision, accountID, email string, jiraLookup bool, datacenter bool, target config.Target) Plan {
	var p Plan
	if jiraLookup {
		if datacenter {
			p.Lookup = append(p.Lookup, "GET /rest/api/2/user?username={name}&expand=groups")
		} else {
			p.Lookup = append(p.Lookup, fmt.Sprintf("GET /rest/api/3/user?accountId=%s&expand=groups", orPlaceholder(accountID, "{accountId}")))
		}
	}
	if d.Excluded || d.Held || len(d.Groups) == 0 {
		return p
	}
	if target.DataCenter() {
		user := "{jira username}"
		if target.Username == config.UsernameEmail {
			user = orPlaceholder(email, "{email}")
		}
		for _, g := range d.Groups {
			p.Otherwise = append(p.Otherwise, fmt.Sprintf(`POST /rest/api/latest/admin/groups/add-users {"group":%q,"users":[%q,...]} (batched)`, g, user))
		}
		return p
	}
	invite := func(g string) string {
		return fmt.Sprintf(`PUT /1.0/users/%s/invitations {"email":%q,"group_slug":%q}`, d.Workspace, orPlaceholder(email, "{email}"), g)
	}
	if accountID == "" {
		for _, g := range d.Groups {
			p.Otherwise = append(p.Otherwise, invite(g))
		}
		return p
	}
	check := fmt.Sprintf("GET /2.0/workspaces/%s/members/%s", d.Workspace, accountID)
	p.IfMember = append(p.IfMember, check)
	for _, g := range d.Groups {
		p.IfMember = append(p.IfMember, fmt.Sprintf("PUT /1.0/groups/%s/%s/members/%s", d.Workspace, g, accountID))
	}
	p.Otherwise = []string{check, invite(d.Groups[0])}
	p.Waiting = d.Groups[1:]
	return p
}

func orPlaceholder(v, placeholder string) string {
	if v == "" {
		return placeholder
	}
	return v
}
