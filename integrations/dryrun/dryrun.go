// Package dryrun stands in for Jira and Bitbucket when dry_run is on: it calls
// nothing and says what it would have done, so the service decides and audits
// without touching Atlassian.
package dryrun

import (
	"context"
	"strings"

	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/integrations/bitbucket"
	"github.com/autoinvite/autoinvite/integrations/jira"
	"github.com/autoinvite/autoinvite/integrations/organization"
)

// Jira answers lookups with nothing: rules decide on what the webhook carried.
type Jira struct{}

// GetUser returns an empty user.
func (Jira) GetUser(ctx context.Context, ref jira.Ref) (jira.User, error) {
	zerolog.Ctx(ctx).Info().Str("ref", ref.String()).Msg("dry run: would look the user up in Jira")
	return jira.User{}, nil
}

// Bitbucket treats everyone as a non-member and every change as done.
type Bitbucket struct{}

// IsMember answers false: the plan shows the invitation path.
func (Bitbucket) IsMember(ctx context.Context, workspace, member string) (bool, error) {
	zerolog.Ctx(ctx).Info().Str("workspace", workspace).Msg("dry run: would check workspace membership")
	return false, nil
}

// AddToGroup pretends to add.
func (Bitbucket) AddToGroup(ctx context.Context, workspace, group, member string) (bool, error) {
	zerolog.Ctx(ctx).Info().Str("workspace", workspace).Str("group", group).Msg("dry run: would add to group")
	return false, nil
}

// RemoveFromGroup pretends to remove.
func (Bitbucket) RemoveFromGroup(ctx context.Context, workspace, group, member string) error {
	zerolog.Ctx(ctx).Info().Str("workspace", workspace).Str("group", group).Msg("dry run: would remove from group")
	return nil
}

// Invite pretends to invite.
func (Bitbucket) Invite(ctx context.Context, workspace, email, group string) (bool, error) {
	zerolog.Ctx(ctx).Info().Str("workspace", workspace).Str("group", group).Str("email", email).Msg("dry run: would send an invitation")
	return false, nil
}

// CountMembers answers 0: a dry run never holds for seats.
func (Bitbucket) CountMembers(ctx context.Context, workspace string) (int, error) { return 0, nil }

// ListInvitations answers none.
func (Bitbucket) ListInvitations(ctx context.Context, workspace string) ([]bitbucket.Invitation, error) {
	return nil, nil
}

// DataCenter pretends every user exists and every add works.
type DataCenter struct{}

// AddUsers pretends to add.
func (DataCenter) AddUsers(ctx context.Context, group string, users []string) ([]string, error) {
	zerolog.Ctx(ctx).Info().Str("group", group).Strs("users", users).Msg("dry run: would add users to the Data Center group")
	return nil, nil
}

// RemoveFromGroup pretends to remove.
func (DataCenter) RemoveFromGroup(ctx context.Context, group, user string) error {
	zerolog.Ctx(ctx).Info().Str("group", group).Msg("dry run: would remove the user from the Data Center group")
	return nil
}

// Organization stands in for the Organization Admin API: groups and the
// workspace resolve to placeholders, nobody is in the directory (the plan
// shows the invitation path), and every write pretends to succeed.
type Organization struct{ ID string }

const dryDirectory = "dry-run-directory"

// OrgID returns the configured organization id.
func (o Organization) OrgID() string { return o.ID }

// Directories answers one placeholder directory.
func (Organization) Directories(ctx context.Context) ([]organization.Directory, error) {
	return []organization.Directory{{ID: dryDirectory, Name: "dry run"}}, nil
}

// FindGroups answers a placeholder for every name.
func (Organization) FindGroups(ctx context.Context, names []string) (map[string]organization.Group, error) {
	out := map[string]organization.Group{}
	for _, n := range names {
		out[strings.ToLower(n)] = organization.Group{ID: "dry-run:" + n, Name: n, DirectoryID: dryDirectory}
	}
	return out, nil
}

// FindWorkspace answers a placeholder resource id.
func (Organization) FindWorkspace(ctx context.Context, slug string) (organization.Workspace, error) {
	return organization.Workspace{ID: "dry-run:" + slug, Name: slug}, nil
}

// FindUsers finds nobody.
func (Organization) FindUsers(ctx context.Context, directoryID string, accountIDs []string) (map[string]organization.User, error) {
	return nil, nil
}

// FindUserActivity finds nobody.
func (Organization) FindUserActivity(ctx context.Context, directoryID string, accountIDs []string) (map[string]organization.UserActivity, error) {
	return nil, nil
}

// AddToGroup pretends to add.
func (Organization) AddToGroup(ctx context.Context, directoryID, groupID, accountID string) (bool, error) {
	zerolog.Ctx(ctx).Info().Str("group_id", groupID).Msg("dry run: would add to the organization group")
	return false, nil
}

// RemoveFromGroup pretends to remove.
func (Organization) RemoveFromGroup(ctx context.Context, directoryID, groupID, accountID string) error {
	zerolog.Ctx(ctx).Info().Str("group_id", groupID).Msg("dry run: would remove from the organization group")
	return nil
}

// Invite pretends every email was invited.
func (Organization) Invite(ctx context.Context, inv organization.Invitation) ([]organization.InviteResult, int, error) {
	zerolog.Ctx(ctx).Info().Int("emails", len(inv.Emails)).Strs("group_ids", inv.GroupIDs).Msg("dry run: would invite through the organization")
	out := make([]organization.InviteResult, len(inv.Emails))
	for i, e := range inv.Emails {
		out[i] = organization.InviteResult{Email: e}
	}
	return out, len(inv.Emails), nil
}
