// Package bitbucket calls Bitbucket Cloud: workspace membership (2.0 API) and
// groups and invitations (1.0 API, the only one that has them).
//
// A workspace administered in Atlassian Administration keeps the GETs but
// refuses every 1.0 write, with a status Atlassian does not document (403,
// 404, 405 or 410). A 404 is also what a missing group or workspace answers,
// so the client confirms an ambiguous 404 with GETs that still work before
// saying which it was.
package bitbucket

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-resty/resty/v2"

	"github.com/autoinvite/autoinvite/integrations/atlassian"
	"github.com/autoinvite/autoinvite/internal/validate"
)

// How long WorkspaceExists trusts an answer: a workspace rarely disappears,
// while a missing one may be about to be created (or the slug fixed).
const (
	workspaceFoundTTL   = time.Hour
	workspaceMissingTTL = time.Minute
)

// Client talks to the Bitbucket Cloud API. It is safe for concurrent use.
type Client struct {
	rc  *resty.Client
	now func() time.Time
	// workspaces caches WorkspaceExists: slug -> workspaceAnswer.
	workspaces sync.Map
}

type workspaceAnswer struct {
	exists bool
	until  time.Time
}

// Option configures a Client.
type Option func(*Client)

// WithClock sets the clock the workspace cache uses (tests).
func WithClock(now func() time.Time) Option { return func(c *Client) { c.now = now } }

// New returns a client.
func New(o atlassian.Options, opts ...Option) *Client {
	c := &Client{rc: atlassian.NewClient(o), now: time.Now}
	for _, opt := range opts {
		opt(c)
	}
	return c
}

// ErrAdministeredInAtlassian is returned when Bitbucket refused a 1.0 write
// (group membership or invitation) because the workspace is administered in
// Atlassian Administration. The *atlassian.APIError of the refusal is wrapped too.
var ErrAdministeredInAtlassian = errors.New("the workspace is administered in Atlassian Administration " +
	"(admin.atlassian.com → Products shows it): Bitbucket refuses 1.0 group writes and invitations there, " +
	"so they must go through the Organization Admin API")

// ErrOrganizationManaged is the former name of ErrAdministeredInAtlassian.
//
// Deprecated: use ErrAdministeredInAtlassian.
var ErrOrganizationManaged = ErrAdministeredInAtlassian

// ErrWorkspaceNotFound is returned when the workspace does not exist (or the
// credentials cannot see it).
var ErrWorkspaceNotFound = errors.New("workspace does not exist in Bitbucket Cloud (or the credentials cannot see it)")

// ErrGroupNotFound is returned when a group slug does not exist in the workspace.
var ErrGroupNotFound = errors.New("group not found")

// ErrInvalidInput is returned, without calling Bitbucket, for an email or slug
// that must not go into a request.
var ErrInvalidInput = errors.New("invalid input")

// workspaceNotFound names the workspace and where to fix it; errors.Is
// matches ErrWorkspaceNotFound.
type workspaceNotFound struct{ workspace string }

func (e *workspaceNotFound) Error() string {
	return fmt.Sprintf("workspace %q does not exist in Bitbucket Cloud (or the credentials cannot see it): check workspaces[].workspace", e.workspace)
}

func (e *workspaceNotFound) Is(target error) bool { return target == ErrWorkspaceNotFound }

func groupNotFound(workspace, group string, cause error) error {
	return fmt.Errorf("%w: no group %q in workspace %q: %w", ErrGroupNotFound, group, workspace, cause)
}

func administered(cause error) error {
	return fmt.Errorf("%w: %w", ErrAdministeredInAtlassian, cause)
}

func checkSlugs(slugs ...string) error {
	for _, s := range slugs {
		if !validate.Slug(s) {
			return fmt.Errorf("%w: %q is not a Bitbucket slug", ErrInvalidInput, s)
		}
	}
	return nil
}

// check is atlassian.Check plus, on a 401 or 403, the scopes Bitbucket says
// the endpoint accepts: scoped tokens are the usual cause.
func check(op string, resp *resty.Response, err error, ok ...int) error {
	err = atlassian.Check("bitbucket", op, resp, err, ok...)
	if s := atlassian.StatusOf(err); (s == http.StatusUnauthorized || s == http.StatusForbidden) && resp != nil {
		if scopes := resp.Header().Get("X-Accepted-OAuth-Scopes"); scopes != "" {
			err = fmt.Errorf("%w; the endpoint accepts these OAuth scopes (X-Accepted-OAuth-Scopes): %s", err, scopes)
		}
	}
	return err
}

// refusedWrite reports whether a 1.0 write's status means the workspace is
// administered in Atlassian Administration without needing confirmation.
func refusedWrite(status int) bool {
	return status == http.StatusForbidden || status == http.StatusMethodNotAllowed || status == http.StatusGone
}

// WorkspaceExists reports whether the workspace exists (and the credentials
// can see it). Answers are cached: found for an hour, missing for a minute.
func (c *Client) WorkspaceExists(ctx context.Context, workspace string) (bool, error) {
	if v, ok := c.workspaces.Load(workspace); ok {
		if a := v.(workspaceAnswer); c.now().Before(a.until) {
			return a.exists, nil
		}
	}
	resp, err := c.rc.R().SetContext(ctx).SetPathParam("workspace", workspace).
		Get("/2.0/workspaces/{workspace}")
	if err := check("get workspace", resp, err, http.StatusOK, http.StatusNotFound); err != nil {
		return false, fmt.Errorf("does workspace %s exist: %w", workspace, err)
	}
	exists, ttl := resp.StatusCode() == http.StatusOK, workspaceMissingTTL
	if exists {
		ttl = workspaceFoundTTL
	}
	c.workspaces.Store(workspace, workspaceAnswer{exists: exists, until: c.now().Add(ttl)})
	return exists, nil
}

// unconfirmed is a 404 that could not be explained because the confirming
// call failed: what happened is unknown, so the confirmation's error decides
// whether it is worth a retry (a 503 is; the 404 alone would not be).
type unconfirmed struct{ cause, confirm error }

func (e *unconfirmed) Error() string {
	return fmt.Sprintf("%v (while confirming: %v)", e.cause, e.confirm)
}
func (e *unconfirmed) Unwrap() []error { return []error{e.confirm, e.cause} }

// workspaceOrGroupMissing settles a 404 that means the group or the
// workspace is missing: one (cached) workspace check says which.
func (c *Client) workspaceOrGroupMissing(ctx context.Context, workspace, group string, cause error) error {
	exists, err := c.WorkspaceExists(ctx, workspace)
	switch {
	case err != nil:
		return &unconfirmed{cause: cause, confirm: err}
	case !exists:
		return &workspaceNotFound{workspace: workspace}
	default:
		return groupNotFound(workspace, group, cause)
	}
}

// IsMember reports whether the account (Atlassian account ID or {UUID})
// belongs to the workspace. Bitbucket answers 404 both for "not a member" and
// for "no such workspace": the workspace is checked (cached) on a 404 so that
// a misspelled slug gives ErrWorkspaceNotFound, never "nobody is a member".
func (c *Client) IsMember(ctx context.Context, workspace, member string) (bool, error) {
	resp, err := c.rc.R().SetContext(ctx).
		SetPathParams(map[string]string{"workspace": workspace, "member": member}).
		Get("/2.0/workspaces/{workspace}/members/{member}")
	if err := check("check membership", resp, err, http.StatusOK, http.StatusNotFound); err != nil {
		return false, fmt.Errorf("is %s a member of %s: %w", member, workspace, err)
	}
	if resp.StatusCode() == http.StatusOK {
		// A member proves the workspace: later 404s need no workspace check.
		c.workspaces.Store(workspace, workspaceAnswer{exists: true, until: c.now().Add(workspaceFoundTTL)})
		return true, nil
	}
	exists, err := c.WorkspaceExists(ctx, workspace)
	if err != nil {
		return false, fmt.Errorf("is %s a member of %s: %w", member, workspace, err)
	}
	if !exists {
		return false, fmt.Errorf("is %s a member of %s: %w", member, workspace, &workspaceNotFound{workspace: workspace})
	}
	return false, nil
}

// Group is a workspace group as the 1.0 API lists it.
type Group struct {
	Name string
	Slug string
}

// ListGroups returns the workspace's groups (GET /1.0/groups/{workspace}),
// which still answers for workspaces administered in Atlassian Administration.
func (c *Client) ListGroups(ctx context.Context, workspace string) ([]Group, error) {
	if err := checkSlugs(workspace); err != nil {
		return nil, err
	}
	groups, err := c.listGroups(ctx, workspace)
	if atlassian.StatusOf(err) == http.StatusNotFound {
		if exists, xerr := c.WorkspaceExists(ctx, workspace); xerr == nil && !exists {
			err = &workspaceNotFound{workspace: workspace}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list groups of %s: %w", workspace, err)
	}
	return groups, nil
}

// listGroups is one GET /1.0/groups/{workspace}; errors are bare *atlassian.APIError.
func (c *Client) listGroups(ctx context.Context, workspace string) ([]Group, error) {
	resp, err := c.rc.R().SetContext(ctx).SetPathParam("workspace", workspace).
		Get("/1.0/groups/{workspace}")
	if err := check("list groups", resp, err); err != nil {
		return nil, err
	}
	var body []struct {
		Name string `json:"name"`
		Slug string `json:"slug"`
	}
	if err := json.Unmarshal(resp.Body(), &body); err != nil {
		return nil, fmt.Errorf("decode groups: %w", err)
	}
	out := make([]Group, 0, len(body))
	for _, g := range body {
		out = append(out, Group{Name: g.Name, Slug: g.Slug})
	}
	return out, nil
}

// explainWrite404 settles the 404 of a write that names a group (add, invite)
// with at most two GETs: the group list shows the group → the write was
// refused (administered in Atlassian); the list lacks it → the group is
// missing; the list itself is 404 → the workspace check decides.
func (c *Client) explainWrite404(ctx context.Context, workspace, group string, cause error) error {
	groups, err := c.listGroups(ctx, workspace)
	switch {
	case atlassian.StatusOf(err) == http.StatusNotFound:
		return c.workspaceOrGroupMissing(ctx, workspace, group, cause)
	case err != nil:
		return &unconfirmed{cause: cause, confirm: err}
	}
	for _, g := range groups {
		if g.Slug == group {
			return administered(cause)
		}
	}
	return groupNotFound(workspace, group, cause)
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
	already, err := c.writeAnswer(ctx, "add to group", workspace, group, resp, err)
	if err != nil {
		return false, fmt.Errorf("add %s to %s/%s: %w", member, workspace, group, err)
	}
	return already, nil
}

// writeAnswer reads the answer to a 1.0 group add or invitation: 409 is
// "already" (a member, invited), a refusal means the workspace is
// administered in Atlassian, and a 404 is explained (workspace, group or
// refusal).
func (c *Client) writeAnswer(ctx context.Context, op, workspace, group string, resp *resty.Response, err error) (already bool, _ error) {
	err = check(op, resp, err, http.StatusOK, http.StatusCreated, http.StatusNoContent, http.StatusConflict)
	switch s := atlassian.StatusOf(err); {
	case refusedWrite(s):
		err = administered(err)
	case s == http.StatusNotFound:
		err = c.explainWrite404(ctx, workspace, group, err)
	}
	if err != nil {
		return false, err
	}
	return resp.StatusCode() == http.StatusConflict, nil
}

// RemoveFromGroup removes a member from a group; not being in it is success.
// A 404 answers both "not in the group" and "refused" (administered in
// Atlassian), so the group's member list decides.
func (c *Client) RemoveFromGroup(ctx context.Context, workspace, group, member string) error {
	if err := checkSlugs(workspace, group); err != nil {
		return err
	}
	resp, err := c.rc.R().SetContext(ctx).
		SetPathParams(map[string]string{"workspace": workspace, "group": group, "member": member}).
		Delete("/1.0/groups/{workspace}/{group}/members/{member}")
	err = check("remove from group", resp, err, http.StatusOK, http.StatusNoContent)
	switch s := atlassian.StatusOf(err); {
	case refusedWrite(s):
		err = administered(err)
	case s == http.StatusNotFound:
		err = c.explainRemove404(ctx, workspace, group, member, err)
	}
	if err != nil {
		return fmt.Errorf("remove %s from %s/%s: %w", member, workspace, group, err)
	}
	return nil
}

// explainRemove404 settles a DELETE's 404 with at most two GETs: the member
// still listed → refused; not listed → already removed (nil); the member list
// itself 404 → the workspace check says whether group or workspace is missing.
func (c *Client) explainRemove404(ctx context.Context, workspace, group, member string, cause error) error {
	listed, err := c.inGroup(ctx, workspace, group, member)
	switch {
	case atlassian.StatusOf(err) == http.StatusNotFound:
		return c.workspaceOrGroupMissing(ctx, workspace, group, cause)
	case err != nil:
		return &unconfirmed{cause: cause, confirm: err}
	case listed:
		// The member may have arrived between the two calls (an earlier
		// add landing late): one more DELETE tells that race from a refusal.
		resp, err := c.rc.R().SetContext(ctx).
			SetPathParams(map[string]string{"workspace": workspace, "group": group, "member": member}).
			Delete("/1.0/groups/{workspace}/{group}/members/{member}")
		err = check("remove from group", resp, err, http.StatusOK, http.StatusNoContent)
		switch s := atlassian.StatusOf(err); {
		case err == nil:
			return nil
		case s == http.StatusNotFound || refusedWrite(s):
			return administered(cause)
		}
		return err
	}
	return nil
}

// inGroup reports whether member (account ID or {UUID}) is listed by
// GET /1.0/groups/{workspace}/{group}/members.
func (c *Client) inGroup(ctx context.Context, workspace, group, member string) (bool, error) {
	resp, err := c.rc.R().SetContext(ctx).
		SetPathParams(map[string]string{"workspace": workspace, "group": group}).
		Get("/1.0/groups/{workspace}/{group}/members")
	if err := check("list group members", resp, err); err != nil {
		return false, err
	}
	var body []struct {
		AccountID string `json:"account_id"`
		UUID      string `json:"uuid"`
	}
	if err := json.Unmarshal(resp.Body(), &body); err != nil {
		return false, fmt.Errorf("decode members of %s/%s: %w", workspace, group, err)
	}
	for _, m := range body {
		if (m.AccountID != "" && m.AccountID == member) || (m.UUID != "" && sameUUID(m.UUID, member)) {
			return true, nil
		}
	}
	return false, nil
}

// sameUUID compares UUIDs with or without braces, in any case.
func sameUUID(a, b string) bool {
	trim := func(s string) string { return strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}") }
	return strings.EqualFold(trim(a), trim(b))
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
	already, err := c.writeAnswer(ctx, "invite", workspace, group, resp, err)
	if err != nil {
		return false, fmt.Errorf("invite %s to %s/%s: %w", email, workspace, group, err)
	}
	return already, nil
}

// CurrentUser returns who the credentials belong to (GET /2.0/user): the
// display name, else the username. It is the credential check of `doctor`.
func (c *Client) CurrentUser(ctx context.Context) (string, error) {
	resp, err := c.rc.R().SetContext(ctx).Get("/2.0/user")
	if err := check("get current user", resp, err); err != nil {
		return "", fmt.Errorf("who are the Bitbucket credentials: %w", err)
	}
	var body struct {
		DisplayName string `json:"display_name"`
		Username    string `json:"username"`
		UUID        string `json:"uuid"`
	}
	if err := json.Unmarshal(resp.Body(), &body); err != nil {
		return "", fmt.Errorf("decode current user: %w", err)
	}
	for _, name := range []string{body.DisplayName, body.Username, body.UUID} {
		if name != "" {
			return name, nil
		}
	}
	return "", errors.New("decode current user: the answer names nobody (no display_name, username or uuid)")
}

// Invitation is a pending invitation as Bitbucket lists it.
type Invitation struct {
	Email  string
	Groups []string // group slugs (the name when a slug is not given)
	SentOn time.Time
}

// sentOnLayouts are the forms utc_sent_on comes in: the 1.0 API's own
// ("2012-09-23 03:00:05+00:00") and RFC 3339. Fractional seconds parse with both.
var sentOnLayouts = []string{"2006-01-02 15:04:05-07:00", time.RFC3339}

func parseSentOn(v string) (time.Time, error) {
	for _, layout := range sentOnLayouts {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("utc_sent_on %q is neither \"2006-01-02 15:04:05+00:00\" nor RFC 3339", v)
}

// groupRef is one item of an invitation's groups: clients in the wild see a
// slug string or an object with slug and name.
func groupRef(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var o struct {
		Slug string `json:"slug"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		return "", fmt.Errorf("group %s is neither a string nor an object: %w", raw, err)
	}
	if o.Slug != "" {
		return o.Slug, nil
	}
	return o.Name, nil
}

// ListInvitations returns the workspace's pending invitations.
func (c *Client) ListInvitations(ctx context.Context, workspace string) ([]Invitation, error) {
	resp, err := c.rc.R().SetContext(ctx).SetPathParam("workspace", workspace).
		Get("/1.0/users/{workspace}/invitations")
	if err := check("list invitations", resp, err); err != nil {
		return nil, fmt.Errorf("list invitations of %s: %w", workspace, err)
	}
	// Decoded by hand: the answer's Content-Type is not relied upon.
	var body []struct {
		Email     string            `json:"email"`
		Groups    []json.RawMessage `json:"groups"`
		Group     json.RawMessage   `json:"group"` // older singular form
		UTCSentOn string            `json:"utc_sent_on"`
	}
	if err := json.Unmarshal(resp.Body(), &body); err != nil {
		return nil, fmt.Errorf("list invitations of %s: decode: %w", workspace, err)
	}
	out := make([]Invitation, 0, len(body))
	for _, b := range body {
		inv := Invitation{Email: b.Email}
		for _, raw := range append(b.Groups, b.Group) {
			g, err := groupRef(raw)
			if err != nil {
				return nil, fmt.Errorf("list invitations of %s: invitation for %s: %w", workspace, b.Email, err)
			}
			if g != "" && !slices.Contains(inv.Groups, g) {
				inv.Groups = append(inv.Groups, g)
			}
		}
		if b.UTCSentOn != "" {
			if inv.SentOn, err = parseSentOn(b.UTCSentOn); err != nil {
				return nil, fmt.Errorf("list invitations of %s: invitation for %s: %w", workspace, b.Email, err)
			}
		}
		out = append(out, inv)
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
		if err := check("count members", resp, err); err != nil {
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
