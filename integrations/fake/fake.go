// Package fake is an in-process stand-in for the Jira and Bitbucket Cloud
// endpoints autoinvite calls. Tests run the real clients against it, and
// `autoinvite serve` uses it as the sandbox when no credentials are set.
//
// It keeps state (users, workspace members, groups, invitations), records every
// call, can inject faults, and can validate requests against the official specs.
package fake

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// JiraUser is a user of the fake Jira.
type JiraUser struct {
	AccountID   string // Cloud
	AccountType string // Cloud: atlassian, app, customer
	Name, Key   string // Data Center
	Email       string
	EmailHidden bool // Cloud profile visibility hides the address
	DisplayName string
	Active      bool
	Groups      []string
}

// Invitation is a pending Bitbucket invitation.
type Invitation struct {
	Email  string
	Group  string
	SentOn time.Time
}

// Call is one request the fake received.
type Call struct {
	Method string
	Path   string // decoded path
	Query  string
	Body   string
	Status int
	At     time.Time // wall clock, for rate checks
}

func (c Call) String() string { return c.Method + " " + c.Path }

// Fault makes matching requests fail.
type Fault struct {
	Method     string // "" matches any
	PathPrefix string
	Status     int
	Body       string
	Delay      time.Duration // wait before answering (for client timeouts)
	Times      int           // how many requests it affects; <=0 means forever
	Header     map[string]string
	// Apply makes a delayed request take effect even when the client gave up
	// meanwhile (a slow server that still did the work).
	Apply bool
	// Rate, when set, makes the fault hit that share of matching requests (0..1)
	// using Rand; Times then counts hits.
	Rate float64
	Rand func() float64
}

type workspace struct {
	members     map[string]bool            // account ids
	groups      map[string]map[string]bool // group slug -> members
	invitations []Invitation               // oldest first
	invited     map[string]bool            // email (lower case) + "\x00" + group of pending invitations
	refuse      int                        // administered in Atlassian Administration: the status its 1.0 writes answer (0: administered in Bitbucket)
}

func invitationKey(email, group string) string { return strings.ToLower(email) + "\x00" + group }

// Fake is the fake Atlassian. The zero value is not usable: call New.
type Fake struct {
	mu         sync.Mutex
	users      []*JiraUser
	workspaces map[string]*workspace
	calls      []Call
	faults     []*Fault
	violations []string
	validate   func(*http.Request) error
	now        func() time.Time
	invTTL     time.Duration
	mux        *http.ServeMux
	dc         *dataCenter
	orgInvites []OrgInvite
	org        *orgState
	// accepted, when set, are the only Authorization headers answered: any
	// other is a revoked credential (401).
	accepted map[string]bool
}

// AcceptOnly makes the fake answer only requests with one of these
// Authorization header values, and 401 to any other, as Atlassian answers a
// revoked token. With none, every credential is accepted again.
func (f *Fake) AcceptOnly(authorization ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.accepted = nil
	for _, h := range authorization {
		if f.accepted == nil {
			f.accepted = map[string]bool{}
		}
		f.accepted[h] = true
	}
}

// InvitationTTL is how long the fake Bitbucket keeps a pending invitation
// before dropping it, as Bitbucket does; after that a new PUT sends a fresh one.
const InvitationTTL = 168 * time.Hour

// Option configures a Fake.
type Option func(*Fake)

// WithValidator checks every request (e.g. against the official OpenAPI specs);
// a request that fails is answered 400 and recorded as a violation.
func WithValidator(v func(*http.Request) error) Option { return func(f *Fake) { f.validate = v } }

// WithClock sets the clock used for invitation timestamps.
func WithClock(now func() time.Time) Option { return func(f *Fake) { f.now = now } }

// New returns an empty fake.
func New(opts ...Option) *Fake {
	f := &Fake{workspaces: map[string]*workspace{}, now: time.Now, invTTL: InvitationTTL}
	for _, o := range opts {
		o(f)
	}
	m := http.NewServeMux()
	m.HandleFunc("GET /rest/api/3/user", f.getCloudUser)
	m.HandleFunc("GET /rest/api/3/user/groups", f.getCloudUserGroups)
	m.HandleFunc("GET /rest/api/2/user", f.getDCUser)
	m.HandleFunc("GET /rest/api/3/users/search", f.listUsers(true))
	m.HandleFunc("GET /rest/api/2/user/search", f.listUsers(false))
	m.HandleFunc("GET /rest/api/3/group/member", f.groupMembers)
	m.HandleFunc("GET /2.0/workspaces/{workspace}/members/{member}", f.getMember)
	m.HandleFunc("GET /2.0/workspaces/{workspace}/members", f.listMembers)
	m.HandleFunc("GET /1.0/groups/{workspace}", f.listGroups)
	m.HandleFunc("PUT /1.0/groups/{workspace}/{group}/members/{member}", f.addToGroup)
	m.HandleFunc("DELETE /1.0/groups/{workspace}/{group}/members/{member}", f.removeFromGroup)
	m.HandleFunc("PUT /1.0/users/{workspace}/invitations", f.invite)
	m.HandleFunc("GET /1.0/users/{workspace}/invitations", f.listInvitations)
	m.HandleFunc("GET /1.0/groups/{workspace}/{group}/members", f.listGroupMembers)
	m.HandleFunc("GET /2.0/workspaces/{workspace}", f.getWorkspace)
	m.HandleFunc("GET /2.0/user", f.getCurrentUser)
	f.registerDataCenter(m)
	f.registerAdmin(m)
	f.mux = m
	return f
}

// AddJiraUser adds a user to the fake Jira.
func (f *Fake) AddJiraUser(u JiraUser) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cp := u
	f.users = append(f.users, &cp)
}

// AddWorkspace creates a workspace with the given group slugs.
func (f *Fake) AddWorkspace(slug string, groups ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ws := &workspace{members: map[string]bool{}, groups: map[string]map[string]bool{}, invited: map[string]bool{}}
	for _, g := range groups {
		ws.groups[g] = map[string]bool{}
	}
	f.workspaces[slug] = ws
}

// AddMember makes an account a member of a workspace, and of the given groups.
func (f *Fake) AddMember(slug, accountID string, groups ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ws := f.workspaces[slug]
	ws.members[accountID] = true
	for _, g := range groups {
		ws.groups[g][accountID] = true
	}
}

// Accept simulates a person accepting their invitations to a workspace: they
// become a member (under accountID) and join the groups they were invited to.
func (f *Fake) Accept(slug, email, accountID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ws := f.workspaces[slug]
	ws.members[accountID] = true
	kept := ws.invitations[:0]
	for _, inv := range ws.invitations {
		if strings.EqualFold(inv.Email, email) {
			ws.groups[inv.Group][accountID] = true
			delete(ws.invited, invitationKey(inv.Email, inv.Group))
			continue
		}
		kept = append(kept, inv)
	}
	ws.invitations = kept
}

// GroupMembers lists the members of a group, sorted.
func (f *Fake) GroupMembers(slug, group string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for m := range f.workspaces[slug].groups[group] {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// Invitations lists a workspace's pending invitations.
func (f *Fake) Invitations(slug string) []Invitation {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropExpired(f.workspaces[slug])
	return append([]Invitation(nil), f.workspaces[slug].invitations...)
}

// dropExpired forgets invitations older than the TTL. Callers hold f.mu.
func (f *Fake) dropExpired(ws *workspace) {
	now := f.now()
	if len(ws.invitations) == 0 || now.Sub(ws.invitations[0].SentOn) < f.invTTL {
		return // the oldest is still valid: so are the others
	}
	kept := ws.invitations[:0]
	for _, inv := range ws.invitations {
		if now.Sub(inv.SentOn) < f.invTTL {
			kept = append(kept, inv)
		} else {
			delete(ws.invited, invitationKey(inv.Email, inv.Group))
		}
	}
	ws.invitations = kept
}

// InjectFault adds a fault; faults are checked in the order added.
func (f *Fake) InjectFault(flt Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cp := flt
	f.faults = append(f.faults, &cp)
}

// Calls returns every request received so far.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// CallsTo returns the calls with this method and path, in order; "" matches any.
func (f *Fake) CallsTo(method, path string) []Call {
	var out []Call
	for _, c := range f.Calls() {
		if (method == "" || c.Method == method) && (path == "" || c.Path == path) {
			out = append(out, c)
		}
	}
	return out
}

// CallStrings returns "METHOD /path" for every call (query and body left out).
func (f *Fake) CallStrings() []string {
	var out []string
	for _, c := range f.Calls() {
		out = append(out, c.String())
	}
	return out
}

// ResetCalls forgets the recorded calls.
func (f *Fake) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

// Violations returns the contract violations seen (requests the validator refused).
func (f *Fake) Violations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.violations...)
}

// ServeHTTP records the call, applies faults and validation, then answers.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	received := time.Now() // as Atlassian counts: on arrival
	defer func() {
		f.mu.Lock()
		f.calls = append(f.calls, Call{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Body: string(body), Status: rec.status, At: received})
		f.mu.Unlock()
	}()
	if r.Header.Get("Authorization") == "" {
		http.Error(rec, "authentication required", http.StatusUnauthorized)
		return
	}
	f.mu.Lock()
	revoked := f.accepted != nil && !f.accepted[r.Header.Get("Authorization")]
	f.mu.Unlock()
	if revoked {
		http.Error(rec, "the credentials were revoked", http.StatusUnauthorized)
		return
	}
	if f.validate != nil {
		if err := f.validate(r); err != nil {
			f.mu.Lock()
			f.violations = append(f.violations, fmt.Sprintf("%s %s: %v", r.Method, r.URL.Path, err))
			f.mu.Unlock()
			http.Error(rec, "contract violation: "+err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	if flt := f.takeFault(r); flt != nil {
		if flt.Delay > 0 {
			if flt.Apply {
				time.Sleep(flt.Delay)
			} else {
				select {
				case <-time.After(flt.Delay):
				case <-r.Context().Done():
					return
				}
			}
		}
		if flt.Status != 0 {
			for k, v := range flt.Header {
				rec.Header().Set(k, v)
			}
			rec.Header().Set("Content-Type", "text/plain")
			rec.WriteHeader(flt.Status)
			io.WriteString(rec, flt.Body)
			return
		}
	}
	f.mux.ServeHTTP(rec, r)
}

func (f *Fake) takeFault(r *http.Request) *Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, flt := range f.faults {
		if (flt.Method == "" || flt.Method == r.Method) && strings.HasPrefix(r.URL.Path, flt.PathPrefix) {
			if flt.Rate > 0 && flt.Rand() >= flt.Rate {
				continue
			}
			if flt.Times > 0 {
				flt.Times--
				if flt.Times == 0 {
					f.faults = append(f.faults[:i], f.faults[i+1:]...)
				}
			}
			return flt
		}
	}
	return nil
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func errorJSON(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"type": "error", "error": map[string]string{"message": msg}})
}

// --- Jira ---

func (f *Fake) findUser(match func(*JiraUser) bool) *JiraUser {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, u := range f.users {
		if match(u) {
			cp := *u
			return &cp
		}
	}
	return nil
}

func (f *Fake) userJSON(r *http.Request, u *JiraUser, cloud bool) map[string]any {
	out := map[string]any{"displayName": u.DisplayName, "active": u.Active, "self": "http://" + r.Host + r.URL.Path}
	if cloud {
		out["accountId"] = u.AccountID
		out["accountType"] = u.AccountType
	} else {
		out["name"], out["key"] = u.Name, u.Key
	}
	if u.EmailHidden {
		out["emailAddress"] = nil
	} else {
		out["emailAddress"] = u.Email
	}
	if strings.Contains(r.URL.Query().Get("expand"), "groups") {
		items := []map[string]string{}
		for _, g := range u.Groups {
			items = append(items, map[string]string{"name": g})
		}
		out["groups"] = map[string]any{"size": len(items), "items": items}
	}
	return out
}

func (f *Fake) getCloudUser(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("accountId")
	if id == "" {
		errorJSON(w, http.StatusBadRequest, "accountId is required")
		return
	}
	u := f.findUser(func(u *JiraUser) bool { return u.AccountID == id })
	if u == nil {
		errorJSON(w, http.StatusNotFound, "user not found")
		return
	}
	writeJSON(w, http.StatusOK, f.userJSON(r, u, true))
}

func (f *Fake) getCloudUserGroups(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("accountId")
	u := f.findUser(func(u *JiraUser) bool { return id != "" && u.AccountID == id })
	if u == nil {
		errorJSON(w, http.StatusNotFound, "user not found")
		return
	}
	out := []map[string]string{}
	for _, g := range u.Groups {
		out = append(out, map[string]string{"name": g})
	}
	writeJSON(w, http.StatusOK, out)
}

// page returns the users matching keep, paged as Jira pages them.
func (f *Fake) page(r *http.Request, keep func(*JiraUser) bool) (out []*JiraUser, startAt, total int) {
	q := r.URL.Query()
	startAt, _ = strconv.Atoi(q.Get("startAt"))
	maxResults, err := strconv.Atoi(q.Get("maxResults"))
	if err != nil || maxResults <= 0 {
		maxResults = 50
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var all []*JiraUser
	for _, u := range f.users {
		if keep(u) {
			all = append(all, u)
		}
	}
	for i := startAt; i < len(all) && i < startAt+maxResults; i++ {
		cp := *all[i]
		out = append(out, &cp)
	}
	return out, startAt, len(all)
}

func (f *Fake) listUsers(cloud bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		users, _, _ := f.page(r, func(u *JiraUser) bool { return (u.AccountID != "") == cloud })
		out := []map[string]any{}
		for _, u := range users {
			out = append(out, f.userJSON(r, u, cloud))
		}
		writeJSON(w, http.StatusOK, out)
	}
}

func (f *Fake) groupMembers(w http.ResponseWriter, r *http.Request) {
	group := r.URL.Query().Get("groupname")
	activeOnly := r.URL.Query().Get("includeInactiveUsers") == "false"
	users, startAt, total := f.page(r, func(u *JiraUser) bool {
		return u.AccountID != "" && slices.Contains(u.Groups, group) && (u.Active || !activeOnly)
	})
	values := []map[string]any{}
	for _, u := range users {
		values = append(values, f.userJSON(r, u, true))
	}
	writeJSON(w, http.StatusOK, map[string]any{"startAt": startAt, "maxResults": len(values), "total": total,
		"isLast": startAt+len(values) >= total, "values": values})
}

func (f *Fake) getDCUser(w http.ResponseWriter, r *http.Request) {
	name, key := r.URL.Query().Get("username"), r.URL.Query().Get("key")
	u := f.findUser(func(u *JiraUser) bool {
		return (name != "" && strings.EqualFold(u.Name, name)) || (key != "" && u.Key == key)
	})
	if u == nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"errorMessages": []string{"The user does not exist"}})
		return
	}
	writeJSON(w, http.StatusOK, f.userJSON(r, u, false))
}

// --- Bitbucket ---

// inWorkspace runs fn under the lock with the request's workspace, or answers 404.
func (f *Fake) inWorkspace(w http.ResponseWriter, r *http.Request, fn func(*workspace)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ws := f.workspaces[r.PathValue("workspace")]
	if ws == nil {
		errorJSON(w, http.StatusNotFound, "workspace not found")
		return
	}
	fn(ws)
}

func (f *Fake) getMember(w http.ResponseWriter, r *http.Request) {
	f.inWorkspace(w, r, func(ws *workspace) {
		member := r.PathValue("member")
		if !ws.members[member] {
			errorJSON(w, http.StatusNotFound, "user is not a member of this workspace")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"type":      "workspace_membership",
			"user":      map[string]any{"type": "user", "account_id": member},
			"workspace": map[string]any{"type": "workspace", "slug": r.PathValue("workspace")},
		})
	})
}

func (f *Fake) listMembers(w http.ResponseWriter, r *http.Request) {
	f.inWorkspace(w, r, func(ws *workspace) {
		// Paged as Bitbucket pages: pagelen defaults to 10, at most 100.
		pagelen, page := 10, 1
		if v, err := strconv.Atoi(r.URL.Query().Get("pagelen")); err == nil && v > 0 {
			pagelen = min(v, 100)
		}
		if v, err := strconv.Atoi(r.URL.Query().Get("page")); err == nil && v > 0 {
			page = v
		}
		all := sortedKeys(ws.members)
		values := []map[string]any{}
		for _, m := range all[min((page-1)*pagelen, len(all)):min(page*pagelen, len(all))] {
			values = append(values, map[string]any{"type": "workspace_membership", "user": map[string]any{"type": "user", "account_id": m}})
		}
		body := map[string]any{"size": len(all), "page": page, "pagelen": pagelen, "values": values}
		if page*pagelen < len(all) {
			body["next"] = fmt.Sprintf("http://%s%s?page=%d&pagelen=%d", r.Host, r.URL.Path, page+1, pagelen)
		}
		writeJSON(w, http.StatusOK, body)
	})
}

func (f *Fake) listGroups(w http.ResponseWriter, r *http.Request) {
	f.inWorkspace(w, r, func(ws *workspace) {
		out := []map[string]any{}
		for _, slug := range sortedKeys(ws.groups) {
			members := []map[string]string{}
			for _, m := range sortedKeys(ws.groups[slug]) {
				members = append(members, map[string]string{"account_id": m})
			}
			out = append(out, map[string]any{"name": slug, "slug": slug, "permission": "read", "auto_add": false, "members": members})
		}
		writeJSON(w, http.StatusOK, out)
	})
}

func (f *Fake) addToGroup(w http.ResponseWriter, r *http.Request) {
	if f.refused(w, r) {
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		errorJSON(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		errorJSON(w, http.StatusBadRequest, "body must be a JSON object ({})")
		return
	}
	f.inWorkspace(w, r, func(ws *workspace) {
		group, member := ws.groups[r.PathValue("group")], r.PathValue("member")
		switch {
		case group == nil:
			errorJSON(w, http.StatusNotFound, "group not found")
		case !ws.members[member]:
			errorJSON(w, http.StatusBadRequest, "user is not a member of this workspace")
		case group[member]:
			errorJSON(w, http.StatusConflict, "user is already a member of this group")
		default:
			group[member] = true
			writeJSON(w, http.StatusOK, map[string]string{"account_id": member})
		}
	})
}

func (f *Fake) removeFromGroup(w http.ResponseWriter, r *http.Request) {
	if f.refused(w, r) {
		return
	}
	f.inWorkspace(w, r, func(ws *workspace) {
		group, member := ws.groups[r.PathValue("group")], r.PathValue("member")
		if group == nil || !group[member] {
			errorJSON(w, http.StatusNotFound, "not a member of this group")
			return
		}
		delete(group, member)
		w.WriteHeader(http.StatusNoContent)
	})
}

func (f *Fake) invite(w http.ResponseWriter, r *http.Request) {
	if f.refused(w, r) {
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		errorJSON(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	var body struct {
		Email     string `json:"email"`
		GroupSlug string `json:"group_slug"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Email == "" || body.GroupSlug == "" {
		errorJSON(w, http.StatusBadRequest, "email and group_slug are required")
		return
	}
	f.inWorkspace(w, r, func(ws *workspace) {
		if ws.groups[body.GroupSlug] == nil {
			errorJSON(w, http.StatusBadRequest, "group not found: "+body.GroupSlug)
			return
		}
		f.dropExpired(ws)
		if ws.invited[invitationKey(body.Email, body.GroupSlug)] {
			errorJSON(w, http.StatusConflict, "already invited")
			return
		}
		ws.invited[invitationKey(body.Email, body.GroupSlug)] = true
		ws.invitations = append(ws.invitations, Invitation{Email: body.Email, Group: body.GroupSlug, SentOn: f.now().UTC()})
		writeJSON(w, http.StatusOK, map[string]string{"email": body.Email, "group_slug": body.GroupSlug})
	})
}

func (f *Fake) listInvitations(w http.ResponseWriter, r *http.Request) {
	f.inWorkspace(w, r, func(ws *workspace) {
		f.dropExpired(ws)
		out := []map[string]any{}
		for _, inv := range ws.invitations {
			out = append(out, map[string]any{
				"email":       inv.Email,
				"groups":      []map[string]string{{"slug": inv.Group, "name": inv.Group}},
				"invited_by":  map[string]string{"display_name": "autoinvite", "uuid": fakeUUID("inviter")},
				"utc_sent_on": inv.SentOn.UTC().Format(SentOnLayout),
			})
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// SentOnLayout is how the 1.0 API writes timestamps ("2012-09-23 03:00:05+00:00").
const SentOnLayout = "2006-01-02 15:04:05-07:00"

// AdministerInAtlassian makes a workspace one administered in Atlassian
// Administration: its 1.0 writes (group members PUT/DELETE, invitations PUT)
// answer refuse (403, 404, 405 or 410: Atlassian does not document which),
// while its 1.0 and 2.0 GETs keep working. 0 makes it Bitbucket-administered again.
func (f *Fake) AdministerInAtlassian(slug string, refuse int) {
	switch refuse {
	case 0, http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusGone:
	default:
		panic(fmt.Sprintf("fake: AdministerInAtlassian(%q, %d): refuse must be 403, 404, 405 or 410", slug, refuse))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.workspaces[slug].refuse = refuse
}

// Administration returns the status the workspace's 1.0 writes answer when it
// is administered in Atlassian Administration, 0 when administered in Bitbucket.
func (f *Fake) Administration(slug string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.workspaces[slug].refuse
}

// refused answers a 1.0 write of a workspace administered in Atlassian
// Administration, and reports whether it did.
func (f *Fake) refused(w http.ResponseWriter, r *http.Request) bool {
	f.mu.Lock()
	refuse := 0
	if ws := f.workspaces[r.PathValue("workspace")]; ws != nil {
		refuse = ws.refuse
	}
	f.mu.Unlock()
	if refuse == 0 {
		return false
	}
	errorJSON(w, refuse, "This resource is not available for workspaces administered in Atlassian Administration")
	return true
}

func (f *Fake) listGroupMembers(w http.ResponseWriter, r *http.Request) {
	f.inWorkspace(w, r, func(ws *workspace) {
		group := ws.groups[r.PathValue("group")]
		if group == nil {
			errorJSON(w, http.StatusNotFound, "group not found")
			return
		}
		out := []map[string]string{}
		for _, m := range sortedKeys(group) {
			if strings.HasPrefix(m, "{") { // added by UUID
				out = append(out, map[string]string{"uuid": m})
			} else {
				out = append(out, map[string]string{"account_id": m, "uuid": fakeUUID(m)})
			}
		}
		writeJSON(w, http.StatusOK, out)
	})
}

func (f *Fake) getWorkspace(w http.ResponseWriter, r *http.Request) {
	f.inWorkspace(w, r, func(*workspace) {
		slug := r.PathValue("workspace")
		writeJSON(w, http.StatusOK, map[string]any{
			"type": "workspace", "uuid": fakeUUID("workspace:" + slug), "name": slug, "slug": slug, "is_private": true,
			"links": map[string]any{
				"self": map[string]string{"href": "http://" + r.Host + "/2.0/workspaces/" + slug},
				"html": map[string]string{"href": "https://bitbucket.org/" + slug + "/"},
			},
		})
	})
}

// getCurrentUser answers the account of the credentials: the Basic user, or
// one account for any bearer token.
func (f *Fake) getCurrentUser(w http.ResponseWriter, r *http.Request) {
	name, _, ok := r.BasicAuth()
	if !ok {
		name = "access token"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"type": "user", "display_name": name, "uuid": fakeUUID("user:" + name), "account_id": "557058:" + fakeUUID("account:" + name)[1:9],
	})
}

// fakeUUID is a stable, UUID-shaped id in braces derived from s.
func fakeUUID(s string) string {
	h := sha256.Sum256([]byte(s))
	x := hex.EncodeToString(h[:16])
	return "{" + x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32] + "}"
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// RoundTripper answers requests in process, without a socket: for benchmarks
// that measure autoinvite rather than loopback TCP.
func (f *Fake) RoundTripper() http.RoundTripper {
	return roundTripper{f}
}

type roundTripper struct{ f *Fake }

func (rt roundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	if r.Body == nil {
		r.Body = http.NoBody
	}
	rt.f.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}
