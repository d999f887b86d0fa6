package fake

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The fake Atlassian Organization Admin API (api.atlassian.com/admin): one
// organization with one directory, its groups, users and workspaces, and the
// v2 invite. Shapes follow shared/contracts/atlassian-admin-v2.subset.json.

// OrgInvite is one invitation call the fake organization API received.
type OrgInvite struct {
	OrgID            string
	Emails           []string // sorted
	PermissionRules  []OrgPermissionRule
	AdditionalGroups []string
	SendNotification bool
	NotificationText string
	Status           int // what the fake answered
}

// OrgPermissionRule is one permissionRules entry of an invitation.
type OrgPermissionRule struct {
	Resource string `json:"resource"`
	Role     string `json:"role"`
}

// MaxOrgEmails is the organization API's limit of emails per invitation call.
const MaxOrgEmails = 25

type orgGroup struct {
	id, name       string
	externalSynced bool
	members        map[string]bool
}

type orgUser struct {
	accountID, email string
	products         []orgProductAccess // what expand productAccess answers
}

type orgProductAccess struct {
	key, id    string
	lastActive time.Time
}

type orgWorkspace struct{ slug, resourceID string }

type orgState struct {
	id, directoryID, directoryName string
	apiKey                         string
	unpaid                         bool
	groups                         []*orgGroup // in creation order
	users                          []*orgUser  // in creation order
	workspaces                     []orgWorkspace
	failInvite                     map[string]string // lower-case email -> reason
}

func (o *orgState) groupByID(id string) *orgGroup {
	for _, g := range o.groups {
		if g.id == id {
			return g
		}
	}
	return nil
}

func (o *orgState) user(accountID string) *orgUser {
	for _, u := range o.users {
		if u.accountID == accountID {
			return u
		}
	}
	return nil
}

func (o *orgState) userByEmail(email string) *orgUser {
	for _, u := range o.users {
		if strings.EqualFold(u.email, email) {
			return u
		}
	}
	return nil
}

func (f *Fake) registerAdmin(m *http.ServeMux) {
	f.org = &orgState{failInvite: map[string]string{}}
	const base = "/admin/v2/orgs/{orgId}"
	m.HandleFunc("GET "+base+"/directories", f.adminDirectories)
	m.HandleFunc("POST "+base+"/workspaces", f.adminWorkspaces)
	m.HandleFunc("POST "+base+"/directories/{directoryId}/groups/search", f.adminGroupSearch)
	m.HandleFunc("POST "+base+"/directories/{directoryId}/groups/{groupId}/memberships", f.adminAddMember)
	m.HandleFunc("DELETE "+base+"/directories/{directoryId}/groups/{groupId}/memberships/{accountId}", f.adminRemoveMember)
	m.HandleFunc("POST "+base+"/directories/{directoryId}/users/search", f.adminUserSearch)
	m.HandleFunc("GET "+base+"/directories/{directoryId}/users/{accountId}", f.adminGetUser)
	m.HandleFunc("POST "+base+"/users/invite", f.adminInvite)
}

// AddOrganization sets up the one organization the fake Admin API serves;
// requests naming another organization id answer 404 ADMIN-404-2.
func (f *Fake) AddOrganization(orgID, directoryID, directoryName string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.org.id, f.org.directoryID, f.org.directoryName = orgID, directoryID, directoryName
}

// SetOrgAPIKey makes the Admin API accept only this Bearer key ("" accepts any).
func (f *Fake) SetOrgAPIKey(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.org.apiKey = key
}

// SetOrgPaid says whether the organization has a paid subscription (default
// true); without one the invite answers 402.
func (f *Fake) SetOrgPaid(paid bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.org.unpaid = !paid
}

// AddOrgGroup creates a group in the organization's directory and returns its
// id (UUID-shaped, deterministic: derived from a counter).
func (f *Fake) AddOrgGroup(name string, externalSynced bool) (groupID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := fmt.Sprintf("9a6c0f1e-0000-4000-8000-%012x", len(f.org.groups)+1)
	f.org.groups = append(f.org.groups, &orgGroup{id: id, name: name, externalSynced: externalSynced, members: map[string]bool{}})
	return id
}

// AddOrgUser makes an account an active member of the organization's directory.
func (f *Fake) AddOrgUser(accountID, email string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addOrgUserLocked(accountID, email)
}

func (f *Fake) addOrgUserLocked(accountID, email string) {
	if u := f.org.user(accountID); u != nil {
		u.email = email
		return
	}
	f.org.users = append(f.org.users, &orgUser{accountID: accountID, email: email})
}

// SetOrgUserActivity records a directory user's last activity in a product
// instance (key such as "bitbucket", id the instance's id), which the user
// search answers under expand productAccess.
func (f *Fake) SetOrgUserActivity(accountID, productKey, productID string, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.org.user(accountID)
	if u == nil {
		panic("fake: SetOrgUserActivity of an account not in the directory: " + accountID)
	}
	for i, p := range u.products {
		if p.key == productKey && p.id == productID {
			u.products[i].lastActive = at
			return
		}
	}
	u.products = append(u.products, orgProductAccess{key: productKey, id: productID, lastActive: at})
}

// AddOrgWorkspace adds a Bitbucket workspace to the organization; resourceID
// is what queryWorkspaces lists as its id (the invite's permission resource).
func (f *Fake) AddOrgWorkspace(slug, resourceID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.org.workspaces = append(f.org.workspaces, orgWorkspace{slug: slug, resourceID: resourceID})
}

// FailOrgInvite makes the invitation of this person come back with an ERROR
// role assignment carrying reason (the call itself still succeeds).
func (f *Fake) FailOrgInvite(email, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.org.failInvite[strings.ToLower(email)] = reason
}

// OrgGroupMembers lists the account ids in the group with this name, sorted.
func (f *Fake) OrgGroupMembers(groupName string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, g := range f.org.groups {
		if strings.EqualFold(g.name, groupName) {
			return sortedKeys(g.members)
		}
	}
	return nil
}

// AddOrgGroupMember puts a directory user in a group, as an admin would by hand.
func (f *Fake) AddOrgGroupMember(groupName, accountID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, g := range f.org.groups {
		if strings.EqualFold(g.name, groupName) {
			g.members[accountID] = true
		}
	}
}

// OrgInvites returns the invitation calls received, one per call, in order.
func (f *Fake) OrgInvites() []OrgInvite {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]OrgInvite(nil), f.orgInvites...)
}

// OrgUserByEmail returns the account id of the directory user with this email.
func (f *Fake) OrgUserByEmail(email string) (accountID string, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if u := f.org.userByEmail(email); u != nil {
		return u.accountID, true
	}
	return "", false
}

// --- answers ---

var adminErrorSeq atomic.Uint64

// adminError answers with the Admin API's error shape.
func adminError(w http.ResponseWriter, status int, code, title, detail string) {
	writeJSON(w, status, map[string]any{"errors": []map[string]any{{
		"id":     fmt.Sprintf("fake-%d", adminErrorSeq.Add(1)),
		"status": strconv.Itoa(status),
		"code":   code,
		"title":  title,
		"detail": detail,
	}}})
}

// inOrg checks the key and the organization id, then runs fn under the lock
// (before reading the body: the API refuses a bad key before a bad body).
func (f *Fake) inOrg(w http.ResponseWriter, r *http.Request, fn func(o *orgState)) {
	key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	defer f.mu.Unlock()
	if !ok || key == "" || (f.org.apiKey != "" && key != f.org.apiKey) {
		// What api.atlassian.com's proxy answers, not the errors[] shape.
		writeJSON(w, http.StatusUnauthorized, map[string]any{"code": 401, "message": "Unauthorized"})
		return
	}
	if f.org.id == "" || r.PathValue("orgId") != f.org.id {
		adminError(w, http.StatusNotFound, "ADMIN-404-2", "Organization not found", "No organization with id "+r.PathValue("orgId"))
		return
	}
	fn(f.org)
}

// inDirectory is inOrg for paths with a directoryId; dash allows "-" (all directories).
func (f *Fake) inDirectory(w http.ResponseWriter, r *http.Request, dash bool, fn func(o *orgState)) {
	f.inOrg(w, r, func(o *orgState) {
		dir := r.PathValue("directoryId")
		if dir != o.directoryID && (!dash || dir != "-") {
			adminError(w, http.StatusNotFound, "ADMIN-404-1", "Unknown resource", "No directory with id "+dir)
			return
		}
		fn(o)
	})
}

// decodeBody reads a JSON request body into v; an empty body leaves v alone.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil && !errors.Is(err, io.EOF) {
		adminError(w, http.StatusBadRequest, "ADMIN-400-24", "Invalid request body", err.Error())
		return false
	}
	return true
}

// pageCursor is what the fake's opaque cursors carry: where the next page
// starts and the filter of the first request (later ones may send only the cursor).
type pageCursor struct {
	Offset int             `json:"o"`
	Limit  int             `json:"l"`
	Query  json.RawMessage `json:"q,omitempty"`
}

func encodeCursor(c pageCursor) string {
	raw, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(raw)
}

func decodeCursor(s string) (pageCursor, error) {
	var c pageCursor
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(raw, &c)
	}
	if err == nil && (c.Offset < 0 || c.Limit <= 0) {
		err = fmt.Errorf("out of range")
	}
	return c, err
}

// paging resolves offset, limit and filter: a cursor replaces what the body
// says (as the API documents: "all other parameters are discarded").
func paging(w http.ResponseWriter, cursor string, limit, defaultLimit int, filter any) (offset, size int, ok bool) {
	if cursor == "" {
		if limit <= 0 {
			limit = defaultLimit
		}
		return 0, limit, true
	}
	c, err := decodeCursor(cursor)
	if err == nil && len(c.Query) > 0 {
		err = json.Unmarshal(c.Query, filter)
	}
	if err != nil {
		adminError(w, http.StatusBadRequest, "ADMIN-400-1", "Invalid page cursor", "cursor "+cursor+" is not valid")
		return 0, 0, false
	}
	return c.Offset, c.Limit, true
}

// window cuts [offset, offset+size) out of n items and gives the next cursor ("" on the last page).
func window(n, offset, size int, filter any) (from, to int, next string) {
	from, to = min(offset, n), min(offset+size, n)
	if to < n {
		q, _ := json.Marshal(filter)
		next = encodeCursor(pageCursor{Offset: to, Limit: size, Query: q})
	}
	return from, to, next
}

func pageLinks(next string) map[string]any {
	if next == "" {
		return map[string]any{}
	}
	return map[string]any{"next": next}
}

// --- handlers ---

func (f *Fake) adminDirectories(w http.ResponseWriter, r *http.Request) {
	f.inOrg(w, r, func(o *orgState) {
		data := []map[string]any{}
		if o.directoryID != "" {
			data = append(data, map[string]any{"directoryId": o.directoryID, "name": o.directoryName})
		}
		writeJSON(w, http.StatusOK, map[string]any{"data": data, "links": map[string]any{}})
	})
}

func (f *Fake) adminWorkspaces(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Cursor *string `json:"cursor"`
		Limit  int     `json:"limit"`
	}
	f.inOrg(w, r, func(o *orgState) {
		if !decodeBody(w, r, &body) {
			return
		}
		var filter struct{}
		offset, size, ok := paging(w, deref(body.Cursor), body.Limit, 20, &filter)
		if !ok {
			return
		}
		from, to, next := window(len(o.workspaces), offset, size, filter)
		data := []map[string]any{}
		for _, ws := range o.workspaces[from:to] {
			data = append(data, map[string]any{
				"id":   ws.resourceID,
				"type": "workspaces",
				"attributes": map[string]any{
					"name": ws.slug, "typeKey": "bitbucket", "type": "bitbucket",
					"hostUrl": "https://bitbucket.org/" + ws.slug, "status": "online",
				},
				"links": map[string]any{"self": nil},
			})
		}
		links := map[string]any{}
		if next != "" {
			// Workspaces answer with a full URL, unlike the directory searches.
			links["next"] = "http://" + r.Host + r.URL.Path + "?cursor=" + next
		}
		writeJSON(w, http.StatusOK, map[string]any{"data": data, "links": links,
			"meta": map[string]any{"pageSize": size, "total": len(o.workspaces)}})
	})
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

type groupFilter struct {
	GroupNames []string `json:"groupNames,omitempty"`
	GroupIDs   []string `json:"groupIds,omitempty"`
	SearchTerm string   `json:"searchTerm,omitempty"`
}

func (f *Fake) adminGroupSearch(w http.ResponseWriter, r *http.Request) {
	var body struct {
		groupFilter
		Cursor string `json:"cursor"`
		Limit  int    `json:"limit"`
	}
	f.inDirectory(w, r, true, func(o *orgState) {
		if !decodeBody(w, r, &body) {
			return
		}
		if len(body.GroupNames) > 0 && (body.SearchTerm != "" || len(body.GroupIDs) > 0) {
			adminError(w, http.StatusBadRequest, "ADMIN-400-24", "Invalid request body", "groupNames cannot be combined with searchTerm or groupIds")
			return
		}
		filter := body.groupFilter
		offset, size, ok := paging(w, body.Cursor, body.Limit, 20, &filter)
		if !ok {
			return
		}
		var hits []*orgGroup
		for _, g := range o.groups {
			switch {
			case len(filter.GroupNames) > 0 && !slices.ContainsFunc(filter.GroupNames, func(n string) bool { return strings.EqualFold(n, g.name) }):
			case len(filter.GroupIDs) > 0 && !slices.Contains(filter.GroupIDs, g.id):
			case filter.SearchTerm != "" && !strings.Contains(strings.ToLower(g.name), strings.ToLower(filter.SearchTerm)):
			default:
				hits = append(hits, g)
			}
		}
		from, to, next := window(len(hits), offset, size, filter)
		data := []map[string]any{}
		for _, g := range hits[from:to] {
			managedBy := "admins"
			if g.externalSynced {
				managedBy = "external"
			}
			data = append(data, map[string]any{
				"id": g.id, "name": g.name, "directoryId": o.directoryID,
				"externalSynced": g.externalSynced, "managedBy": managedBy,
				"managementAccess": map[string]any{"readable": true, "modifiable": !g.externalSynced, "deletable": !g.externalSynced},
			})
		}
		writeJSON(w, http.StatusOK, map[string]any{"data": data, "links": pageLinks(next)})
	})
}

// inGroup resolves the path's group within its directory, answering 404 as the API does.
func (f *Fake) inGroup(w http.ResponseWriter, r *http.Request, fn func(o *orgState, g *orgGroup)) {
	f.inOrg(w, r, func(o *orgState) {
		g := o.groupByID(r.PathValue("groupId"))
		if g == nil || r.PathValue("directoryId") != o.directoryID {
			adminError(w, http.StatusNotFound, "ADMIN-404-10", "Group not found",
				fmt.Sprintf("No group %s in directory %s", r.PathValue("groupId"), r.PathValue("directoryId")))
			return
		}
		if g.externalSynced {
			adminError(w, http.StatusForbidden, "ADMIN-403-5", "Not allowed to manage the group",
				"Group "+g.id+" is synced from an external directory: it is managed by your identity provider")
			return
		}
		fn(o, g)
	})
}

func (f *Fake) adminAddMember(w http.ResponseWriter, r *http.Request) {
	var body struct {
		AccountID string `json:"accountId"`
	}
	f.inGroup(w, r, func(o *orgState, g *orgGroup) {
		if !decodeBody(w, r, &body) {
			return
		}
		switch {
		case body.AccountID == "":
			adminError(w, http.StatusBadRequest, "ADMIN-400-24", "Invalid request body", "accountId is required")
		case o.user(body.AccountID) == nil:
			adminError(w, http.StatusNotFound, "ADMIN-404-8", "User not found", "No user "+body.AccountID+" in directory "+o.directoryID)
		case g.members[body.AccountID]:
			adminError(w, http.StatusConflict, "ADMIN-UAM-409-2", "Resource Conflicts", "User "+body.AccountID+" is already a member of group "+g.id)
		default:
			g.members[body.AccountID] = true
			w.WriteHeader(http.StatusNoContent)
		}
	})
}

func (f *Fake) adminRemoveMember(w http.ResponseWriter, r *http.Request) {
	f.inGroup(w, r, func(o *orgState, g *orgGroup) {
		id := r.PathValue("accountId")
		if o.user(id) == nil {
			adminError(w, http.StatusNotFound, "ADMIN-404-8", "User not found", "No user "+id+" in directory "+o.directoryID)
			return
		}
		delete(g.members, id) // not a member: nothing to do, still 204
		w.WriteHeader(http.StatusNoContent)
	})
}

type userFilter struct {
	AccountIDs []string `json:"accountIds,omitempty"`
	GroupIDs   []string `json:"groupIds,omitempty"`
	Emails     []string `json:"emails,omitempty"`
	SearchTerm string   `json:"searchTerm,omitempty"`
	Expand     []string `json:"expand,omitempty"`
}

func (f *Fake) adminUserSearch(w http.ResponseWriter, r *http.Request) {
	var body struct {
		userFilter
		Cursor string `json:"cursor"`
		Limit  int    `json:"limit"`
	}
	f.inDirectory(w, r, true, func(o *orgState) {
		if !decodeBody(w, r, &body) {
			return
		}
		if len(body.Emails) > 0 && body.SearchTerm != "" {
			adminError(w, http.StatusBadRequest, "ADMIN-400-24", "Invalid request body", "emails and searchTerm are mutually exclusive")
			return
		}
		filter := body.userFilter
		offset, size, ok := paging(w, body.Cursor, body.Limit, 50, &filter)
		if !ok {
			return
		}
		var hits []*orgUser
		for _, u := range o.users {
			switch {
			case len(filter.AccountIDs) > 0 && !slices.Contains(filter.AccountIDs, u.accountID):
			case len(filter.GroupIDs) > 0 && !slices.ContainsFunc(filter.GroupIDs, func(id string) bool { g := o.groupByID(id); return g != nil && g.members[u.accountID] }):
			case len(filter.Emails) > 0 && !slices.ContainsFunc(filter.Emails, func(e string) bool { return strings.EqualFold(e, u.email) }):
			case filter.SearchTerm != "" && !strings.Contains(strings.ToLower(u.email), strings.ToLower(filter.SearchTerm)):
			default:
				hits = append(hits, u)
			}
		}
		from, to, next := window(len(hits), offset, size, filter)
		data := []map[string]any{}
		for _, u := range hits[from:to] {
			m := orgUserJSON(u)
			if slices.Contains(filter.Expand, "groups") {
				groups := []map[string]any{}
				for _, g := range o.groups {
					if g.members[u.accountID] {
						groups = append(groups, map[string]any{"id": g.id, "name": g.name})
					}
				}
				m["groups"] = groups
			}
			if slices.Contains(filter.Expand, "productAccess") {
				products := []map[string]any{}
				for _, p := range u.products {
					products = append(products, map[string]any{"key": p.key, "id": p.id, "lastActiveTimestamp": p.lastActive.UTC().Format(time.RFC3339Nano)})
				}
				m["productAccess"] = products
			}
			data = append(data, m)
		}
		writeJSON(w, http.StatusOK, map[string]any{"data": data, "links": pageLinks(next)})
	})
}

func orgUserJSON(u *orgUser) map[string]any {
	name, _, _ := strings.Cut(u.email, "@")
	return map[string]any{
		"accountId": u.accountID, "accountType": "atlassian", "email": u.email, "name": name,
		"accountStatus": "active", "membershipStatus": "active", "status": "active",
	}
}

func (f *Fake) adminGetUser(w http.ResponseWriter, r *http.Request) {
	f.inDirectory(w, r, true, func(o *orgState) {
		u := o.user(r.PathValue("accountId"))
		if u == nil {
			adminError(w, http.StatusNotFound, "ADMIN-404-8", "User not found", "No user "+r.PathValue("accountId"))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"data": orgUserJSON(u)})
	})
}

var orgEmail = regexp.MustCompile(`^[^@\s,]+@[^@\s,]+\.[^@\s,]+$`)

// InvitedAccountID is the account the fake's organization invitation
// creates for an email it does not know: a test can send the person's
// signup under it (one Atlassian account in Jira, Bitbucket and the
// directory, as in real life).
func InvitedAccountID(email string) string { return invitedAccountID(email) }

// invitedAccountID is the account a new invitee gets: stable per email.
func invitedAccountID(email string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(email)))
	return "invited-" + hex.EncodeToString(sum[:6])
}

func (f *Fake) adminInvite(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Emails           []string            `json:"emails"`
		PermissionRules  []OrgPermissionRule `json:"permissionRules"`
		AdditionalGroups []string            `json:"additionalGroups"`
		SendNotification bool                `json:"sendNotification"`
		NotificationText string              `json:"notificationText"`
	}
	f.inOrg(w, r, func(o *orgState) {
		if !decodeBody(w, r, &body) {
			return
		}
		emails := slices.Clone(body.Emails)
		sort.Strings(emails)
		rec := OrgInvite{OrgID: o.id, Emails: emails, PermissionRules: body.PermissionRules,
			AdditionalGroups: body.AdditionalGroups, SendNotification: body.SendNotification, NotificationText: body.NotificationText}
		status := f.answerInvite(w, o, body.Emails, body.PermissionRules, body.AdditionalGroups)
		rec.Status = status
		f.orgInvites = append(f.orgInvites, rec)
	})
}

// answerInvite validates and applies one invite call; it returns the status it wrote.
func (f *Fake) answerInvite(w http.ResponseWriter, o *orgState, emails []string, rules []OrgPermissionRule, groups []string) int {
	fail := func(status int, code, title, detail string) int {
		adminError(w, status, code, title, detail)
		return status
	}
	switch {
	case len(emails) == 0:
		return fail(http.StatusBadRequest, "ADMIN-UAM-400-1", "Bad Request", "emails is required")
	case len(emails) > MaxOrgEmails:
		return fail(http.StatusBadRequest, "ADMIN-UAM-400-1", "Bad Request", fmt.Sprintf("at most %d emails per invitation, got %d", MaxOrgEmails, len(emails)))
	}
	for _, e := range emails {
		if !orgEmail.MatchString(e) {
			return fail(http.StatusBadRequest, "ADMIN-UAM-400-1", "Bad Request", "invalid email: "+e)
		}
	}
	if o.unpaid {
		return fail(http.StatusPaymentRequired, "ADMIN-UAM-402-1", "Payment Required", "This API is only available to organizations with at least one paid subscription")
	}
	for _, rule := range rules {
		if !slices.ContainsFunc(o.workspaces, func(ws orgWorkspace) bool { return ws.resourceID == rule.Resource }) {
			return fail(http.StatusNotFound, "ADMIN-UAM-404-1", "Unknown Resource", "No resource "+rule.Resource+" in organization "+o.id)
		}
	}
	data := []map[string]any{}
	for _, email := range emails {
		reason, failed := o.failInvite[strings.ToLower(email)]
		roles, groupResults := []map[string]any{}, []map[string]any{}
		accountID := ""
		if failed {
			if len(rules) == 0 {
				roles = append(roles, map[string]any{"status": "ERROR", "statusReason": reason})
			}
			for _, rule := range rules {
				roles = append(roles, map[string]any{"resource": rule.Resource, "role": rule.Role, "status": "ERROR", "statusReason": reason})
			}
		} else {
			u := o.userByEmail(email)
			if u == nil {
				u = &orgUser{accountID: invitedAccountID(email), email: email}
				o.users = append(o.users, u)
			}
			accountID = u.accountID
			for _, rule := range rules {
				roles = append(roles, map[string]any{"resource": rule.Resource, "role": rule.Role, "status": "INVITED", "statusReason": nil})
			}
			for _, id := range groups {
				g := o.groupByID(id)
				if g == nil {
					groupResults = append(groupResults, map[string]any{"group": id, "status": "ERROR", "statusReason": "Group not found"})
					continue
				}
				g.members[u.accountID] = true
				groupResults = append(groupResults, map[string]any{"group": id, "status": "INVITED", "statusReason": nil})
			}
		}
		entry := map[string]any{"email": email, "results": []map[string]any{{"roleAssignmentResult": roles, "groupAssignmentResult": groupResults}}}
		if accountID != "" {
			entry["id"] = accountID
		}
		data = append(data, entry)
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": data})
	return http.StatusOK
}
