// Package jira looks users up in Jira Cloud (REST v3) or Data Center (REST v2).
package jira

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-resty/resty/v2"

	"github.com/autoinvite/autoinvite/integrations/atlassian"
)

// User is a Jira user as autoinvite needs it.
type User struct {
	AccountID   string // Cloud only
	AccountType string // Cloud only: atlassian, app, customer
	Name        string // Data Center username
	Key         string // Data Center user key
	Email       string // empty when hidden
	DisplayName string
	Active      bool
	Groups      []string
}

// Ref identifies a user: AccountID on Cloud, Name or Key on Data Center.
type Ref struct {
	AccountID string
	Name      string
	Key       string
}

// Client talks to one Jira site.
type Client struct {
	rc         *resty.Client
	datacenter bool
}

// New returns a client; datacenter selects the Data Center REST API.
func New(o atlassian.Options, datacenter bool) *Client {
	return &Client{rc: atlassian.NewClient(o), datacenter: datacenter}
}

type userBody struct {
	AccountID    string  `json:"accountId"`
	AccountType  string  `json:"accountType"`
	Name         string  `json:"name"`
	Key          string  `json:"key"`
	EmailAddress *string `json:"emailAddress"`
	DisplayName  string  `json:"displayName"`
	Active       bool    `json:"active"`
	Groups       struct {
		Items []struct {
			Name string `json:"name"`
		} `json:"items"`
	} `json:"groups"`
}

// ErrNoRef is returned when a Ref names nobody.
var ErrNoRef = errors.New("jira user reference is empty")

// GetUser fetches a user with their groups in one call (expand=groups).
func (c *Client) GetUser(ctx context.Context, ref Ref) (User, error) {
	req := c.rc.R().SetContext(ctx).SetQueryParam("expand", "groups")
	path := "/rest/api/3/user"
	switch {
	case c.datacenter && ref.Name != "":
		path = "/rest/api/2/user"
		req.SetQueryParam("username", ref.Name)
	case c.datacenter && ref.Key != "":
		path = "/rest/api/2/user"
		req.SetQueryParam("key", ref.Key)
	case !c.datacenter && ref.AccountID != "":
		req.SetQueryParam("accountId", ref.AccountID)
	default:
		return User{}, ErrNoRef
	}
	var body userBody
	resp, err := req.SetResult(&body).Get(path)
	if err := atlassian.Check("jira", "get user", resp, err); err != nil {
		return User{}, fmt.Errorf("look up %s: %w", ref, err)
	}
	u := User{
		AccountID: body.AccountID, AccountType: body.AccountType, Name: body.Name, Key: body.Key,
		DisplayName: body.DisplayName, Active: body.Active,
	}
	if body.EmailAddress != nil {
		u.Email = *body.EmailAddress
	}
	for _, g := range body.Groups.Items {
		u.Groups = append(u.Groups, g.Name)
	}
	return u, nil
}

func (r Ref) String() string {
	switch {
	case r.AccountID != "":
		return "accountId " + r.AccountID
	case r.Name != "":
		return "user " + r.Name
	default:
		return "user key " + r.Key
	}
}
