// Package doctor is the live preflight an admin runs before going live: it
// checks every credential, workspace, group and organization the config
// names, with read-only calls, and says how to fix what fails.
package doctor

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/integrations/atlassian"
	"github.com/autoinvite/autoinvite/integrations/bitbucket"
	"github.com/autoinvite/autoinvite/integrations/jira"
	"github.com/autoinvite/autoinvite/integrations/organization"
	"github.com/autoinvite/autoinvite/ledger"
)

// Results of a check.
const (
	OK   = "ok"
	Fail = "FAIL"
	Warn = "warn"
)

// Check is one line of the report.
type Check struct {
	Name   string
	Result string
	Detail string // what was found, or how to fix it
}

// Report is every check, in order.
type Report struct{ Checks []Check }

// Failed reports whether any check failed.
func (r Report) Failed() bool {
	return slices.ContainsFunc(r.Checks, func(c Check) bool { return c.Result == Fail })
}

// Write prints the report as a table and a closing line.
func (r Report) Write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT\tDETAIL / HOW TO FIX")
	failed, warned := 0, 0
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, c.Result, c.Detail)
		switch c.Result {
		case Fail:
			failed++
		case Warn:
			warned++
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%d checks: %d failed, %d warnings\n", len(r.Checks), failed, warned)
	return err
}

// Jira is the read doctor makes on Jira.
type Jira interface {
	ListUsers(ctx context.Context, group string, startAt, maxResults int) (jira.Page, error)
}

// Bitbucket is what doctor reads from Bitbucket Cloud.
type Bitbucket interface {
	CurrentUser(ctx context.Context) (string, error)
	WorkspaceExists(ctx context.Context, workspace string) (bool, error)
	ListGroups(ctx context.Context, workspace string) ([]bitbucket.Group, error)
}

// DataCenter is what doctor reads from Bitbucket Data Center.
type DataCenter interface {
	GroupExists(ctx context.Context, group string) (bool, error)
}

// Organization is what doctor reads from the Organization Admin API.
type Organization interface {
	OrgID() string
	Directories(ctx context.Context) ([]organization.Directory, error)
	FindGroups(ctx context.Context, names []string) (map[string]organization.Group, error)
	FindWorkspace(ctx context.Context, slug string) (organization.Workspace, error)
}

// Options are the config and the clients to check with. A nil client means
// its credential is missing; MissingSecrets says which.
type Options struct {
	Config *config.Config
	// WebhookSecrets is how many webhook secrets are accepted (0: unset;
	// more than one during a rotation).
	WebhookSecrets int
	// Ping reaches the configured Redis (nil: embedded).
	Ping func(ctx context.Context) error
	// RedisPasswordFromEnv: AUTOINVITE_REDIS_PASSWORD (or its _FILE) is set.
	RedisPasswordFromEnv bool
	// Learned returns what the service learned about a workspace's
	// administration (nil func: Redis unreachable or embedded).
	Learned    func(ctx context.Context, workspace string) (*ledger.Administration, error)
	Jira       Jira
	Bitbucket  Bitbucket
	DataCenter func(workspace string) DataCenter
	Org        func(workspace string) Organization
	// MissingSecrets maps a client ("jira", "bitbucket", a workspace) to the
	// reason its credential is missing.
	MissingSecrets map[string]string
}

type run struct {
	o      Options
	checks []Check
	orgOK  map[string]bool // org id -> its credentials work
}

func (r *run) add(name, result, detail string) {
	r.checks = append(r.checks, Check{name, result, detail})
}

// Run performs every check. It never writes to Atlassian.
func Run(ctx context.Context, o Options) Report {
	r := &run{o: o, orgOK: map[string]bool{}}
	cfg := o.Config
	n := 0
	for _, ws := range cfg.Workspaces {
		n += len(ws.Rules)
	}
	r.add("config", OK, fmt.Sprintf("%s: %d workspaces, %d rules", orDash(cfg.Source), len(cfg.Workspaces), n))
	switch {
	case o.WebhookSecrets > 1:
		r.add("webhook secret", Warn, fmt.Sprintf("AUTOINVITE_JIRA_WEBHOOK_SECRET holds %d secrets, each accepted (a rotation): "+
			"once the Jira webhook signs with the new one, remove the old line and reload", o.WebhookSecrets))
	case o.WebhookSecrets == 1:
		r.add("webhook secret", OK, "AUTOINVITE_JIRA_WEBHOOK_SECRET is set: unsigned webhooks are refused")
	default:
		r.add("webhook secret", Fail, "AUTOINVITE_JIRA_WEBHOOK_SECRET is not set: anyone could post signups; set it to the secret of the Jira webhook")
	}
	r.redis(ctx)
	r.jira(ctx)
	cloud := slices.ContainsFunc(cfg.Workspaces, func(ws config.Workspace) bool { return !ws.Bitbucket.DataCenter() })
	if cloud {
		r.bitbucket(ctx)
	}
	for i := range cfg.Workspaces {
		r.workspace(ctx, i, &cfg.Workspaces[i])
	}
	return Report{Checks: r.checks}
}

func (r *run) redis(ctx context.Context) {
	if r.o.Ping == nil {
		r.add("redis", Warn, "embedded in-process Redis: fine for a demo, lost on restart; set redis.url (or AUTOINVITE_REDIS_URL) for production")
		return
	}
	if err := r.o.Ping(ctx); err != nil {
		r.add("redis", Fail, fmt.Sprintf("%v: check redis.url and AUTOINVITE_REDIS_PASSWORD", err))
	} else {
		r.add("redis", OK, "reachable")
	}
	r.redisPasswordInFile()
}

// redisPasswordInFile warns about a password written into the config file's
// redis.url: a secret in a file that is often shared or committed, and one
// a reload cannot rotate.
func (r *run) redisPasswordInFile() {
	cfg := r.o.Config
	u, err := url.Parse(cfg.Redis.URL)
	if err != nil || u.User == nil || cfg.SetByEnv("redis.url") != "" {
		return
	}
	if password, set := u.User.Password(); !set || password == "" {
		return
	}
	if r.o.RedisPasswordFromEnv {
		r.add("redis password", Warn, "redis.url in the config file carries a password, which "+config.RedisPasswordEnv+" overrides: remove it from the file")
		return
	}
	r.add("redis password", Warn, "redis.url in the config file carries a password: move it to "+config.RedisPasswordEnv+"_FILE "+
		"(or the variable), which overrides it and which a reload rotates")
}

func (r *run) jira(ctx context.Context) {
	if r.o.Jira == nil {
		r.add("jira credentials", Fail, r.o.MissingSecrets["jira"])
		return
	}
	if _, err := r.o.Jira.ListUsers(ctx, "", 0, 1); err != nil {
		r.add("jira credentials", Fail, explain(err, "check jira.base_url and AUTOINVITE_JIRA_EMAIL/AUTOINVITE_JIRA_API_TOKEN (Cloud) or AUTOINVITE_JIRA_BEARER_TOKEN (Data Center)"))
		return
	}
	r.add("jira credentials", OK, "can list users")
}

func (r *run) bitbucket(ctx context.Context) {
	if r.o.Bitbucket == nil {
		r.add("bitbucket credentials", Fail, r.o.MissingSecrets["bitbucket"])
		return
	}
	who, err := r.o.Bitbucket.CurrentUser(ctx)
	if err != nil {
		r.add("bitbucket credentials", Fail, explain(err, "set AUTOINVITE_BITBUCKET_EMAIL + AUTOINVITE_BITBUCKET_API_TOKEN (an Atlassian API token; app passwords are gone) or AUTOINVITE_BITBUCKET_ACCESS_TOKEN"))
		return
	}
	r.add("bitbucket credentials", OK, "authenticated as "+who)
}

func (r *run) workspace(ctx context.Context, i int, ws *config.Workspace) {
	name := "workspace " + ws.Workspace
	groups := ruleGroups(ws)
	if ws.Bitbucket.DataCenter() {
		r.dataCenter(ctx, name, ws, groups)
		return
	}
	if r.o.Bitbucket != nil {
		exists, err := r.o.Bitbucket.WorkspaceExists(ctx, ws.Workspace)
		switch {
		case err != nil:
			r.add(name, Fail, explain(err, ""))
			return
		case !exists:
			r.add(name, Fail, fmt.Sprintf("does not exist in Bitbucket Cloud (or the credentials cannot see it): check workspaces[%d].workspace, the slug in bitbucket.org/<slug>", i))
			return
		}
		r.add(name, OK, "exists in Bitbucket Cloud")
	}
	org := r.organization(ctx, i, ws)
	atl := r.administration(ctx, i, ws, org)
	if atl {
		r.orgGroups(ctx, name, ws, org, groups)
		r.resource(ctx, i, name, ws, org)
		return
	}
	r.cloudGroups(ctx, name, ws, groups)
}

// administration reports (and checks) where the workspace is administered;
// it says so when only the first refused write will tell.
func (r *run) administration(ctx context.Context, i int, ws *config.Workspace, org Organization) bool {
	name := "workspace " + ws.Workspace + " administration"
	switch ws.Administration {
	case config.AdministrationAtlassian:
		r.add(name, OK, "atlassian (configured): groups and invitations through the Organization Admin API")
		return true
	case config.AdministrationBitbucket:
		r.add(name, OK, "bitbucket (configured): groups and invitations through Bitbucket's 1.0 API")
		return false
	}
	if r.o.Learned != nil {
		a, err := r.o.Learned(ctx, ws.Workspace)
		if err == nil && a != nil && a.Kind == config.AdministrationAtlassian {
			detail := fmt.Sprintf("atlassian (learned %s: %s)", a.At.UTC().Format("2006-01-02 15:04"), a.Reason)
			if org == nil {
				r.add(name, Fail, detail+"; add an organization block to workspaces["+fmt.Sprint(i)+"]")
				return false
			}
			r.add(name, OK, detail)
			return true
		}
	}
	r.add(name, Warn, "undetermined (administration: auto): Bitbucket's 1.0 API is tried first and the first refused write switches to the Admin API"+
		orgHint(org)+"; admin.atlassian.com → Products shows which, then set administration: atlassian or bitbucket")
	return false
}

func orgHint(org Organization) string {
	if org == nil {
		return ", which then needs an organization block"
	}
	return ""
}

// organization checks the workspace's organization credentials (once per
// organization) and returns its client when it works.
func (r *run) organization(ctx context.Context, i int, ws *config.Workspace) Organization {
	if ws.Organization == nil {
		return nil
	}
	name := "organization " + ws.Organization.ID
	var org Organization
	if r.o.Org != nil {
		org = r.o.Org(ws.Workspace)
	}
	if org == nil {
		r.add(name, Fail, r.o.MissingSecrets[ws.Workspace])
		return nil
	}
	if ok, seen := r.orgOK[ws.Organization.ID]; seen {
		if ok {
			return org
		}
		return nil
	}
	dirs, err := org.Directories(ctx)
	r.orgOK[ws.Organization.ID] = err == nil
	if err != nil {
		r.add(name, Fail, explain(err, fmt.Sprintf("check workspaces[%d].organization.id and the API key in %s", i, ws.Organization.APIKeyEnv)))
		return nil
	}
	names := make([]string, len(dirs))
	for j, d := range dirs {
		names[j] = d.Name
	}
	r.add(name, OK, fmt.Sprintf("API key accepted; directories: %s", strings.Join(names, ", ")))
	return org
}

func (r *run) orgGroups(ctx context.Context, name string, ws *config.Workspace, org Organization, groups []string) {
	if org == nil {
		return
	}
	var search []string
	for _, g := range groups {
		if id := ws.Organization.Groups[g]; id != "" {
			r.add(name+" group "+g, OK, "organization group id "+id+" (organization.groups)")
		} else {
			search = append(search, g)
		}
	}
	if len(search) == 0 {
		return
	}
	found, err := org.FindGroups(ctx, search)
	if err != nil {
		r.add(name+" groups", Fail, explain(err, ""))
		return
	}
	for _, g := range search {
		got, ok := found[strings.ToLower(g)]
		switch {
		case !ok:
			r.add(name+" group "+g, Fail, fmt.Sprintf("not found in organization %s: create it in admin.atlassian.com → Directory → Groups or fix the rule", org.OrgID()))
		case got.ExternalSynced:
			r.add(name+" group "+g, Fail, "managed by your identity provider (synced): autoinvite cannot change its members; name another group")
		default:
			r.add(name+" group "+g, OK, fmt.Sprintf("id %s in directory %s", got.ID, got.DirectoryID))
		}
	}
}

func (r *run) resource(ctx context.Context, i int, name string, ws *config.Workspace, org Organization) {
	if org == nil {
		return
	}
	if id := ws.Organization.WorkspaceResourceID; id != "" {
		r.add(name+" resource id", OK, id+" (organization.workspace_resource_id)")
		return
	}
	found, err := org.FindWorkspace(ctx, ws.Workspace)
	if err != nil {
		r.add(name+" resource id", Fail, explain(err, fmt.Sprintf("set workspaces[%d].organization.workspace_resource_id", i)))
		return
	}
	r.add(name+" resource id", OK, found.ID)
}

func (r *run) cloudGroups(ctx context.Context, name string, ws *config.Workspace, groups []string) {
	if r.o.Bitbucket == nil {
		return
	}
	have, err := r.o.Bitbucket.ListGroups(ctx, ws.Workspace)
	if err != nil {
		r.add(name+" groups", Fail, explain(err, "the Bitbucket credentials need admin rights on the workspace"))
		return
	}
	var slugs []string
	for _, g := range have {
		slugs = append(slugs, g.Slug)
	}
	for _, g := range groups {
		if slices.Contains(slugs, g) {
			r.add(name+" group "+g, OK, "exists")
		} else {
			r.add(name+" group "+g, Fail, fmt.Sprintf("no such group slug (the workspace has: %s): fix the rule or create the group", strings.Join(slugs, ", ")))
		}
	}
}

func (r *run) dataCenter(ctx context.Context, name string, ws *config.Workspace, groups []string) {
	var dc DataCenter
	if r.o.DataCenter != nil {
		dc = r.o.DataCenter(ws.Workspace)
	}
	if dc == nil {
		r.add(name, Fail, r.o.MissingSecrets[ws.Workspace])
		return
	}
	for i, g := range groups {
		exists, err := dc.GroupExists(ctx, g)
		switch {
		case err != nil:
			r.add(name+" group "+g, Fail, explain(err, "the HTTP access token in "+ws.Bitbucket.TokenEnv+" needs ADMIN permission"))
			if i == 0 && atlassian.StatusOf(err) == 401 {
				return
			}
		case !exists:
			r.add(name+" group "+g, Fail, "not found in Bitbucket Data Center: create it or fix the rule")
		default:
			r.add(name+" group "+g, OK, "exists in Bitbucket Data Center")
		}
	}
}

// ruleGroups lists every group the workspace's rules grant, once each.
func ruleGroups(ws *config.Workspace) []string {
	var out []string
	for _, rule := range ws.Rules {
		for _, g := range rule.Groups {
			if !slices.Contains(out, g) {
				out = append(out, g)
			}
		}
	}
	return out
}

// explain is the error's first line, followed by the fix when there is one.
func explain(err error, fix string) string {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	if fix != "" {
		msg += ": " + fix
	}
	return msg
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
