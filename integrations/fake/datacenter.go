package fake

import (
	"encoding/json"
	"net/http"
	"strings"
)

// dataCenter is the fake Bitbucket Data Center: users by name, groups of names.
type dataCenter struct {
	users  map[string]bool
	groups map[string]map[string]bool
}

func (f *Fake) registerDataCenter(m *http.ServeMux) {
	f.dc = &dataCenter{users: map[string]bool{}, groups: map[string]map[string]bool{}}
	m.HandleFunc("POST /rest/api/latest/admin/groups/add-users", f.dcAddUsers)
	m.HandleFunc("POST /rest/api/latest/admin/users/remove-group", f.dcRemoveGroup)
	m.HandleFunc("GET /rest/api/latest/admin/groups", f.dcGroups)
}

// dcGroups lists the groups whose names contain ?filter=, in one page.
func (f *Fake) dcGroups(w http.ResponseWriter, r *http.Request) {
	if !bearer(w, r) {
		return
	}
	filter := strings.ToLower(r.URL.Query().Get("filter"))
	f.mu.Lock()
	var values []map[string]any
	for _, g := range sortedKeys(f.dc.groups) {
		if strings.Contains(strings.ToLower(g), filter) {
			values = append(values, map[string]any{"name": g, "deletable": true})
		}
	}
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"size": len(values), "limit": 25, "start": 0, "isLastPage": true, "values": values})
}

// AddDataCenterUsers creates users in the fake Bitbucket Data Center.
func (f *Fake) AddDataCenterUsers(names ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range names {
		f.dc.users[n] = true
	}
}

// AddDataCenterGroups creates groups in the fake Bitbucket Data Center.
func (f *Fake) AddDataCenterGroups(groups ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, g := range groups {
		if f.dc.groups[g] == nil {
			f.dc.groups[g] = map[string]bool{}
		}
	}
}

// DataCenterGroupMembers lists a Data Center group's members, sorted.
func (f *Fake) DataCenterGroupMembers(group string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sortedKeys(f.dc.groups[group])
}

// ManageByOrganization makes a workspace administered in Atlassian
// Administration whose 1.0 writes answer 404 (see AdministerInAtlassian).
func (f *Fake) ManageByOrganization(slug string) {
	f.AdministerInAtlassian(slug, http.StatusNotFound)
}

// dcError answers the way Data Center does: {"errors":[{message, exceptionName}]}.
func dcError(w http.ResponseWriter, status int, msg, exception string) {
	writeJSON(w, status, map[string]any{"errors": []map[string]any{{"context": nil, "message": msg, "exceptionName": exception}}})
}

func bearer(w http.ResponseWriter, r *http.Request) bool {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		dcError(w, http.StatusUnauthorized, "an HTTP access token (Authorization: Bearer) is required", "com.atlassian.bitbucket.AuthorisationException")
		return false
	}
	return true
}

func (f *Fake) dcAddUsers(w http.ResponseWriter, r *http.Request) {
	if !bearer(w, r) {
		return
	}
	var body struct {
		Group string   `json:"group"`
		Users []string `json:"users"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Group == "" || len(body.Users) == 0 {
		dcError(w, http.StatusBadRequest, "group and users are required", "com.atlassian.bitbucket.validation.ArgumentValidationException")
		return
	}
	f.inDCGroup(w, body.Group, func(members map[string]bool) {
		// All or nothing, like Data Center: one unknown user refuses the call.
		for _, u := range body.Users {
			if !f.dc.users[u] {
				dcError(w, http.StatusNotFound, "User "+u+" does not exist.", "com.atlassian.bitbucket.user.NoSuchUserException")
				return
			}
		}
		for _, u := range body.Users {
			members[u] = true
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// inDCGroup runs fn under the lock with the group's members, or answers 404
// as Data Center does (the Data Center twin of inWorkspace).
func (f *Fake) inDCGroup(w http.ResponseWriter, group string, fn func(members map[string]bool)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	members := f.dc.groups[group]
	if members == nil {
		dcError(w, http.StatusNotFound, "Group "+group+" does not exist.", "com.atlassian.bitbucket.user.NoSuchGroupException")
		return
	}
	fn(members)
}

func (f *Fake) dcRemoveGroup(w http.ResponseWriter, r *http.Request) {
	if !bearer(w, r) {
		return
	}
	var body struct {
		Context  string `json:"context"`
		ItemName string `json:"itemName"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Context == "" || body.ItemName == "" {
		dcError(w, http.StatusBadRequest, "context (the user) and itemName (the group) are required", "com.atlassian.bitbucket.validation.ArgumentValidationException")
		return
	}
	f.inDCGroup(w, body.ItemName, func(members map[string]bool) {
		delete(members, body.Context)
		w.WriteHeader(http.StatusNoContent)
	})
}
