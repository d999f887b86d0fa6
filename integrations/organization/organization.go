// Package organization invites people through the Atlassian organization
// admin API, for workspaces an organization manages (where Bitbucket's 1.0
// invitations resource answers 404).
package organization

import (
	"context"
	"fmt"

	"github.com/go-resty/resty/v2"

	"github.com/autoinvite/autoinvite/integrations/atlassian"
)

// MaxEmailsPerCall is the API's limit on one invitation call.
const MaxEmailsPerCall = 25

// Client talks to the admin API of one organization.
type Client struct {
	rc    *resty.Client
	orgID string
}

// New returns a client; o.Auth should carry the organization API key as Bearer.
func New(o atlassian.Options, orgID string) *Client {
	return &Client{rc: atlassian.NewClient(o), orgID: orgID}
}

// Invite invites emails into the organization groups, 25 emails per call. It
// stops at the first failing call; sent tells how many emails went out before.
func (c *Client) Invite(ctx context.Context, emails, groupIDs []string) (sent int, err error) {
	for start := 0; start < len(emails); start += MaxEmailsPerCall {
		batch := emails[start:min(start+MaxEmailsPerCall, len(emails))]
		resp, err := c.rc.R().SetContext(ctx).
			SetPathParam("orgId", c.orgID).
			SetHeader("Content-Type", "application/json").
			SetBody(map[string]any{"emails": batch, "additionalGroups": groupIDs, "sendNotification": true}).
			Post("/admin/v2/orgs/{orgId}/users/invite")
		if err := atlassian.Check("organization", "invite", resp, err); err != nil {
			return sent, fmt.Errorf("invite %d people through organization %s: %w", len(batch), c.orgID, err)
		}
		sent += len(batch)
	}
	return sent, nil
}
