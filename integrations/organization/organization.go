// Package organization talks to the Atlassian Organization Admin API
// (api.atlassian.com/admin) for Bitbucket workspaces administered in Atlassian
// Administration, where Bitbucket's own 1.0 groups and invitations are
// read-only or gone: it finds directories, groups, workspaces and users,
// changes group memberships and invites people.
//
// Every failure is, or wraps, an *atlassian.APIError (so atlassian.IsTemporary
// classifies it) and, when one applies, one of the sentinel errors below.
package organization

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/go-resty/resty/v2"

	"github.com/autoinvite/autoinvite/integrations/atlassian"
)

// MaxEmailsPerCall is the invite's documented (third-party) limit per call,
// the default of Invitation.PerCall.
const MaxEmailsPerCall = 25

// maxIDsPerSearch bounds the ids (or names) sent in one search body.
const maxIDsPerSearch = 100

// maxPages stops a paging loop whose server keeps answering with a next link.
const maxPages = 10000

// Sentinel errors; match with errors.Is. The errors returned also carry the
// *atlassian.APIError with the status and body.
var (
	ErrUnauthorized       = errors.New("unauthorized")
	ErrPaymentRequired    = errors.New("payment required")
	ErrForbidden          = errors.New("forbidden")
	ErrExternalSynced     = errors.New("group synced from an identity provider")
	ErrOrgNotFound        = errors.New("organization not found")
	ErrGroupNotFound      = errors.New("group not found")
	ErrUserNotInDirectory = errors.New("user not in the directory")
	ErrLicenceLimit       = errors.New("licence limit reached")
	ErrWorkspaceNotFound  = errors.New("workspace not found")
)

// Error codes the API documents (errors[].code).
const (
	codeOrgNotFound      = "ADMIN-404-2"
	codeOrgNotFoundUAM   = "ADMIN-UAM-404-2"
	codeGroupNotFound    = "ADMIN-404-10"
	codeGroupNotFoundUAM = "ADMIN-UAM-404-3"
	codeUserNotFound     = "ADMIN-404-8"
	codeResourceUnknown  = "ADMIN-UAM-404-1"
	codeAlreadyMember    = "ADMIN-UAM-409-2"
	codeLicenceLimit     = "ADMIN-409-3"
	codeLicenceLimitUAM  = "ADMIN-UAM-409-3"
	codeGroupNotAllowed  = "ADMIN-403-5"
)

// Client talks to the Admin API of one organization.
type Client struct {
	rc     *resty.Client
	orgID  string
	keyEnv string
}

// New returns a client; o.Auth should carry the organization API key as
// Bearer. keyEnv is the name of the environment variable holding that key,
// used only in error messages.
func New(o atlassian.Options, orgID, keyEnv string) *Client {
	return &Client{rc: atlassian.NewClient(o), orgID: orgID, keyEnv: keyEnv}
}

// OrgID returns the organization id the client works on.
func (c *Client) OrgID() string { return c.orgID }

// Directory is a user directory of the organization.
type Directory struct{ ID, Name string }

// Group is a group of a directory. ExternalSynced groups are managed by an
// identity provider and cannot be changed through the API.
type Group struct {
	ID, Name, DirectoryID string
	ExternalSynced        bool
}

// Workspace is a product workspace of the organization; ID is the resource
// id that invitations' permission rules take.
type Workspace struct{ ID, Name, TypeKey, HostURL string }

// User is a user of a directory.
type User struct{ AccountID, Email, AccountStatus, MembershipStatus string }

// ProductAccess is a user's last activity in one product instance, as the
// user search's productAccess expansion gives it (Atlassian says the data
// may lag by up to 24 hours; a user who never used the product has none).
type ProductAccess struct {
	Key, ID    string    // product key (jira, bitbucket, …) and instance id
	LastActive time.Time // zero when absent or unreadable
}

// UserActivity is a user with their product access.
type UserActivity struct {
	User
	Products []ProductAccess
}

// Invitation is what Invite sends.
type Invitation struct {
	Emails []string
	// Resource and Role become the one permission rule (none when Resource is
	// ""). Role defaults to atlassian/user.
	Resource, Role   string
	GroupIDs         []string // additionalGroups
	NotificationText string
	PerCall          int // emails per call; MaxEmailsPerCall when <= 0
}

// InviteResult is the outcome of inviting one person.
type InviteResult struct {
	Email, AccountID string
	Failed           bool
	Reason           string
}

// links is the paging block of the API's pages.
type links struct {
	Next *string `json:"next"`
}

// op describes a call for error messages and classification.
type op struct {
	name       string
	groupID    string
	accountID  string
	membership bool // a group membership write: 403 may mean an IdP-synced group
	invite     bool
}

// do sends one request and decodes a 2xx JSON answer into out (when not nil).
func (c *Client) do(ctx context.Context, o op, method, p string, params map[string]string, query url.Values, body, out any) (*resty.Response, error) {
	req := c.rc.R().SetContext(ctx).SetPathParam("orgId", c.orgID).SetPathParams(params)
	if query != nil {
		req.SetQueryParamsFromValues(query)
	}
	if body != nil {
		req.SetHeader("Content-Type", "application/json").SetBody(body)
	}
	resp, err := req.Execute(method, p)
	if err := atlassian.Check("organization", o.name, resp, err); err != nil {
		return resp, err
	}
	if out != nil && len(resp.Body()) > 0 {
		if err := json.Unmarshal(resp.Body(), out); err != nil {
			// Permanent (a 2xx status): the answer will not change shape on a retry.
			apiErr := &atlassian.APIError{API: "organization", Op: o.name, Method: method, Path: p,
				Status: resp.StatusCode(), Body: truncate(string(resp.Body())), Err: err}
			return resp, fmt.Errorf("decode the answer (%v): %w", err, apiErr)
		}
	}
	return resp, nil
}

func truncate(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// apiErrorCode reads the first error code and all texts of an error body. It
// accepts every ErrorResponse shape of the contract: {errors: [{code, title,
// detail}]}, a single {code, title, detail}, the proxy's {code: 401, message}.
func apiErrorCode(body string) (code, text string) {
	var v any
	if json.Unmarshal([]byte(body), &v) != nil {
		return "", body
	}
	m, _ := v.(map[string]any)
	var texts []string
	collect := func(e map[string]any) string {
		for _, k := range []string{"title", "detail", "message", "error"} {
			if s, ok := e[k].(string); ok && s != "" {
				texts = append(texts, s)
			}
		}
		switch c := e["code"].(type) {
		case string:
			return c
		case float64:
			return fmt.Sprint(c)
		}
		return ""
	}
	if errs, ok := m["errors"].([]any); ok {
		for _, e := range errs {
			if em, ok := e.(map[string]any); ok {
				if c := collect(em); code == "" {
					code = c
				}
			}
		}
	} else if m != nil {
		code = collect(m)
	}
	return code, strings.Join(texts, "; ")
}

// classify wraps err with the sentinel that applies and a message a person
// can act on. err stays in the chain, so IsTemporary and StatusOf still work.
func (c *Client) classify(o op, err error) error {
	apiErr, ok := atlassian.AsAPIError(err)
	if !ok || apiErr.Status == 0 {
		return err
	}
	code, text := apiErrorCode(apiErr.Body)
	switch apiErr.Status {
	case http.StatusUnauthorized:
		where := "the organization API key"
		if c.keyEnv != "" {
			where += " in $" + c.keyEnv
		}
		return fmt.Errorf("%w: %s was refused: create one at admin.atlassian.com → Settings → API keys: %w", ErrUnauthorized, where, err)
	case http.StatusPaymentRequired:
		return fmt.Errorf("%w: the organization has no paid subscription: the Admin API's invite needs one: %w", ErrPaymentRequired, err)
	case http.StatusForbidden:
		lower := strings.ToLower(text)
		if o.membership && (strings.Contains(lower, "identity provider") || strings.Contains(lower, "extern") || strings.Contains(lower, "synced")) {
			return fmt.Errorf("%w: group %s is managed by your identity provider: change its members there: %w", ErrExternalSynced, o.groupID, err)
		}
		hint := "the organization API key may not do this: use a key of an organization admin, with the admin scopes this call needs (or without scopes)"
		if code == codeGroupNotAllowed {
			hint = fmt.Sprintf("not allowed to manage group %s (if it is synced from an identity provider, change it there)", o.groupID)
		}
		return fmt.Errorf("%w: %s: %w", ErrForbidden, hint, err)
	case http.StatusNotFound:
		switch {
		case code == codeOrgNotFound || code == codeOrgNotFoundUAM:
			return fmt.Errorf("%w: organization %s not found: check workspaces[].organization.id: %w", ErrOrgNotFound, c.orgID, err)
		case code == codeGroupNotFound || code == codeGroupNotFoundUAM:
			if o.groupID == "" { // the invite names its groups in the body
				return fmt.Errorf("%w: a group of the call was not found: check the group ids: %w", ErrGroupNotFound, err)
			}
			return fmt.Errorf("%w: group %s not found in its directory: %w", ErrGroupNotFound, o.groupID, err)
		case code == codeUserNotFound && o.membership:
			return fmt.Errorf("%w: account %s is not in the group's directory: %w", ErrUserNotInDirectory, o.accountID, err)
		case code == codeResourceUnknown && o.invite:
			return fmt.Errorf("%w: the workspace resource id is not in organization %s: %w", ErrWorkspaceNotFound, c.orgID, err)
		}
	case http.StatusConflict:
		if code == codeLicenceLimit || code == codeLicenceLimitUAM {
			return fmt.Errorf("%w: a product licence's user limit would be exceeded: free seats or raise the limit: %w", ErrLicenceLimit, err)
		}
	}
	return err
}

// cursorOf takes the cursor out of a links.next, which may be a full URL
// carrying ?cursor= or the bare cursor.
func cursorOf(next *string) string {
	if next == nil || *next == "" {
		return ""
	}
	if u, err := url.Parse(*next); err == nil && (u.IsAbs() || strings.HasPrefix(*next, "/")) {
		if cur := u.Query().Get("cursor"); cur != "" {
			return cur
		}
		return "" // a URL without a cursor has nothing left to page
	}
	return *next
}

// pages calls fetch with "" and then each next cursor until none is left.
func pages(what string, fetch func(cursor string) (next *string, err error)) error {
	cursor := ""
	seen := map[string]bool{}
	for range maxPages {
		next, err := fetch(cursor)
		if err != nil {
			return err
		}
		cursor = cursorOf(next)
		if cursor == "" {
			return nil
		}
		if seen[cursor] {
			return fmt.Errorf("%s: the API answered cursor %q twice: stopping to avoid a loop", what, cursor)
		}
		seen[cursor] = true
	}
	return fmt.Errorf("%s: more than %d pages: stopping", what, maxPages)
}

// Directories lists the organization's directories.
func (c *Client) Directories(ctx context.Context) ([]Directory, error) {
	o := op{name: "list directories"}
	var out []Directory
	err := pages(o.name, func(cursor string) (*string, error) {
		var q url.Values
		if cursor != "" {
			q = url.Values{"cursor": {cursor}}
		}
		var page struct {
			Data []struct {
				DirectoryID string `json:"directoryId"`
				Name        string `json:"name"`
			} `json:"data"`
			Links links `json:"links"`
		}
		if _, err := c.do(ctx, o, http.MethodGet, "/admin/v2/orgs/{orgId}/directories", nil, q, nil, &page); err != nil {
			return nil, c.classify(o, err)
		}
		for _, d := range page.Data {
			out = append(out, Directory{ID: d.DirectoryID, Name: d.Name})
		}
		return page.Links.Next, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the directories of organization %s: %w", c.orgID, err)
	}
	return out, nil
}

// FindGroups looks groups up by name (exact, case-insensitive) in every
// directory. The result is keyed by strings.ToLower(name); names not found are
// absent. A name held by groups of two directories is an error: writing to
// the wrong one would grant the wrong access.
func (c *Client) FindGroups(ctx context.Context, names []string) (map[string]Group, error) {
	o := op{name: "search groups"}
	wanted := map[string]bool{}
	var unique []string
	for _, n := range names {
		if k := strings.ToLower(n); n != "" && !wanted[k] {
			wanted[k] = true
			unique = append(unique, n)
		}
	}
	out := map[string]Group{}
	for start := 0; start < len(unique); start += maxIDsPerSearch {
		chunk := unique[start:min(start+maxIDsPerSearch, len(unique))]
		err := pages(o.name, func(cursor string) (*string, error) {
			body := map[string]any{"groupNames": chunk}
			if cursor != "" {
				body["cursor"] = cursor
			}
			var page struct {
				Data []struct {
					ID             string `json:"id"`
					Name           string `json:"name"`
					DirectoryID    string `json:"directoryId"`
					ExternalSynced bool   `json:"externalSynced"`
				} `json:"data"`
				Links links `json:"links"`
			}
			if _, err := c.do(ctx, o, http.MethodPost, "/admin/v2/orgs/{orgId}/directories/-/groups/search", nil, nil, body, &page); err != nil {
				return nil, c.classify(o, err)
			}
			for _, g := range page.Data {
				k := strings.ToLower(g.Name)
				if !wanted[k] {
					continue // the search is documented as exact; keep to what was asked
				}
				if prev, dup := out[k]; dup && prev.ID != g.ID {
					return nil, fmt.Errorf("group name %q is used in directories %s and %s: rename one, the name is ambiguous", g.Name, prev.DirectoryID, g.DirectoryID)
				}
				out[k] = Group{ID: g.ID, Name: g.Name, DirectoryID: g.DirectoryID, ExternalSynced: g.ExternalSynced}
			}
			return page.Links.Next, nil
		})
		if err != nil {
			return nil, fmt.Errorf("find groups %s in organization %s: %w", strings.Join(chunk, ", "), c.orgID, err)
		}
	}
	return out, nil
}

// Workspaces lists the organization's workspaces (all products).
func (c *Client) Workspaces(ctx context.Context) ([]Workspace, error) {
	o := op{name: "list workspaces"}
	var out []Workspace
	err := pages(o.name, func(cursor string) (*string, error) {
		// Follow-up pages send only the cursor, as the API asks.
		body := map[string]any{}
		if cursor != "" {
			body["cursor"] = cursor
		}
		var page struct {
			Data []struct {
				ID         string `json:"id"`
				Attributes struct {
					Name    string  `json:"name"`
					TypeKey string  `json:"typeKey"`
					HostURL *string `json:"hostUrl"`
				} `json:"attributes"`
			} `json:"data"`
			Links links `json:"links"`
		}
		if _, err := c.do(ctx, o, http.MethodPost, "/admin/v2/orgs/{orgId}/workspaces", nil, nil, body, &page); err != nil {
			return nil, c.classify(o, err)
		}
		for _, w := range page.Data {
			ws := Workspace{ID: w.ID, Name: w.Attributes.Name, TypeKey: w.Attributes.TypeKey}
			if w.Attributes.HostURL != nil {
				ws.HostURL = *w.Attributes.HostURL
			}
			out = append(out, ws)
		}
		return page.Links.Next, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the workspaces of organization %s: %w", c.orgID, err)
	}
	return out, nil
}

// FindWorkspace returns the workspace whose name, or the last path segment of
// whose host URL, equals slug (case-insensitive). Among several matches a
// Bitbucket one wins; ErrWorkspaceNotFound when none matches.
func (c *Client) FindWorkspace(ctx context.Context, slug string) (Workspace, error) {
	all, err := c.Workspaces(ctx)
	if err != nil {
		return Workspace{}, err
	}
	var hits []Workspace
	var seen []string
	for _, w := range all {
		if len(seen) < 10 {
			seen = append(seen, w.Name)
		}
		if strings.EqualFold(w.Name, slug) || strings.EqualFold(hostSlug(w.HostURL), slug) {
			hits = append(hits, w)
		}
	}
	if len(hits) > 1 {
		var bitbucket []Workspace
		for _, w := range hits {
			if strings.Contains(strings.ToLower(w.TypeKey), "bitbucket") {
				bitbucket = append(bitbucket, w)
			}
		}
		if len(bitbucket) > 0 {
			hits = bitbucket
		}
	}
	switch len(hits) {
	case 0:
		return Workspace{}, fmt.Errorf("%w: no workspace %q in organization %s (saw %d: %s)", ErrWorkspaceNotFound, slug, c.orgID, len(all), strings.Join(seen, ", "))
	case 1:
		return hits[0], nil
	}
	var names []string
	for _, w := range hits {
		names = append(names, fmt.Sprintf("%s (%s, id %s, %s)", w.Name, w.TypeKey, w.ID, w.HostURL))
	}
	return Workspace{}, fmt.Errorf("workspace %q is ambiguous in organization %s: %s", slug, c.orgID, strings.Join(names, "; "))
}

// hostSlug is the last path segment of a host URL ("" when it has no path).
func hostSlug(hostURL string) string {
	u, err := url.Parse(hostURL)
	if err != nil {
		return ""
	}
	p := strings.Trim(u.Path, "/")
	if p == "" {
		return ""
	}
	return path.Base(p)
}

// searchUsers pages through POST …/directories/{directoryId}/users/search
// with filter (the cursor is added per page) and hands each user to fn.
func (c *Client) searchUsers(ctx context.Context, o op, directoryID string, filter map[string]any, fn func(UserActivity)) error {
	return pages(o.name, func(cursor string) (*string, error) {
		body := maps.Clone(filter)
		if cursor != "" {
			body["cursor"] = cursor
		}
		var page struct {
			Data []struct {
				AccountID        string `json:"accountId"`
				Email            string `json:"email"`
				AccountStatus    string `json:"accountStatus"`
				MembershipStatus string `json:"membershipStatus"`
				ProductAccess    []struct {
					Key        string `json:"key"`
					ID         string `json:"id"`
					LastActive string `json:"lastActiveTimestamp"`
				} `json:"productAccess"`
			} `json:"data"`
			Links links `json:"links"`
		}
		params := map[string]string{"directoryId": directoryID}
		if _, err := c.do(ctx, o, http.MethodPost, "/admin/v2/orgs/{orgId}/directories/{directoryId}/users/search", params, nil, body, &page); err != nil {
			return nil, c.classify(o, err)
		}
		for _, u := range page.Data {
			ua := UserActivity{User: User{AccountID: u.AccountID, Email: u.Email, AccountStatus: u.AccountStatus, MembershipStatus: u.MembershipStatus}}
			for _, p := range u.ProductAccess {
				at, _ := time.Parse(time.RFC3339Nano, p.LastActive) // unreadable: no proof of activity
				ua.Products = append(ua.Products, ProductAccess{Key: p.Key, ID: p.ID, LastActive: at})
			}
			fn(ua)
		}
		return page.Links.Next, nil
	})
}

// FindUsers looks accounts up in a directory ("-" for all), at most 100 ids
// per call. The result is keyed by account id; unknown ids are absent.
func (c *Client) FindUsers(ctx context.Context, directoryID string, accountIDs []string) (map[string]User, error) {
	out := map[string]User{}
	err := c.findUsers(ctx, op{name: "search users"}, directoryID, accountIDs, nil, func(u UserActivity) { out[u.AccountID] = u.User })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// FindUserActivity is FindUsers with each user's last activity per product
// (expand productAccess): one call per 100 accounts answers for all of them.
func (c *Client) FindUserActivity(ctx context.Context, directoryID string, accountIDs []string) (map[string]UserActivity, error) {
	out := map[string]UserActivity{}
	err := c.findUsers(ctx, op{name: "search users' product access"}, directoryID, accountIDs, []string{"productAccess"}, func(u UserActivity) {
		if prev, ok := out[u.AccountID]; ok { // "-" may answer once per directory
			u.Products = append(prev.Products, u.Products...)
		}
		out[u.AccountID] = u
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// findUsers searches accounts by exact id, maxIDsPerSearch per call, and
// hands fn each user asked about.
func (c *Client) findUsers(ctx context.Context, o op, directoryID string, accountIDs, expand []string, fn func(UserActivity)) error {
	wanted := map[string]bool{}
	var unique []string
	for _, id := range accountIDs {
		if id != "" && !wanted[id] {
			wanted[id] = true
			unique = append(unique, id)
		}
	}
	for start := 0; start < len(unique); start += maxIDsPerSearch {
		chunk := unique[start:min(start+maxIDsPerSearch, len(unique))]
		// limit = the chunk size, so one call usually answers a chunk.
		filter := map[string]any{"accountIds": chunk, "limit": len(chunk)}
		if len(expand) > 0 {
			filter["expand"] = expand
		}
		err := c.searchUsers(ctx, o, directoryID, filter, func(u UserActivity) {
			if wanted[u.AccountID] {
				fn(u)
			}
		})
		if err != nil {
			return fmt.Errorf("find %d users in directory %s of organization %s: %w", len(chunk), directoryID, c.orgID, err)
		}
	}
	return nil
}

// AddToGroup adds an account to a group of its directory. alreadyMember is
// true when the API answered 409 ADMIN-UAM-409-2 (the person was in already).
func (c *Client) AddToGroup(ctx context.Context, directoryID, groupID, accountID string) (alreadyMember bool, err error) {
	o := op{name: "add to group", groupID: groupID, accountID: accountID, membership: true}
	params := map[string]string{"directoryId": directoryID, "groupId": groupID}
	_, err = c.do(ctx, o, http.MethodPost, "/admin/v2/orgs/{orgId}/directories/{directoryId}/groups/{groupId}/memberships", params, nil,
		map[string]string{"accountId": accountID}, nil)
	if err == nil {
		return false, nil
	}
	if apiErr, ok := atlassian.AsAPIError(err); ok && apiErr.Status == http.StatusConflict {
		if code, _ := apiErrorCode(apiErr.Body); code == codeAlreadyMember {
			return true, nil
		}
	}
	return false, fmt.Errorf("add %s to group %s (directory %s): %w", accountID, groupID, directoryID, c.classify(o, err))
}

// RemoveFromGroup removes an account from a group. An account the directory
// does not know (404 ADMIN-404-8) has nothing to remove: nil.
func (c *Client) RemoveFromGroup(ctx context.Context, directoryID, groupID, accountID string) error {
	o := op{name: "remove from group", groupID: groupID, accountID: accountID, membership: true}
	params := map[string]string{"directoryId": directoryID, "groupId": groupID, "accountId": accountID}
	_, err := c.do(ctx, o, http.MethodDelete, "/admin/v2/orgs/{orgId}/directories/{directoryId}/groups/{groupId}/memberships/{accountId}", params, nil, nil, nil)
	if err == nil {
		return nil
	}
	if apiErr, ok := atlassian.AsAPIError(err); ok && apiErr.Status == http.StatusNotFound {
		switch code, _ := apiErrorCode(apiErr.Body); code {
		case codeUserNotFound:
			return nil
		case codeOrgNotFound, codeOrgNotFoundUAM:
			// classify names the organization below.
		default:
			err = fmt.Errorf("%w: group %s not found in directory %s: %w", ErrGroupNotFound, groupID, directoryID, err)
			return fmt.Errorf("remove %s from group %s: %w", accountID, groupID, err)
		}
	}
	return fmt.Errorf("remove %s from group %s (directory %s): %w", accountID, groupID, directoryID, c.classify(o, err))
}

// Invite invites people, PerCall emails per call, and reads the per-person
// results. It stops at the first failing call: results then hold everyone of
// the calls that succeeded, sent how many emails went out, err that call's error.
func (c *Client) Invite(ctx context.Context, inv Invitation) (results []InviteResult, sent int, err error) {
	per := inv.PerCall
	if per <= 0 {
		per = MaxEmailsPerCall
	}
	var emails []string
	seen := map[string]bool{}
	for _, e := range inv.Emails {
		if k := strings.ToLower(strings.TrimSpace(e)); k != "" && !seen[k] {
			seen[k] = true
			emails = append(emails, strings.TrimSpace(e))
		}
	}
	role := inv.Role
	if role == "" {
		role = "atlassian/user"
	}
	o := op{name: "invite", invite: true}
	for start := 0; start < len(emails); start += per {
		batch := emails[start:min(start+per, len(emails))]
		body := map[string]any{"emails": batch, "sendNotification": true}
		if inv.Resource != "" {
			body["permissionRules"] = []map[string]string{{"resource": inv.Resource, "role": role}}
		}
		if len(inv.GroupIDs) > 0 {
			body["additionalGroups"] = inv.GroupIDs
		}
		if inv.NotificationText != "" {
			body["notificationText"] = inv.NotificationText
		}
		var answer inviteAnswer
		if _, err := c.do(ctx, o, http.MethodPost, "/admin/v2/orgs/{orgId}/users/invite", nil, nil, body, &answer); err != nil {
			return results, sent, fmt.Errorf("invite %d people (%d to %d of %d) through organization %s: %w",
				len(batch), start+1, start+len(batch), len(emails), c.orgID, c.classify(o, err))
		}
		sent += len(batch)
		results = append(results, answer.results(batch)...)
	}
	return results, sent, nil
}

type inviteAnswer struct {
	Data []struct {
		ID      string `json:"id"`
		Email   string `json:"email"`
		Results []struct {
			Roles []struct {
				Resource     string  `json:"resource"`
				Role         string  `json:"role"`
				Status       string  `json:"status"`
				StatusReason *string `json:"statusReason"`
			} `json:"roleAssignmentResult"`
			Groups []struct {
				Group        string  `json:"group"`
				Status       string  `json:"status"`
				StatusReason *string `json:"statusReason"`
			} `json:"groupAssignmentResult"`
		} `json:"results"`
	} `json:"data"`
}

// results gives one InviteResult per email sent, in the order sent.
func (a inviteAnswer) results(batch []string) []InviteResult {
	byEmail := map[string]InviteResult{}
	for _, d := range a.Data {
		r := InviteResult{Email: d.Email, AccountID: d.ID}
		var reasons []string
		for _, res := range d.Results {
			for _, role := range res.Roles {
				if strings.EqualFold(role.Status, "ERROR") {
					r.Failed = true
					reasons = append(reasons, reasonOf(role.StatusReason))
				}
			}
			for _, g := range res.Groups {
				if strings.EqualFold(g.Status, "ERROR") {
					r.Failed = true
					reasons = append(reasons, "group "+g.Group+": "+reasonOf(g.StatusReason))
				}
			}
		}
		r.Reason = strings.Join(reasons, "; ")
		byEmail[strings.ToLower(d.Email)] = r
	}
	out := make([]InviteResult, 0, len(batch))
	for _, e := range batch {
		r, ok := byEmail[strings.ToLower(e)]
		if !ok {
			r = InviteResult{Reason: "no per-person result in the answer"}
		}
		r.Email = e
		out = append(out, r)
	}
	return out
}

func reasonOf(s *string) string {
	if s == nil || *s == "" {
		return "ERROR without a reason"
	}
	return *s
}
