package bitbucket

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/autoinvite/autoinvite/integrations/atlassian"
)

// GroupMember is one member of a 1.0 group: an Atlassian account ID when
// Bitbucket gives one, and the user's UUID.
type GroupMember struct {
	AccountID string
	UUID      string
}

// ListGroupMembers lists a group's members
// (GET /1.0/groups/{workspace}/{group}/members; one unpaged list).
func (c *Client) ListGroupMembers(ctx context.Context, workspace, group string) ([]GroupMember, error) {
	if err := checkSlugs(workspace, group); err != nil {
		return nil, err
	}
	resp, err := c.rc.R().SetContext(ctx).
		SetPathParams(map[string]string{"workspace": workspace, "group": group}).
		Get("/1.0/groups/{workspace}/{group}/members")
	if err := check("list group members", resp, err); err != nil {
		if atlassian.StatusOf(err) == http.StatusNotFound {
			err = c.workspaceOrGroupMissing(ctx, workspace, group, err)
		}
		return nil, fmt.Errorf("list members of %s/%s: %w", workspace, group, err)
	}
	var body []struct {
		AccountID string `json:"account_id"`
		UUID      string `json:"uuid"`
	}
	if err := json.Unmarshal(resp.Body(), &body); err != nil {
		return nil, fmt.Errorf("decode members of %s/%s: %w", workspace, group, err)
	}
	out := make([]GroupMember, 0, len(body))
	for _, m := range body {
		out = append(out, GroupMember{AccountID: m.AccountID, UUID: m.UUID})
	}
	return out, nil
}
