// Package bitbucket calls Bitbucket Cloud: workspace membership (2.0 API) and
// groups and invitations (1.0 API, the only one that has them).
package bitbucket

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-resty/resty/v2"

	"github.com/autoinvite/autoinvite/integrations/atlassian"
	"github.com/autoinvite/autoinvite/internal/validate"
)

// Client talks to the Bitbucket Cloud API.
type Client struct {
	rc *resty.Client
}

// New returns a client.
func New(o atlassian.Options) *Client {
	return &Client{rc: atlassian.NewClient(o)}
}

// ErrOrganizationManaged is returned when the invitations resource answers 404:
// the workspace is managed from an Atlassian organization.
var ErrOrganizationManaged = errors.New("workspace is managed by an Atlassian organization: invitations must be sent through organization-level provisioning")

// ErrGroupNotFound is returned when a group slug does not exist in the workspace.
var ErrGroupNotFound = errors.New("group not found")

// ErrInvalidInput is returned, without calling Bitbucket, for an email or slug
// that must not go into a request.
var ErrInvalidInput = errors.New("invalid input")

func checkSlugs(slugs ...string) error {
	for _, s := range slugs {
		if !validate.Slug(s) {
			return fmt.Errorf("%w: %q is not a Bitbucket slug", ErrInvalidInput, s)
		}
	}
	return nil
}

// IsMember reports whether the account (Atlassian account ID or {UUID}) belongs to the workspace.
func (c *Client) IsMember(ctx context.Context, workspace, member string) (bool, error) {
	resp, err := c.rc.R().SetContext(ctx).
		SetPathParams(map[string]string{"workspace": workspace, "member": member}).
		Get("/2.0/workspaces/{workspace}/members/{member}")
	if err := atlassian.Check("bitbucket", "check membership", resp, err, http.StatusOK, http.StatusNotFound); err != nil {
		return false, fmt.Errorf("is %s a member of %s: %w", member, workspace, err)
	}
	return resp.StatusCode() == http.StatusOK, nil
}

// AddToGroup adds a workspace member to a group. Already being in it (409) is
// success; alreadyMember tells the caller.
func (c *Client) AddToGroup(ctx context.Context, workspace, group, member string) (alreadyMember bool, err error) {
	if err := checkSlugs(workspace, group); err != nil {
		return false, err
	}
	resp, err := c.rc.R().SetContext(ctx).
		SetPathParams(map[string]string{"workspace": workspace, "group": group, "member": member}).
		SetHeader("Content-Type", "application/json").
		SetBody([]byte("{}")).
		Put("/1.0/groups/{workspace}/{group}/members/{member}")
	err = atlassian.Check("bitbucket", "add to group", resp, err, http.StatusOK, http.StatusCreated, http.StatusNoContent, http.StatusConflict)
	if atlassian.StatusOf(err) == http.StatusNotFound {
		err = fmt.Errorf("%w: %w", ErrGroupNotFound, err)
	}
	if err != nil {
		return false, fmt.Errorf("add %s to %s/%s: %w", member, workspace, group, err)
	}
	return resp.StatusCode() == http.StatusConflict, nil
}

// RemoveFromGroup removes a member from a group; not being in it is success.
func (c *Client) RemoveFromGroup(ctx context.Context, workspace, group, member string) error {
	if err := checkSlugs(workspace, group); err != nil {
		return err
	}
	resp, err := c.rc.R().SetContext(ctx).
		SetPathParams(map[string]string{"workspace": workspace, "group": group, "member": member}).
		Delete("/1.0/groups/{workspace}/{group}/members/{member}")
	if err := atlassian.Check("bitbucket", "remove from group", resp, err, http.StatusOK, http.StatusNoContent, http.StatusNotFound); err != nil {
		return fmt.Errorf("remove %s from %s/%s: %w", member, workspace, group, err)
	}
	return nil
}

// Invite sends an invitation by email into one group. An existing invitation
// (409) counts as sent: alreadyInvited tells the caller.
func (c *Client) Invite(ctx context.Context, workspace, email, group string) (alreadyInvited bool, err error) {
	if err := checkSlugs(workspace, group); err != nil {
		return false, err
	}
	if !validate.Email(email) {
		return false, fmt.Errorf("%w: %q is not a single plain email address", ErrInvalidInput, email)
	}
	resp, err := c.rc.R().SetContext(ctx).
		SetPathParam("workspace", workspace).
		SetHeader("Content-Type", "application/json").
		SetBody(map[string]string{"email": email, "group_slug": group}).
		Put("/1.0/users/{workspace}/invitations")
	err = atlassian.Check("bitbucket", "invite", resp, err, http.StatusOK, http.StatusCreated, http.StatusNoContent, http.StatusConflict)
	if atlassian.StatusOf(err) == http.StatusNotFound {
		err = fmt.Errorf("%w: %w", ErrOrganizationManaged, err)
	}
	if err != nil {
		return false, fmt.Errorf("invite %s to %s/%s: %w", email, workspace, group, err)
	}
	return resp.StatusCode() == http.StatusConflict, nil
}

// Invitation is a pending invitation as Bitbucket lists it.
type Invitation struct {
	Email  string
	Group  string
	SentOn time.Time
}

// ListInvitations returns the workspace's pending invitations.
func (c *Client) ListInvitations(ctx context.Context, workspace string) ([]Invitation, error) {
	var body []struct {
		Email     string `json:"email"`
		UTCSentOn string `json:"utc_sent_on"`
		Group     struct {
			Slug string `json:"slug"`
		} `json:"group"`
	}
	resp, err := c.rc.R().SetContext(ctx).SetPathParam("workspace", workspace).SetResult(&body).
		Get("/1.0/users/{workspace}/invitations")
	if err := atlassian.Check("bitbucket", "list invitations", resp, err); err != nil {
		return nil, fmt.Errorf("list invitations of %s: %w", workspace, err)
	}
	out := make([]Invitation, 0, len(body))
	for _, b := range body {
		sent, _ := time.Parse(time.RFC3339, b.UTCSentOn)
		out = append(out, Invitation{Email: b.Email, Group: b.Group.Slug, SentOn: sent})
	}
	return out, nil
}

// CountMembers returns the number of workspace members (the paginated
// response's size, or the values counted page by page when it is absent).
func (c *Client) CountMembers(ctx context.Context, workspace string) (int, error) {
	if err := checkSlugs(workspace); err != nil {
		return 0, err
	}
	type page struct {
		Size   *int              `json:"size"`
		Values []json.RawMessage `json:"values"`
		Next   string            `json:"next"`
	}
	count := 0
	req := c.rc.R().SetContext(ctx).SetPathParam("workspace", workspace)
	url := "/2.0/workspaces/{workspace}/members"
	for i := 0; i < 1000 && url != ""; i++ {
		var p page
		resp, err := req.SetResult(&p).Get(url)
		if err := atlassian.Check("bitbucket", "count members", resp, err); err != nil {
			return 0, fmt.Errorf("count members of %s: %w", workspace, err)
		}
		if p.Size != nil {
			return *p.Size, nil
		}
		count += len(p.Values)
		url = p.Next
	}
	return count, nil
}
