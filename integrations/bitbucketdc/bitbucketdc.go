// Package bitbucketdc calls Bitbucket Data Center: group membership by
// username. Data Center has no invitations: a user either exists there
// (usually from a shared directory) or cannot be granted anything.
package bitbucketdc

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-resty/resty/v2"

	"github.com/autoinvite/autoinvite/integrations/atlassian"
)

// MaxUsersPerCall keeps one add-users body small.
const MaxUsersPerCall = 50

// Client talks to one Bitbucket Data Center instance.
type Client struct {
	rc *resty.Client
}

// New returns a client; o.Auth should carry the HTTP access token as Bearer.
func New(o atlassian.Options) *Client {
	return &Client{rc: atlassian.NewClient(o)}
}

// errorBody is Data Center's error answer.
type errorBody struct {
	Errors []struct {
		Message       string `json:"message"`
		ExceptionName string `json:"exceptionName"`
	} `json:"errors"`
}

// explain adds what Data Center means by a 401 or 403 on its admin
// resources (statuses that are permanent: retrying will not help). The
// *atlassian.APIError stays wrapped.
func explain(err error) error {
	switch atlassian.StatusOf(err) {
	case http.StatusUnauthorized:
		return fmt.Errorf("the HTTP access token lacks ADMIN permission (or is invalid): %w", err)
	case http.StatusForbidden:
		return fmt.Errorf("the licence's user limit would be exceeded, or the group outranks the token's permission: %w", err)
	}
	return err
}

func exceptionOf(body []byte) string {
	var eb errorBody
	if json.Unmarshal(body, &eb) != nil || len(eb.Errors) == 0 {
		return ""
	}
	return eb.Errors[0].ExceptionName
}

// AddUsers adds users to a group, several per call. Data Center refuses a
// whole call when one user does not exist (404 NoSuchUserException), so such a
// call is split in halves until the missing users are isolated: k missing
// users among n cost about k·log2(n) extra calls, and the others are added.
func (c *Client) AddUsers(ctx context.Context, group string, users []string) (missing []string, err error) {
	for start := 0; start < len(users); start += MaxUsersPerCall {
		end := min(start+MaxUsersPerCall, len(users))
		m, err := c.addUsers(ctx, group, users[start:end])
		missing = append(missing, m...)
		if err != nil {
			return missing, err
		}
	}
	return missing, nil
}

func (c *Client) addUsers(ctx context.Context, group string, users []string) ([]string, error) {
	if len(users) == 0 {
		return nil, nil
	}
	resp, err := c.rc.R().SetContext(ctx).
		SetHeader("Content-Type", "application/json").
		SetBody(map[string]any{"group": group, "users": users}).
		Post("/rest/api/latest/admin/groups/add-users")
	err = atlassian.Check("bitbucket-dc", "add users to group", resp, err)
	if err == nil {
		return nil, nil
	}
	if atlassian.StatusOf(err) == http.StatusNotFound {
		switch ex := exceptionOf(resp.Body()); {
		case strings.HasSuffix(ex, "NoSuchGroupException"):
			return nil, fmt.Errorf("add %d users to Data Center group %q: the group does not exist: %w", len(users), group, err)
		case strings.HasSuffix(ex, "NoSuchUserException"):
			if len(users) == 1 {
				return users, nil
			}
			half := len(users) / 2
			left, err := c.addUsers(ctx, group, users[:half])
			if err != nil {
				return left, err
			}
			right, err := c.addUsers(ctx, group, users[half:])
			return append(left, right...), err
		}
	}
	return nil, fmt.Errorf("add %s to Data Center group %q: %w", strings.Join(users, ","), group, explain(err))
}

// groupsPageLimit is how many groups one lookup page asks for.
const groupsPageLimit = 100

// GroupExists reports whether a group of this name exists (ADMIN permission).
// The filter matches parts of names, so the names answered are compared,
// page by page; Data Center group names are case-insensitive.
func (c *Client) GroupExists(ctx context.Context, group string) (bool, error) {
	start := 0
	for range 1000 {
		resp, err := c.rc.R().SetContext(ctx).
			SetQueryParams(map[string]string{"filter": group, "start": strconv.Itoa(start), "limit": strconv.Itoa(groupsPageLimit)}).
			Get("/rest/api/latest/admin/groups")
		if err := atlassian.Check("bitbucket-dc", "find group", resp, err); err != nil {
			if atlassian.StatusOf(err) == http.StatusUnauthorized {
				err = fmt.Errorf("the HTTP access token lacks ADMIN permission (or is invalid): %w", err)
			}
			return false, fmt.Errorf("look up Data Center group %q: %w", group, err)
		}
		var page struct {
			Values []struct {
				Name string `json:"name"`
			} `json:"values"`
			IsLastPage    bool `json:"isLastPage"`
			NextPageStart *int `json:"nextPageStart"`
		}
		if err := json.Unmarshal(resp.Body(), &page); err != nil {
			return false, fmt.Errorf("look up Data Center group %q: decode: %w", group, err)
		}
		for _, g := range page.Values {
			if strings.EqualFold(g.Name, group) {
				return true, nil
			}
		}
		if page.IsLastPage || page.NextPageStart == nil || *page.NextPageStart <= start {
			return false, nil
		}
		start = *page.NextPageStart
	}
	return false, fmt.Errorf("look up Data Center group %q: more than 1000 pages of groups match", group)
}

// RemoveFromGroup removes a user from a group. A user who no longer exists
// is already removed: that 404 is success. A missing group is an error.
func (c *Client) RemoveFromGroup(ctx context.Context, group, user string) error {
	resp, err := c.rc.R().SetContext(ctx).
		SetHeader("Content-Type", "application/json").
		SetBody(map[string]string{"context": user, "itemName": group}).
		Post("/rest/api/latest/admin/users/remove-group")
	err = atlassian.Check("bitbucket-dc", "remove user from group", resp, err)
	if err == nil {
		return nil
	}
	if atlassian.StatusOf(err) == http.StatusNotFound {
		switch ex := exceptionOf(resp.Body()); {
		case strings.HasSuffix(ex, "NoSuchUserException"):
			return nil
		case strings.HasSuffix(ex, "NoSuchGroupException"):
			return fmt.Errorf("remove %s from Data Center group %q: the group does not exist: %w", user, group, err)
		}
	}
	return fmt.Errorf("remove %s from Data Center group %q: %w", user, group, explain(err))
}
