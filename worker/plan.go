package worker

import (
	"encoding/json"
	"fmt"
	"strings"

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
// ws is the workspace's config (its Bitbucket and administration).
func PlanFor(d rules.Decision, accountID, email string, jiraLookup bool, datacenter bool, ws config.Workspace) Plan {
	target := ws.Bitbucket
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
	if ws.Administration == config.AdministrationAtlassian && ws.Organization != nil {
		return planAtlassian(p, d, accountID, email, ws.Organization)
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

// planAtlassian is the plan of a workspace administered in Atlassian
// Administration: IfMember holds the calls for a person in the organization's
// directory, Otherwise the invitation.
func planAtlassian(p Plan, d rules.Decision, accountID, email string, o *config.Organization) Plan {
	base := "/admin/v2/orgs/" + o.ID
	names, _ := json.Marshal(d.Groups)
	p.Lookup = append(p.Lookup, fmt.Sprintf(`POST %s/directories/-/groups/search {"groupNames":%s} (cached)`, base, names))
	if accountID != "" {
		p.IfMember = append(p.IfMember, fmt.Sprintf(`POST %s/directories/{directoryId}/users/search {"accountIds":[%q,...]} (batched)`, base, accountID))
		for _, g := range d.Groups {
			p.IfMember = append(p.IfMember, fmt.Sprintf(`POST %s/directories/{directoryId}/groups/{id of %s}/memberships {"accountId":%q}`, base, g, accountID))
		}
	}
	p.Otherwise = append(p.Otherwise, fmt.Sprintf(`POST %s/users/invite {"emails":[%q,...],"permissionRules":[{"resource":"{resource id of %s}","role":%q}],"additionalGroups":[ids of %s],"sendNotification":true} (batched, <= %d emails per call)`,
		base, orPlaceholder(email, "{email}"), d.Workspace, o.Role, strings.Join(d.Groups, ", "), o.InvitesPerCall))
	return p
}
