package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/robfig/cron/v3"

	"github.com/autoinvite/autoinvite/internal/validate"
)

var (
	keyPrefixPattern = regexp.MustCompile(`^[A-Za-z0-9_:.-]{1,64}$`)
	domainPattern    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$`)
)

// CronParser parses invitations.sweep_schedule: five fields or a descriptor
// such as "@hourly" or "@every 15m".
var CronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// validator collects problems with their lines.
type validator struct {
	file  string
	lines map[string]int
	env   map[string]string // field path -> environment variable that set it
	errs  Errors
}

// oneOf sets an empty *value to def ("" = no default) and reports a value
// that is not one of allowed.
func (v *validator) oneOf(field string, value *string, def string, allowed ...string) {
	if *value == "" {
		*value = def
	}
	if slices.Contains(allowed, *value) {
		return
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = strconv.Quote(a)
	}
	v.fail(field, "must be %s, got %q", strings.Join(quoted, " or "), *value)
}

func (v *validator) fail(field, format string, args ...any) {
	e := FieldError{File: v.file, Line: v.line(field), Field: field, Msg: fmt.Sprintf(format, args...)}
	if name, ok := v.env[field]; ok {
		e.File, e.Line = "env "+name, 0
	}
	v.errs = append(v.errs, e)
}

// line is the line of field or, for a field the file leaves out, of the
// nearest enclosing one.
func (v *validator) line(field string) int {
	for p := field; p != ""; {
		if n, ok := v.lines[p]; ok {
			return n
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

func (c *Config) validate(file string, lines map[string]int) Errors {
	v := &validator{file: file, lines: lines, env: c.envFields()}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		v.fail("listen", "must be host:port or :port, got %q", c.Listen)
	}
	if c.Redis.URL != "" {
		u, err := url.Parse(c.Redis.URL)
		switch {
		case err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix"):
			v.fail("redis.url", "must be a redis://, rediss:// or unix:// URL (or empty for the embedded Redis)")
		default:
			// What go-redis refuses (a database that is not a number, an
			// unknown option), said here with the file and line; never the
			// password the URL may carry.
			if _, err := redis.ParseURL(c.Redis.URL); err != nil {
				msg := err.Error()
				if password, set := u.User.Password(); set && password != "" {
					msg = strings.ReplaceAll(msg, password, "xxxxx")
				}
				v.fail("redis.url", "%s", msg)
			}
		}
	}
	v.redisTopology(&c.Redis)
	if !keyPrefixPattern.MatchString(c.Redis.KeyPrefix) {
		v.fail("redis.key_prefix", "must be 1-64 letters, digits or _ : . -")
	}
	v.oneOf("jira.deployment", &c.Jira.Deployment, "", DeploymentCloud, DeploymentDataCenter)
	v.baseURL("jira.base_url", c.Jira.BaseURL)
	v.baseURL("bitbucket.base_url", c.Bitbucket.BaseURL)
	v.positive("jira.timeout", int64(c.Jira.Timeout))
	v.positive("bitbucket.timeout", int64(c.Bitbucket.Timeout))

	if c.Invitations.ExpireAfter.D().Minutes() < 1 {
		v.fail("invitations.expire_after", "must be at least 1m, got %s", c.Invitations.ExpireAfter)
	}
	if _, err := CronParser.Parse(c.Invitations.SweepSchedule); err != nil {
		v.fail("invitations.sweep_schedule", "invalid cron schedule %q: %v", c.Invitations.SweepSchedule, err)
	}
	if c.Invitations.MaxResends < 0 {
		v.fail("invitations.max_resends", "must not be negative")
	}
	if c.Invitations.EarlyCheckInterval < 0 {
		v.fail("invitations.early_check_interval", "must not be negative (0 disables early checks)")
	}
	v.positive("invitations.sweep_batch", int64(c.Invitations.SweepBatch))
	v.positive("revocation.max_removals_per_hour", int64(c.Revocation.MaxRemovalsPerHour))
	v.positive("intake.max_body_bytes", c.Intake.MaxBodyBytes)
	v.positive("intake.dedup_window", int64(c.Intake.DedupWindow))
	v.positive("audit.max_entries", c.Audit.MaxEntries)
	for _, nb := range []struct {
		name string
		b    Budget
	}{{"bitbucket", c.RateLimits.Bitbucket}, {"bitbucket_invitations", c.RateLimits.BitbucketInvitations}, {"jira", c.RateLimits.Jira}, {"atlassian_admin", c.RateLimits.AtlassianAdmin}} {
		name, b := nb.name, nb.b
		if b.Requests < 0 {
			v.fail("rate_limits."+name+".requests", "must not be negative (0 disables the budget)")
		}
		if b.Requests > 0 && b.Per <= 0 {
			v.fail("rate_limits."+name+".per", "must be a positive duration such as 1h")
		}
	}
	v.positive("rate_limits.max_wait", int64(c.RateLimits.MaxWait))
	if sh := c.RateLimits.EarlyCheckShare; !(sh > 0 && sh <= 1) {
		v.fail("rate_limits.early_check_share", "must be more than 0 and at most 1 (a share of rate_limits.bitbucket such as 0.1), got %v; invitations.early_check_interval: 0 turns early checks off", sh)
	}
	if c.Bitbucket.MemberCache.MaxSize < 0 {
		v.fail("bitbucket.member_cache.max_size", "must not be negative (0 turns the member cache off)")
	}
	v.positive("bitbucket.member_cache.max_age", int64(c.Bitbucket.MemberCache.MaxAge))
	v.positive("worker.concurrency", int64(c.Worker.Concurrency))
	if c.Worker.MaxRetry < 0 {
		v.fail("worker.max_retry", "must not be negative")
	}
	v.positive("worker.task_timeout", int64(c.Worker.TaskTimeout))
	v.positive("worker.shutdown_timeout", int64(c.Worker.ShutdownTimeout))
	if c.Worker.BatchWait.D() < time.Second {
		v.fail("worker.batch_wait", "must be at least 1s (Asynq's smallest grouping period), got %s", c.Worker.BatchWait)
	}
	if c.Worker.BatchMaxDelay < c.Worker.BatchWait {
		v.fail("worker.batch_max_delay", "must be at least worker.batch_wait (%s), got %s", c.Worker.BatchWait, c.Worker.BatchMaxDelay)
	}
	v.positive("worker.batch_size", int64(c.Worker.BatchSize))
	v.notifications(&c.Notifications)
	v.reconcile(&c.Reconcile)

	seenWS := map[string]bool{}
	for i := range c.Workspaces {
		ws := &c.Workspaces[i]
		p := fmt.Sprintf("workspaces[%d]", i)
		switch {
		case ws.Workspace == "":
			v.fail(p+".workspace", "is required (the Bitbucket workspace slug)")
		case !validate.Slug(ws.Workspace):
			v.fail(p+".workspace", "%q is not a workspace slug (lowercase letters, digits, '-', '_', '.')", ws.Workspace)
		case seenWS[ws.Workspace]:
			v.fail(p+".workspace", "workspace %q is listed twice; put all its rules under one entry", ws.Workspace)
		}
		seenWS[ws.Workspace] = true
		switch ws.Revoke {
		case "":
			ws.Revoke = RevokeApply
		case RevokeApply, RevokeReport, RevokeOff:
		default:
			v.fail(p+".revoke", "must be %q, %q or %q, got %q", RevokeApply, RevokeReport, RevokeOff, ws.Revoke)
		}
		if ws.MaxMembers < 0 {
			v.fail(p+".max_members", "must not be negative (0 means no cap)")
		}
		if ws.MaxRemovalsPerHour < 0 {
			v.fail(p+".max_removals_per_hour", "must not be negative (0 inherits revocation.max_removals_per_hour)")
		}
		v.emailCriteria(p+".exclude", &ws.Exclude.Emails, &ws.Exclude.EmailDomains, ws.Exclude.EmailRegex)
		v.target(p+".bitbucket", &ws.Bitbucket)
		v.organization(p, ws)
		v.workspaceReconcile(p, ws)
		if len(ws.Rules) == 0 {
			v.fail(p+".rules", "a workspace needs at least one rule")
		}
		seenRule := map[string]bool{}
		for j := range ws.Rules {
			r := &ws.Rules[j]
			rp := fmt.Sprintf("%s.rules[%d]", p, j)
			switch {
			case strings.TrimSpace(r.Name) == "":
				v.fail(rp+".name", "is required (it names the rule in logs and the ledger)")
			case seenRule[r.Name]:
				v.fail(rp+".name", "duplicate rule name %q in workspace %q", r.Name, ws.Workspace)
			}
			seenRule[r.Name] = true
			v.emailCriteria(rp+".match", &r.Match.Emails, &r.Match.EmailDomains, r.Match.EmailRegex)
			for k, g := range r.Match.JiraGroups {
				if strings.TrimSpace(g) == "" {
					v.fail(fmt.Sprintf("%s.match.jira_groups[%d]", rp, k), "must not be empty")
				}
			}
			if len(r.Groups) == 0 {
				v.fail(rp+".groups", "a rule needs at least one Bitbucket group")
			}
			seenGroup := map[string]bool{}
			for k, g := range r.Groups {
				gp := fmt.Sprintf("%s.groups[%d]", rp, k)
				switch {
				case seenGroup[g]:
					v.fail(gp, "group %q is listed twice", g)
				case ws.Administration == AdministrationAtlassian && validate.GroupName(g):
					// an organization group's name, spaces and all
				case !validate.Slug(g):
					v.fail(gp, "%q is not a group slug (lowercase letters, digits, '-', '_', '.'; use the slug, not the display name)", g)
				}
				seenGroup[g] = true
			}
		}
	}
	return v.errs
}

// redisTopology allows one way to reach Redis: url, sentinel or cluster.
func (v *validator) redisTopology(r *Redis) {
	set := 0
	for _, on := range []bool{r.URL != "", r.Sentinel != nil, r.Cluster != nil} {
		if on {
			set++
		}
	}
	if set > 1 {
		v.fail("redis", "set only one of url, sentinel and cluster")
	}
	if s := r.Sentinel; s != nil {
		if s.MasterName == "" {
			v.fail("redis.sentinel.master_name", "is required (the name the Sentinels monitor, e.g. mymaster)")
		}
		v.addrs("redis.sentinel.addrs", s.Addrs)
		if s.DB < 0 || s.DB > 15 {
			v.fail("redis.sentinel.db", "must be between 0 and 15")
		}
	}
	if c := r.Cluster; c != nil {
		v.addrs("redis.cluster.addrs", c.Addrs)
	}
}

func (v *validator) addrs(field string, addrs []string) {
	if len(addrs) == 0 {
		v.fail(field, "needs at least one host:port")
	}
	for i, a := range addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			v.fail(fmt.Sprintf("%s[%d]", field, i), "must be host:port, got %q", a)
		}
	}
}

// target validates and defaults a workspace's Bitbucket target.
func (v *validator) target(p string, t *Target) {
	v.oneOf(p+".deployment", &t.Deployment, BitbucketCloud, BitbucketCloud, BitbucketDataCenter)
	if !t.DataCenter() {
		if t.BaseURL != "" || t.TokenEnv != "" || t.Username != "" {
			v.fail(p+".deployment", "base_url, token_env and username apply to deployment: datacenter only")
		}
		return
	}
	if t.BaseURL == "" {
		v.fail(p+".base_url", "is required with deployment: datacenter (e.g. https://bitbucket.acme.com)")
	}
	v.baseURL(p+".base_url", t.BaseURL)
	if t.TokenEnv == "" {
		t.TokenEnv = DefaultDataCenterTokenEnv
	}
	v.envName(p+".token_env", t.TokenEnv)
	v.oneOf(p+".username", &t.Username, UsernameJiraName, UsernameJiraName, UsernameEmail)
}

// organization validates and defaults a workspace's administration and
// organization.
func (v *validator) organization(p string, ws *Workspace) {
	if ws.Bitbucket.DataCenter() {
		if ws.Administration != "" {
			v.fail(p+".administration", "applies to Bitbucket Cloud workspaces only; remove it or the datacenter deployment")
		}
	} else {
		v.oneOf(p+".administration", &ws.Administration, AdministrationAuto, AdministrationAuto, AdministrationAtlassian, AdministrationBitbucket)
	}
	o := ws.Organization
	if o == nil {
		if ws.Administration == AdministrationAtlassian {
			v.fail(p+".organization", "is required with administration: atlassian (id: the UUID in admin.atlassian.com/o/<id>, api_key_env: the variable holding an organization API key)")
		}
		return
	}
	p += ".organization"
	if ws.Bitbucket.DataCenter() {
		v.fail(p, "organizations manage Bitbucket Cloud workspaces only; remove it or the datacenter deployment")
	}
	if strings.TrimSpace(o.ID) == "" {
		v.fail(p+".id", "is required (the organization id from admin.atlassian.com)")
	}
	if o.BaseURL == "" {
		o.BaseURL = DefaultOrgBaseURL
	}
	v.baseURL(p+".base_url", o.BaseURL)
	if o.APIKeyEnv == "" {
		o.APIKeyEnv = DefaultOrgAPIKeyEnv
	}
	v.envName(p+".api_key_env", o.APIKeyEnv)
	v.oneOf(p+".role", &o.Role, DefaultInviteRole, InviteRoles...)
	if o.InvitesPerCall == 0 {
		o.InvitesPerCall = DefaultInvitesPerCall
	}
	if o.InvitesPerCall < 1 || o.InvitesPerCall > 100 {
		v.fail(p+".invites_per_call", "must be between 1 and 100 (Atlassian is reported to accept 25), got %d", o.InvitesPerCall)
	}
	for name, id := range o.Groups {
		if strings.TrimSpace(id) == "" {
			v.fail(p+".groups", "group %q has an empty organization group id", name)
		}
	}
}

var envNamePattern = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)

func (v *validator) envName(field, name string) {
	if !envNamePattern.MatchString(name) {
		v.fail(field, "%q is not an environment variable name (it names the variable holding the secret, not the secret)", name)
	}
}

func (v *validator) positive(field string, n int64) {
	if n <= 0 {
		v.fail(field, "must be greater than zero")
	}
}

func (v *validator) baseURL(field, raw string) {
	if raw == "" {
		return
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.fail(field, "must be an absolute http(s) URL, got %q", raw)
	}
}

// emailCriteria validates and normalises (lowercases) email and domain lists.
func (v *validator) emailCriteria(path string, emails, domains *[]string, re string) {
	for i, e := range *emails {
		e = strings.ToLower(strings.TrimSpace(e))
		(*emails)[i] = e
		if at := strings.LastIndexByte(e, '@'); at <= 0 || at == len(e)-1 {
			v.fail(fmt.Sprintf("%s.emails[%d]", path, i), "%q is not an email address", e)
		}
	}
	for i, d := range *domains {
		d = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(d)), "@")
		(*domains)[i] = d
		if !domainPattern.MatchString(d) {
			v.fail(fmt.Sprintf("%s.email_domains[%d]", path, i), "%q is not a domain name (write acme.com, not an address)", d)
		}
	}
	if re != "" {
		if _, err := regexp.Compile(re); err != nil {
			v.fail(path+".email_regex", "invalid regular expression: %v", err)
		}
	}
}
