// Package jira looks users up in Jira Cloud (REST v3) or Data Center (REST v2).
package jira

import (
	"context"
	"errors"
	"fmt"
	"strconv"

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
	return body.user(), nil
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

// Page is one page of a user listing.
type Page struct {
	Users []User
	// Next is the startAt of the next page; Done says there is none.
	Next int
	Done bool
	// Total is the number of users to list, when Jira says (0 = unknown).
	Total int
}

// ListUsers returns one page of users starting at startAt: every user (Cloud
// users/search, Data Center user/search), or the members of group.
func (c *Client) ListUsers(ctx context.Context, group string, startAt, maxResults int) (Page, error) {
	req := c.rc.R().SetContext(ctx).SetQueryParams(map[string]string{
		"startAt": strconv.Itoa(startAt), "maxResults": strconv.Itoa(maxResults),
	})
	var raw []userBody
	var path string
	switch {
	case group != "" && !c.datacenter:
		var body struct {
			Values []userBody `json:"values"`
			IsLast bool       `json:"isLast"`
			Total  int        `json:"total"`
		}
		resp, err := req.SetQueryParam("groupname", group).SetResult(&body).Get("/rest/api/3/group/member")
		if err := atlassian.Check("jira", "list group members", resp, err); err != nil {
			return Page{}, fmt.Errorf("list members of %s: %w", group, err)
		}
		return Page{Users: toUsers(body.Values), Next: startAt + len(body.Values), Done: body.IsLast || len(body.Values) == 0, Total: body.Total}, nil
	case group != "":
		return Page{}, errors.New("listing a group's members is supported on Jira Cloud only; on Data Center back-fill everyone")
	case c.datacenter:
		req.SetQueryParam("username", ".")
		path = "/rest/api/2/user/search"
	default:
		path = "/rest/api/3/users/search"
	}
	resp, err := req.SetResult(&raw).Get(path)
	if err := atlassian.Check("jira", "list users", resp, err); err != nil {
		return Page{}, fmt.Errorf("list users from %d: %w", startAt, err)
	}
	return Page{Users: toUsers(raw), Next: startAt + len(raw), Done: len(raw) < maxResults}, nil
}

func toUsers(bodies []userBody) []User {
	out := make([]User, 0, len(bodies))
	for _, b := range bodies {
		out = append(out, b.user())
	}
	return out
}

// user converts Jira's JSON: a null emailAddress (hidden) becomes "", and the
// expanded groups (when asked for) become their names.
func (b userBody) user() User {
	u := User{AccountID: b.AccountID, AccountType: b.AccountType, Name: b.Name, Key: b.Key, DisplayName: b.DisplayName, Active: b.Active}
	if b.EmailAddress != nil {
		u.Email = *b.EmailAddress
	}
	for _, g := range b.Groups.Items {
		u.Groups = append(u.Groups, g.Name)
	}
	return u
}
