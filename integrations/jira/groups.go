package jira

import (
	"context"
	"fmt"
	"strconv"

	"github.com/autoinvite/autoinvite/integrations/atlassian"
)

// ListGroupMembers returns one page of a Jira group's active members, from
// startAt (Cloud GET /rest/api/3/group/member, Data Center
// GET /rest/api/2/group/member; both paged with isLast). Groups are named:
// the rules name them, and a groupId would need one more lookup per group.
func (c *Client) ListGroupMembers(ctx context.Context, group string, startAt, maxResults int) (Page, error) {
	path := "/rest/api/3/group/member"
	if c.datacenter {
		path = "/rest/api/2/group/member"
	}
	var body struct {
		Values []userBody `json:"values"`
		IsLast bool       `json:"isLast"`
		Total  int        `json:"total"`
	}
	resp, err := c.rc.R().SetContext(ctx).SetQueryParams(map[string]string{
		"groupname": group, "includeInactiveUsers": "false",
		"startAt": strconv.Itoa(startAt), "maxResults": strconv.Itoa(maxResults),
	}).SetResult(&body).Get(path)
	if err := atlassian.Check("jira", "list group members", resp, err); err != nil {
		return Page{}, fmt.Errorf("list members of Jira group %s from %d: %w", group, startAt, err)
	}
	return Page{Users: toUsers(body.Values), Next: startAt + len(body.Values), Done: body.IsLast || len(body.Values) == 0, Total: body.Total}, nil
}
