package config

// Reconcile modes: what a reconciliation pass does with the drift it finds.
const (
	ReconcileApply  = "apply"  // fix what the normal paths would have fixed
	ReconcileReport = "report" // list the drift, change nothing
	ReconcileOff    = "off"    // no pass
)

// DefaultReconcileSchedule runs a pass once a day: Jira's webhook retries end
// after about 30 minutes, and group joins send none at all.
const DefaultReconcileSchedule = "@daily"

// Reconcile configures the periodic pass that repairs what webhooks missed
// (a lost signup or deactivation, a Jira group joined after signup).
type Reconcile struct {
	// Schedule is a cron spec or descriptor ("" = @daily, "off" = never
	// scheduled; `autoinvite reconcile` still runs a pass on demand).
	Schedule string `yaml:"schedule"`
	// Mode is apply, report (default) or off; a workspace may override it.
	Mode string `yaml:"mode"`
	// RegrantRemoved re-adds a group autoinvite granted that someone removed
	// by hand (default: reported, not re-added).
	RegrantRemoved bool `yaml:"regrant_removed"`
	// PageSize is how many Jira users one listing call asks for.
	PageSize int `yaml:"page_size"`
}

// WorkspaceReconcile overrides the reconcile settings for one workspace.
type WorkspaceReconcile struct {
	Mode           string `yaml:"mode"`
	RegrantRemoved *bool  `yaml:"regrant_removed"`
}

// ReconcileMode returns a workspace's reconcile mode (off for a workspace
// the config no longer names).
func (c *Config) ReconcileMode(slug string) string {
	ws := c.Workspace(slug)
	switch {
	case ws == nil:
		return ReconcileOff
	case ws.Reconcile != nil && ws.Reconcile.Mode != "":
		return ws.Reconcile.Mode
	}
	return c.Reconcile.Mode
}

// RegrantRemoved reports whether a hand-removed grant is re-added in slug.
func (c *Config) RegrantRemoved(slug string) bool {
	if ws := c.Workspace(slug); ws != nil && ws.Reconcile != nil && ws.Reconcile.RegrantRemoved != nil {
		return *ws.Reconcile.RegrantRemoved
	}
	return c.Reconcile.RegrantRemoved
}

// reconcile validates and defaults the reconcile block.
func (v *validator) reconcile(r *Reconcile) {
	if r.Schedule == "" {
		r.Schedule = DefaultReconcileSchedule
	}
	if r.Schedule != ReconcileOff {
		if _, err := CronParser.Parse(r.Schedule); err != nil {
			v.fail("reconcile.schedule", "invalid cron schedule %q (or \"off\"): %v", r.Schedule, err)
		}
	}
	v.oneOf("reconcile.mode", &r.Mode, ReconcileReport, ReconcileApply, ReconcileReport, ReconcileOff)
	if r.PageSize == 0 {
		r.PageSize = 100
	}
	if r.PageSize < 1 || r.PageSize > 1000 {
		v.fail("reconcile.page_size", "must be between 1 and 1000, got %d", r.PageSize)
	}
}

// workspaceReconcile validates a workspace's reconcile override.
func (v *validator) workspaceReconcile(p string, ws *Workspace) {
	if ws.Reconcile == nil || ws.Reconcile.Mode == "" {
		return
	}
	v.oneOf(p+".reconcile.mode", &ws.Reconcile.Mode, "", ReconcileApply, ReconcileReport, ReconcileOff)
}
