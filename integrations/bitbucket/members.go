package bitbucket

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

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

// MemberPageLen is the most members one page of the workspace member listing
// holds: the contract's pagelen maximum (default 10, at most 100).
const MemberPageLen = 100

// MembersPage is one page of a workspace's member listing.
type MembersPage struct {
	// AccountIDs of the page's members (the UUID when no account id is given).
	AccountIDs []string
	// Size is the workspace's member count, -1 when Bitbucket leaves it out.
	Size int
	// Next is the next page's request URI ("" on the last page).
	Next string
}

// ListMembersPage reads one page of GET /2.0/workspaces/{workspace}/members,
// MemberPageLen members a page; next is "" for the first page, else the
// previous page's Next. Only the path and query of Bitbucket's next link are
// followed, against the configured base URL, so the credentials never go to
// another host.
func (c *Client) ListMembersPage(ctx context.Context, workspace, next string) (MembersPage, error) {
	if err := checkSlugs(workspace); err != nil {
		return MembersPage{}, err
	}
	req := c.rc.R().SetContext(ctx)
	path := next
	if path == "" {
		req.SetPathParam("workspace", workspace).SetQueryParam("pagelen", strconv.Itoa(MemberPageLen))
		path = "/2.0/workspaces/{workspace}/members"
	}
	resp, err := req.Get(path)
	if err := check("list members", resp, err); err != nil {
		if atlassian.StatusOf(err) == http.StatusNotFound {
			if exists, xerr := c.WorkspaceExists(ctx, workspace); xerr == nil && !exists {
				err = &workspaceNotFound{workspace: workspace}
			}
		}
		return MembersPage{}, fmt.Errorf("list members of %s: %w", workspace, err)
	}
	var body struct {
		Size   *int   `json:"size"`
		Next   string `json:"next"`
		Values []struct {
			User struct {
				AccountID string `json:"account_id"`
				UUID      string `json:"uuid"`
			} `json:"user"`
		} `json:"values"`
	}
	if err := json.Unmarshal(resp.Body(), &body); err != nil {
		return MembersPage{}, fmt.Errorf("list members of %s: decode: %w", workspace, err)
	}
	p := MembersPage{Size: -1}
	if body.Size != nil {
		p.Size = *body.Size
	}
	for _, v := range body.Values {
		if id := cmp.Or(v.User.AccountID, v.User.UUID); id != "" {
			p.AccountIDs = append(p.AccountIDs, id)
		}
	}
	if body.Next != "" {
		u, err := url.Parse(body.Next)
		if err != nil || !strings.HasPrefix(u.Path, "/2.0/workspaces/") {
			return MembersPage{}, fmt.Errorf("list members of %s: next page link %q is not a member listing", workspace, body.Next)
		}
		p.Next = u.RequestURI()
	}
	return p, nil
}
