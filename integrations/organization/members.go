package organization

import (
	"context"
	"fmt"
)

// memberPageSize is how many members one users/search page asks for.
const memberPageSize = 100

// GroupMembers lists the users of a group. The contract has no "list a
// group's members" read; users/search filtered by groupIds is the documented
// way (POST …/directories/{directoryId}/users/search, cursor-paged).
func (c *Client) GroupMembers(ctx context.Context, directoryID, groupID string) ([]User, error) {
	o := op{name: "list group members", groupID: groupID}
	var out []User
	err := c.searchUsers(ctx, o, directoryID, map[string]any{"groupIds": []string{groupID}, "limit": memberPageSize}, func(u UserActivity) {
		out = append(out, u.User)
	})
	if err != nil {
		return nil, fmt.Errorf("list members of group %s in directory %s of organization %s: %w", groupID, directoryID, c.orgID, err)
	}
	return out, nil
}
