package fake

import "strings"

// Helpers for reconciliation tests: changes made behind autoinvite's back
// (no webhook is sent for any of them).

// UpdateJiraUser changes a Jira user in place (a group joined, a
// deactivation whose webhook was lost).
func (f *Fake) UpdateJiraUser(accountID string, change func(*JiraUser)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, u := range f.users {
		if u.AccountID == accountID {
			change(u)
		}
	}
}

// RemoveGroupMember takes an account out of a 1.0 group, as an admin would by hand.
func (f *Fake) RemoveGroupMember(slug, group, accountID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.workspaces[slug].groups[group], accountID)
}

// RemoveOrgGroupMember takes an account out of an organization group by hand.
func (f *Fake) RemoveOrgGroupMember(groupName, accountID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, g := range f.org.groups {
		if strings.EqualFold(g.name, groupName) {
			delete(g.members, accountID)
		}
	}
}
