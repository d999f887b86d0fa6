package organization

import (
	"context"
	"fmt"
	"net/http"
)

// memberPageSize is how many members one users/search page asks for.
const memberPageSize = 100

// GroupMembers lists the users of a group. The contract has no "list a
// group's members" read; users/search filtered by groupIds is the documented
// way (POST …/directories/{directoryId}/users/search, cursor-paged).
func (c *Client) GroupMembers(ctx context.Context, directoryID, groupID string) ([]User, error) {
	o := op{name: "list group members", groupID: groupID}
	var out []User
	err := pages(o.name, func(cursor string) (*string, error) {
		body := map[string]any{"groupIds": []string{groupID}, "limit": memberPageSize}
		if cursor != "" {
			body["cursor"] = cursor
		}
		var page struct {
			Data []struct {
				AccountID        string `json:"accountId"`
				Email            string `json:"email"`
				AccountStatus    string `json:"accountStatus"`
				MembershipStatus string `json:"membershipStatus"`
			} `json:"data"`
			Links links `json:"links"`
		}
		params := map[string]string{"directoryId": directoryID}
		if _, err := c.do(ctx, o, http.MethodPost, "/admin/v2/orgs/{orgId}/directories/{directoryId}/users/search", params, nil, body, &page); err != nil {
			return nil, c.classify(o, err)
		}
		for _, u := range page.Data {
			out = append(out, User{AccountID: u.AccountID, Email: u.Email, AccountStatus: u.AccountStatus, MembershipStatus: u.MembershipStatus})
		}
		return page.Links.Next, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list members of group %s in directory %s of organization %s: %w", groupID, directoryID, c.orgID, err)
	}
	return out, nil
}
