// Package config loads, validates and describes autoinvite's YAML configuration.
//
// The file holds no secrets: credentials come from the environment (see Secrets).
// Every problem is reported with the file, line and field it concerns, and all
// problems are reported at once so an admin can fix a file in one pass.
package config

import (
	"fmt"
	"time"
)

// Deployment kinds of Jira.
const (
	DeploymentCloud      = "cloud"
	DeploymentDataCenter = "datacenter"
)

// Config is the whole configuration file.
type Config struct {
	Listen string `yaml:"listen"`
	// DryRun makes the service decide and audit without calling Atlassian.
	DryRun      bool        `yaml:"dry_run"`
	Redis       Redis       `yaml:"redis"`
	Jira        Jira        `yaml:"jira"`
	Bitbucket   Bitbucket   `yaml:"bitbucket"`
	Invitations Invitations `yaml:"invitations"`
	Revocation  Revocation  `yaml:"revocation"`
	RateLimits  RateLimits  `yaml:"rate_limits"`
	Intake      Intake      `yaml:"intake"`
	Worker      Worker      `yaml:"worker"`
	Audit       Audit       `yaml:"audit"`
	Dashboard   Dashboard   `yaml:"dashboard"`
	Workspaces  []Workspace `yaml:"workspaces"`
	// Notifications tells admins what needs them (config/notifications.go).
	Notifications Notifications `yaml:"notifications"`
	// Reconcile repairs the drift webhooks miss (config/reconcile.go).
	Reconcile Reconcile `yaml:"reconcile"`

	// Source is the file the config was read from ("" when built in code).
	Source string `yaml:"-"`
	// Hash identifies the content (file and environment overrides).
	Hash string `yaml:"-"`
	// overrides maps field paths to the environment variables that set them.
	overrides map[string]string
}

// Redis says where the queue and the ledger live.
type Redis struct {
	// URL is a redis:// or rediss:// URL; empty means an embedded in-process Redis.
	URL string `yaml:"url"`
	// KeyPrefix namespaces the ledger keys and the Asynq queue names, so several
	// installations (or test runs) can share one Redis.
	KeyPrefix string `yaml:"key_prefix"`
	// Sentinel connects through Redis Sentinel (automatic failover).
	Sentinel *Sentinel `yaml:"sentinel"`
	// Cluster connects to a Redis Cluster.
	Cluster *Cluster `yaml:"cluster"`
}

// Sentinel locates the Redis master through Sentinels. Passwords come from
// AUTOINVITE_REDIS_PASSWORD and AUTOINVITE_REDIS_SENTINEL_PASSWORD.
type Sentinel struct {
	MasterName string   `yaml:"master_name"`
	Addrs      []string `yaml:"addrs"`
	DB         int      `yaml:"db"`
	TLS        bool     `yaml:"tls"`
}

// Cluster lists seed nodes of a Redis Cluster. The password comes from
// AUTOINVITE_REDIS_PASSWORD.
type Cluster struct {
	Addrs []string `yaml:"addrs"`
	TLS   bool     `yaml:"tls"`
}

// Embedded reports whether no Redis is configured: the service then runs an
// in-process one.
func (r Redis) Embedded() bool { return r.URL == "" && r.Sentinel == nil && r.Cluster == nil }

// Jira describes the Jira site that sends the webhooks.
type Jira struct {
	BaseURL    string   `yaml:"base_url"`
	Deployment string   `yaml:"deployment"`
	Timeout    Duration `yaml:"timeout"`
}

// Bitbucket describes the Bitbucket Cloud API.
type Bitbucket struct {
	BaseURL string   `yaml:"base_url"`
	Timeout Duration `yaml:"timeout"`
	// MemberCache bounds the workspace member sets kept in Redis (one
	// listing answers many signups' membership questions).
	MemberCache MemberCache `yaml:"member_cache"`
}

// MemberCache bounds the cached member set of each Bitbucket Cloud workspace.
type MemberCache struct {
	// MaxSize: a workspace with more members is never listed (0: no cache,
	// every signup checks its own membership).
	MaxSize int `yaml:"max_size"`
	// MaxAge is how long a listing is trusted, "not a member" included.
	MaxAge Duration `yaml:"max_age"`
}

// Invitations controls the life of Bitbucket invitations.
type Invitations struct {
	ExpireAfter   Duration `yaml:"expire_after"`
	SweepSchedule string   `yaml:"sweep_schedule"`
	MaxResends    int      `yaml:"max_resends"`
	// EarlyCheckInterval is how often an invited person with a known account is
	// checked for having joined before the invitation expired (0 disables).
	EarlyCheckInterval Duration `yaml:"early_check_interval"`
	// SweepBatch caps the invitations one sweep handles; the rest wait a tick.
	SweepBatch int `yaml:"sweep_batch"`
}

// RateLimits are the Atlassian budgets every autoinvite process shares.
type RateLimits struct {
	Bitbucket            Budget `yaml:"bitbucket"`
	BitbucketInvitations Budget `yaml:"bitbucket_invitations"`
	Jira                 Budget `yaml:"jira"`
	// AtlassianAdmin is the Organization Admin API's budget, per API key.
	// Atlassian publishes no figure; its 429s (X-RateLimit-Reset) are honoured too.
	AtlassianAdmin Budget `yaml:"atlassian_admin"`
	// MaxWait bounds an endless 429 back-off: a task that Atlassian keeps
	// answering 429 for longer fails; waiting behind the budget never does.
	MaxWait Duration `yaml:"max_wait"`
	// EarlyCheckShare is the most of the Bitbucket budget that early
	// acceptance checks may spend (0 < share ≤ 1); they also wait while
	// signups wait for the budget.
	EarlyCheckShare float64 `yaml:"early_check_share"`
}

// Budget is a number of requests per period; 0 requests disables it.
type Budget struct {
	Requests int      `yaml:"requests"`
	Per      Duration `yaml:"per"`
}

// Revoke modes of a workspace.
const (
	RevokeApply  = "apply"
	RevokeReport = "report"
	RevokeOff    = "off"
)

// Revocation holds the safety limits of revocation.
type Revocation struct {
	// MaxRemovalsPerHour per workspace; more trips the circuit breaker.
	MaxRemovalsPerHour int `yaml:"max_removals_per_hour"`
}

// Intake controls the webhook endpoint.
type Intake struct {
	// MaxBodyBytes caps a webhook body; larger bodies are answered 413.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// DedupWindow is how long a delivery id is remembered to drop re-deliveries.
	DedupWindow Duration `yaml:"dedup_window"`
}

// Worker controls task processing.
type Worker struct {
	Concurrency int      `yaml:"concurrency"`
	MaxRetry    int      `yaml:"max_retry"`
	TaskTimeout Duration `yaml:"task_timeout"`
	// ShutdownTimeout is how long in-flight tasks may run on after SIGTERM;
	// the unfinished go back to the queue.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// BatchWait is how long a batched call (Data Center group adds,
	// organization invitations) waits for more people after the last one;
	// BatchMaxDelay caps the wait and BatchSize the people per batch.
	BatchWait     Duration `yaml:"batch_wait"`
	BatchMaxDelay Duration `yaml:"batch_max_delay"`
	BatchSize     int      `yaml:"batch_size"`
}

// Audit bounds the audit trail.
type Audit struct {
	// MaxEntries caps the Redis stream (approximately).
	MaxEntries int64 `yaml:"max_entries"`
}

// Dashboard configures the Asynq dashboard at /monitoring/.
type Dashboard struct {
	// ReadOnly lets viewers look without pausing queues or deleting tasks.
	ReadOnly bool `yaml:"read_only"`
}

// Workspace holds the rules for one Bitbucket workspace.
type Workspace struct {
	Workspace string `yaml:"workspace"`
	// Revoke says what a deactivation does here: apply, report or off.
	Revoke string `yaml:"revoke"`
	// MaxRemovalsPerHour overrides revocation.max_removals_per_hour (0 = inherit).
	MaxRemovalsPerHour int `yaml:"max_removals_per_hour"`
	// MaxMembers caps paid seats: members plus pending invitations (0 = no cap).
	// A signup that would exceed it is held and reported, not sent.
	MaxMembers int     `yaml:"max_members"`
	Exclude    Exclude `yaml:"exclude"`
	Rules      []Rule  `yaml:"rules"`
	// Bitbucket selects the Bitbucket this workspace lives on (Cloud by default).
	Bitbucket Target `yaml:"bitbucket"`
	// Administration says where the workspace's groups and invitations are
	// administered: atlassian (admin.atlassian.com, the Organization Admin
	// API), bitbucket (the 1.0 API) or auto (default: bitbucket until a 1.0
	// write is refused, then atlassian, remembered in Redis).
	Administration string `yaml:"administration"`
	// Organization is the Atlassian organization the workspace belongs to;
	// required for administration: atlassian, and for auto to carry on once
	// it finds the workspace administered there.
	Organization *Organization `yaml:"organization"`
	// Reconcile overrides the reconcile mode here (config/reconcile.go).
	Reconcile *WorkspaceReconcile `yaml:"reconcile"`
}

// Administrations of a Bitbucket Cloud workspace.
const (
	AdministrationAuto      = "auto"
	AdministrationAtlassian = "atlassian"
	AdministrationBitbucket = "bitbucket"
)

// Bitbucket deployments a workspace can live on.
const (
	BitbucketCloud      = "cloud"
	BitbucketDataCenter = "datacenter"
)

// Username sources for Bitbucket Data Center.
const (
	UsernameJiraName = "jira_name"
	UsernameEmail    = "email"
)

// Target is the Bitbucket a workspace lives on.
type Target struct {
	// Deployment is "cloud" (default) or "datacenter".
	Deployment string `yaml:"deployment"`
	// BaseURL of the Data Center instance, e.g. https://bitbucket.acme.com.
	BaseURL string `yaml:"base_url"`
	// TokenEnv names the environment variable holding the HTTP access token
	// (default AUTOINVITE_BITBUCKET_DC_TOKEN; NAME_FILE works too).
	TokenEnv string `yaml:"token_env"`
	// Username says which Jira field is the Data Center username: jira_name
	// (default, a shared directory) or email.
	Username string `yaml:"username"`
}

// DataCenter reports whether the target is Bitbucket Data Center.
func (t Target) DataCenter() bool { return t.Deployment == BitbucketDataCenter }

// Organization is the Atlassian organization that manages a workspace.
type Organization struct {
	ID string `yaml:"id"`
	// BaseURL of the Atlassian admin API (default https://api.atlassian.com).
	BaseURL string `yaml:"base_url"`
	// APIKeyEnv names the environment variable holding the organization API key
	// (default AUTOINVITE_ORG_API_KEY; NAME_FILE works too).
	APIKeyEnv string `yaml:"api_key_env"`
	// Groups optionally maps group names the rules use to organization group
	// ids. Without it names are resolved through the Admin API's group search.
	Groups map[string]string `yaml:"groups"`
	// DirectoryID is the directory of the groups given in Groups (default: the
	// organization's only directory). Searched groups carry their own.
	DirectoryID string `yaml:"directory_id"`
	// WorkspaceResourceID overrides the workspace's resource id, otherwise
	// found by the Admin API's workspace search (matched by slug or name).
	WorkspaceResourceID string `yaml:"workspace_resource_id"`
	// Role is the role invitations give on the workspace (default atlassian/user).
	Role string `yaml:"role"`
	// NotificationText is added to the invitation email.
	NotificationText string `yaml:"notification_text"`
	// InvitesPerCall caps the emails of one invite call (default 25).
	InvitesPerCall int `yaml:"invites_per_call"`
}

// InviteRoles are the roles the Admin API's invite accepts.
var InviteRoles = []string{"atlassian/user", "atlassian/admin", "atlassian/guest", "atlassian/contributor",
	"atlassian/customer", "atlassian/basic", "atlassian/stakeholder", "atlassian/viewer"}

// Defaults of the organization block.
const (
	DefaultInviteRole     = "atlassian/user"
	DefaultInvitesPerCall = 25
)

// Default environment variables of per-workspace credentials.
const (
	DefaultDataCenterTokenEnv = "AUTOINVITE_BITBUCKET_DC_TOKEN"
	DefaultOrgAPIKeyEnv       = "AUTOINVITE_ORG_API_KEY"
	DefaultOrgBaseURL         = "https://api.atlassian.com"
)

// Workspace returns the settings of a workspace, or nil.
func (c *Config) Workspace(slug string) *Workspace {
	for i := range c.Workspaces {
		if c.Workspaces[i].Workspace == slug {
			return &c.Workspaces[i]
		}
	}
	return nil
}

// RevokeMode returns the revoke mode of a workspace. A workspace no longer in
// the config only reports: a rule change never revokes by itself.
func (c *Config) RevokeMode(slug string) string {
	if ws := c.Workspace(slug); ws != nil {
		return ws.Revoke
	}
	return RevokeReport
}

// RemovalLimit returns the hourly removal limit of a workspace.
func (c *Config) RemovalLimit(slug string) int {
	if ws := c.Workspace(slug); ws != nil && ws.MaxRemovalsPerHour > 0 {
		return ws.MaxRemovalsPerHour
	}
	return c.Revocation.MaxRemovalsPerHour
}

// Exclude lists people who never get anything in a workspace, whatever the rules say.
type Exclude struct {
	Emails       []string `yaml:"emails"`
	EmailDomains []string `yaml:"email_domains"`
	EmailRegex   string   `yaml:"email_regex"`
}

// Empty reports whether nobody is excluded.
func (e Exclude) Empty() bool {
	return len(e.Emails) == 0 && len(e.EmailDomains) == 0 && e.EmailRegex == ""
}

// Rule grants Groups to everyone that Match matches.
type Rule struct {
	Name   string   `yaml:"name"`
	Match  Match    `yaml:"match"`
	Groups []string `yaml:"groups"`
}

// Match is a conjunction of criteria; an empty Match matches everyone.
type Match struct {
	Emails       []string `yaml:"emails"`
	EmailDomains []string `yaml:"email_domains"`
	EmailRegex   string   `yaml:"email_regex"`
	// JiraGroups matches when the person is in any of them.
	JiraGroups []string `yaml:"jira_groups"`
}

// NeedsEmail reports whether the match cannot be decided without an email address.
func (m Match) NeedsEmail() bool {
	return len(m.Emails) > 0 || len(m.EmailDomains) > 0 || m.EmailRegex != ""
}

// Defaults returns a config with every optional setting filled in.
func Defaults() Config {
	return Config{
		Listen: ":8080",
		Redis:  Redis{KeyPrefix: "autoinvite"},
		Jira: Jira{
			Deployment: DeploymentCloud,
			Timeout:    Duration(10 * time.Second),
		},
		Bitbucket: Bitbucket{
			BaseURL:     "https://api.bitbucket.org",
			Timeout:     Duration(10 * time.Second),
			MemberCache: MemberCache{MaxSize: 100000, MaxAge: Duration(time.Hour)},
		},
		Invitations: Invitations{
			ExpireAfter:        Duration(168 * time.Hour),
			SweepSchedule:      "@every 15m",
			MaxResends:         3,
			EarlyCheckInterval: Duration(6 * time.Hour),
			SweepBatch:         10000,
		},
		Revocation: Revocation{MaxRemovalsPerHour: 20},
		RateLimits: RateLimits{
			Bitbucket:            Budget{Requests: 1000, Per: Duration(time.Hour)},
			BitbucketInvitations: Budget{Requests: 100, Per: Duration(time.Minute)},
			Jira:                 Budget{Requests: 100, Per: Duration(time.Minute)},
			AtlassianAdmin:       Budget{Requests: 100, Per: Duration(time.Minute)},
			MaxWait:              Duration(6 * time.Hour),
			EarlyCheckShare:      0.1,
		},
		Intake: Intake{
			MaxBodyBytes: 1 << 20,
			DedupWindow:  Duration(24 * time.Hour),
		},
		Audit: Audit{MaxEntries: 100000},
		Worker: Worker{
			Concurrency:     10,
			MaxRetry:        25,
			TaskTimeout:     Duration(2 * time.Minute),
			ShutdownTimeout: Duration(30 * time.Second),
			BatchWait:       Duration(2 * time.Second),
			BatchMaxDelay:   Duration(30 * time.Second),
			BatchSize:       100,
		},
	}
}

// NeedsRestart lists the settings that differ between c and next and cannot
// change while the service runs.
func (c *Config) NeedsRestart(next *Config) []string {
	var out []string
	check := func(field string, changed bool) {
		if changed {
			out = append(out, field)
		}
	}
	check("listen", c.Listen != next.Listen)
	check("redis.url", c.Redis.URL != next.Redis.URL)
	check("redis.sentinel", fmt.Sprint(c.Redis.Sentinel) != fmt.Sprint(next.Redis.Sentinel))
	check("redis.cluster", fmt.Sprint(c.Redis.Cluster) != fmt.Sprint(next.Redis.Cluster))
	check("redis.key_prefix", c.Redis.KeyPrefix != next.Redis.KeyPrefix)
	check("invitations.sweep_schedule", c.Invitations.SweepSchedule != next.Invitations.SweepSchedule)
	check("intake", c.Intake != next.Intake)
	check("worker", c.Worker != next.Worker)
	check("dashboard.read_only", c.Dashboard != next.Dashboard)
	check("notifications.digest_schedule", c.Notifications.DigestSchedule != next.Notifications.DigestSchedule)
	check("reconcile.schedule", c.Reconcile.Schedule != next.Reconcile.Schedule)
	return out
}

// Duration is a time.Duration written as "90s", "15m" or "168h" in YAML.
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats the duration like time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }
