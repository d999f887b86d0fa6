package app

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/autoinvite/autoinvite/ledger"
	"github.com/autoinvite/autoinvite/metrics"
	"github.com/autoinvite/autoinvite/notify"
)

//go:embed ledgerview/*.html
var ledgerViewFS embed.FS

// maxListed bounds the rows of one ledger page.
const maxListed = 500

// ledgerView serves /ledger/: the ledger in a browser, for admins.
type ledgerView struct {
	a    *App
	tmpl *template.Template
}

// routeLedger serves the ledger view behind the admin credentials.
func (a *App) routeLedger(mux *http.ServeMux, admin *adminAuth) {
	v := &ledgerView{a: a, tmpl: template.Must(template.New("").Funcs(template.FuncMap{
		"join":       func(s []string) string { return strings.Join(s, ", ") },
		"when":       func(t time.Time) string { return fmtTime(t) },
		"personLink": personLink,
		"statusClass": func(s any) string {
			return "st-" + strings.ReplaceAll(fmt.Sprint(s), "_", "-")
		},
	}).ParseFS(ledgerViewFS, "ledgerview/*.html"))}
	mux.Handle("/ledger/", admin.wrap(v))
}

func (v *ledgerView) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	var (
		name   string
		data   any
		status = http.StatusOK
		err    error
	)
	switch r.URL.Path {
	case "/ledger/":
		name = "list.html"
		data, err = v.list(ctx, r.URL.Query())
	case "/ledger/person":
		name = "person.html"
		var found bool
		data, found, err = v.person(ctx, r.URL.Query())
		if err == nil && !found {
			status = http.StatusNotFound
		}
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil {
		v.a.log.Error().Err(err).Str("path", r.URL.Path).Msg("ledger view")
		http.Error(w, "cannot read the ledger: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	var buf bytes.Buffer
	if err := v.tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		v.a.log.Error().Err(err).Str("template", name).Msg("ledger view")
		http.Error(w, "cannot render the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// Page is what every page shows around its content.
type Page struct {
	Title string
	Queue string // the events queue, for links to the Asynq dashboard
	Now   time.Time
}

// row is one person in one workspace.
type row struct {
	Link, Label, Name, PersonID, Workspace, Status string
	Granted, Waiting                               []string
	PendingAge, LastError, Updated                 string
}

type pendingRow struct {
	Link, Label, Workspace, Group, Age, Sent, Expires string
	Resends                                           int
}

type bucket struct {
	Label string
	Count int
}

type listPage struct {
	Page
	Q, Workspace, Status string
	Workspaces, Statuses []string
	Rows                 []row
	Matched              int
	Truncated            bool
	Pending              []pendingRow
	Buckets              []bucket
}

var allStatuses = []ledger.Status{
	ledger.StatusGranted, ledger.StatusInvited, ledger.StatusWaitingForEmail, ledger.StatusFailed, ledger.StatusExcluded,
	ledger.StatusExpired, ledger.StatusCancelled, ledger.StatusRevoked, ledger.StatusRevocationHeld, ledger.StatusSeatLimit,
	ledger.StatusBatched, ledger.StatusUserMissing,
}

func (v *ledgerView) list(ctx context.Context, q url.Values) (listPage, error) {
	now := v.a.now()
	p := listPage{
		Page: Page{Title: "Ledger", Queue: v.a.queue, Now: now},
		Q:    strings.TrimSpace(q.Get("q")), Workspace: q.Get("workspace"), Status: q.Get("status"),
	}
	for _, s := range allStatuses {
		p.Statuses = append(p.Statuses, string(s))
	}
	st := v.a.current.Load().ledger
	entries, err := st.List(ctx, p.Workspace)
	if err != nil {
		return p, err
	}
	all, err := st.List(ctx, "")
	if err != nil {
		return p, err
	}
	seen := map[string]bool{}
	for _, ws := range v.a.current.Load().cfg.Workspaces {
		seen[ws.Workspace] = true
	}
	for _, e := range all {
		seen[e.Workspace] = true
	}
	for ws := range seen {
		p.Workspaces = append(p.Workspaces, ws)
	}
	slices.Sort(p.Workspaces)

	needle := strings.ToLower(p.Q)
	for _, e := range entries {
		if p.Status != "" && string(e.Status) != p.Status {
			continue
		}
		if needle != "" && !matches(e, needle) {
			continue
		}
		p.Matched++
		if len(p.Rows) >= maxListed {
			p.Truncated = true
			continue
		}
		r := row{
			Link: personLink(e.PersonID, ""), Label: label(e), Name: e.DisplayName, PersonID: e.PersonID,
			Workspace: e.Workspace, Status: string(e.Status), Granted: e.Granted, Waiting: e.Waiting,
			LastError: e.LastError, Updated: fmtTime(e.UpdatedAt),
		}
		if pend := ledger.PendingOf(e); len(pend) > 0 {
			r.PendingAge = fmtAge(pend[0].Age(now))
		}
		p.Rows = append(p.Rows, r)
	}

	pending, err := st.PendingInvitations(ctx)
	if err != nil {
		return p, err
	}
	counts := map[string]int{}
	for _, pi := range pending {
		if p.Workspace != "" && pi.Workspace != p.Workspace {
			continue
		}
		counts[metrics.AgeBucket(pi.Age(now))]++
		p.Pending = append(p.Pending, pendingView(pi, now))
	}
	for _, b := range metrics.PendingAgeBuckets {
		p.Buckets = append(p.Buckets, bucket{Label: b.Label, Count: counts[b.Label]})
	}
	return p, nil
}

func matches(e *ledger.Entry, needle string) bool {
	for _, f := range []string{e.Email, e.DisplayName, e.PersonID, e.AccountID, e.JiraUser} {
		if f != "" && strings.Contains(strings.ToLower(f), needle) {
			return true
		}
	}
	return false
}

func pendingView(pi ledger.Pending, now time.Time) pendingRow {
	return pendingRow{
		Link: personLink(pi.PersonID, pi.Workspace), Label: labelOf(pi.Email, pi.DisplayName, pi.PersonID),
		Workspace: pi.Workspace, Group: pi.Group, Age: fmtAge(pi.Age(now)), Sent: fmtTime(pi.SentAt),
		Expires: fmtTime(pi.ExpiresAt), Resends: pi.Resends,
	}
}

type ruleGroups struct {
	Group string
	Rules []string
}

type entryView struct {
	*ledger.Entry
	Rules   []ruleGroups
	Pending []pendingRow
	History []ledger.Event // newest first
}

type personPage struct {
	Page
	PersonID, Label, AccountID, Email, Name string
	Focus                                   string // the workspace the link named
	Entries                                 []entryView
	Audit                                   []ledger.AuditRecord
}

func (v *ledgerView) person(ctx context.Context, q url.Values) (personPage, bool, error) {
	now := v.a.now()
	id := strings.TrimSpace(q.Get("id"))
	p := personPage{Page: Page{Title: "Person", Queue: v.a.queue, Now: now}, PersonID: id, Label: id, Focus: q.Get("workspace")}
	if id == "" {
		return p, false, nil
	}
	st := v.a.current.Load().ledger
	if strings.Contains(id, "@") { // an email works too
		pid, err := st.PersonByEmail(ctx, id)
		if err != nil {
			return p, false, err
		}
		if pid != "" {
			id, p.PersonID = pid, pid
		}
	}
	entries, err := st.Person(ctx, id)
	if err != nil {
		return p, false, err
	}
	if p.Audit, err = st.AuditOf(ctx, id, 200); err != nil {
		return p, false, err
	}
	for _, e := range entries {
		ev := entryView{Entry: e}
		for _, g := range slices.Sorted(mapKeys(e.RulesByGroup)) {
			ev.Rules = append(ev.Rules, ruleGroups{Group: g, Rules: e.RulesByGroup[g]})
		}
		for _, pi := range ledger.PendingOf(e) {
			ev.Pending = append(ev.Pending, pendingView(pi, now))
		}
		for _, r := range p.Audit { // the story is the audit stream's
			if r.Workspace == e.Workspace {
				ev.History = append(ev.History, ledger.EventOf(r))
			}
		}
		p.Entries = append(p.Entries, ev)
		p.Label, p.Email, p.Name = label(e), e.Email, e.DisplayName
		if e.AccountID != "" {
			p.AccountID = e.AccountID
		}
	}
	if p.AccountID == "" {
		p.AccountID = notify.AccountID(id)
	}
	if p.Email == "" && len(p.Audit) > 0 {
		p.Email = p.Audit[0].Email
	}
	return p, len(entries) > 0 || len(p.Audit) > 0, nil
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func label(e *ledger.Entry) string { return labelOf(e.Email, e.DisplayName, e.PersonID) }

func labelOf(email, name, id string) string {
	switch {
	case email != "":
		return email
	case name != "":
		return name
	}
	return id
}

func personLink(id, workspace string) string {
	q := url.Values{"id": {id}}
	if workspace != "" {
		q.Set("workspace", workspace)
	}
	return "/ledger/person?" + q.Encode()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// fmtAge is a short age: "3d 4h", "5h 12m", "40m".
func fmtAge(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	days, hours, mins := int(d/(24*time.Hour)), int(d/time.Hour)%24, int(d/time.Minute)%60
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh", days, hours)
	case hours > 0:
		return fmt.Sprintf("%dh %dm", hours, mins)
	}
	return fmt.Sprintf("%dm", mins)
}

// withLedgerLink puts a link to the ledger view on the Asynq dashboard's
// pages (its single-page app's index): from a queue to the people.
func withLedgerLink(next http.Handler) http.Handler {
	const link = `<a href="/ledger/" style="position:fixed;right:16px;bottom:16px;z-index:9999;padding:8px 14px;border-radius:6px;background:#1d4ed8;color:#fff;font:600 14px system-ui,sans-serif;text-decoration:none;box-shadow:0 2px 8px rgba(0,0,0,.3)">autoinvite ledger →</a>`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if r.Method != http.MethodGet || strings.HasPrefix(p, "/monitoring/api/") || strings.Contains(p[strings.LastIndexByte(p, '/')+1:], ".") {
			next.ServeHTTP(w, r)
			return
		}
		rec := &bufferedWriter{header: http.Header{}, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		body := rec.buf.Bytes()
		if i := bytes.LastIndex(body, []byte("</body>")); i >= 0 && rec.status == http.StatusOK {
			body = append(body[:i:i], append([]byte(link), body[i:]...)...)
			rec.header.Del("Content-Length")
			if rec.header.Get("Content-Type") == "" {
				rec.header.Set("Content-Type", "text/html; charset=utf-8")
			}
		}
		for k, vs := range rec.header {
			w.Header()[k] = vs
		}
		w.WriteHeader(rec.status)
		w.Write(body)
	})
}

type bufferedWriter struct {
	header http.Header
	status int
	wrote  bool
	buf    bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header { return b.header }
func (b *bufferedWriter) WriteHeader(code int) {
	if !b.wrote {
		b.status, b.wrote = code, true
	}
}
func (b *bufferedWriter) Write(p []byte) (int, error) {
	b.wrote = true
	return b.buf.Write(p)
}
