// Package rules decides which Bitbucket groups a Jira user gets in each workspace.
// It is pure: no I/O, so the worker, the plan command and tests share it.
package rules

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/autoinvite/autoinvite/config"
)

// Person is what the rules look at.
type Person struct {
	// AccountType is Jira Cloud's accountType; empty on Data Center.
	AccountType string
	// Email may be empty when Jira hides it (profile visibility).
	Email      string
	JiraGroups []string
}

// Decision is the outcome for one workspace.
type Decision struct {
	Workspace string
	// Groups to grant, in the order rules name them, without duplicates.
	Groups []string
	// RulesByGroup names the rules that granted each group.
	RulesByGroup map[string][]string
	// Excluded is set when an exclusion matched: Groups is then empty.
	Excluded bool
	// EmailUnknown is set when the email is hidden and the workspace's exclusions
	// or some of its rules depend on it: the decision is provisional.
	EmailUnknown bool
	// Held is set when the email is hidden and the workspace has exclusions:
	// nothing may be granted until the exclusions can be checked.
	Held bool
}

// Engine evaluates a config's rules. It is immutable and safe for concurrent use.
type Engine struct {
	cfg        *config.Config
	workspaces []workspace
	needEmail  bool
	needGroups bool
}

type workspace struct {
	slug    string
	exclude matcher
	rules   []rule
}

type rule struct {
	name       string
	match      matcher
	jiraGroups map[string]bool
	groups     []string
}

type matcher struct {
	emails  map[string]bool
	domains map[string]bool
	re      *regexp.Regexp
}

func (m matcher) empty() bool { return len(m.emails) == 0 && len(m.domains) == 0 && m.re == nil }

// matches reports whether every email criterion holds (all of them set).
func (m matcher) matchesAll(email string) bool {
	if len(m.emails) > 0 && !m.emails[email] {
		return false
	}
	if len(m.domains) > 0 && !m.domains[domainOf(email)] {
		return false
	}
	return m.re == nil || m.re.MatchString(email)
}

// matchesAny reports whether any criterion holds (for exclusions).
func (m matcher) matchesAny(email string) bool {
	return m.emails[email] || m.domains[domainOf(email)] || (m.re != nil && m.re.MatchString(email))
}

func domainOf(email string) string {
	at := strings.LastIndexByte(email, '@')
	if at < 0 {
		return ""
	}
	return email[at+1:]
}

func newMatcher(emails, domains []string, re string) (matcher, error) {
	m := matcher{emails: set(emails), domains: set(domains)}
	if re != "" {
		compiled, err := regexp.Compile(re)
		if err != nil {
			return m, fmt.Errorf("compile %q: %w", re, err)
		}
		m.re = compiled
	}
	return m, nil
}

// set lowercases: emails, domains and Jira group names are case-insensitive.
func set(items []string) map[string]bool {
	if len(items) == 0 {
		return nil
	}
	out := make(map[string]bool, len(items))
	for _, s := range items {
		out[strings.ToLower(s)] = true
	}
	return out
}

// New compiles the rules of a validated config.
func New(cfg *config.Config) (*Engine, error) {
	e := &Engine{cfg: cfg}
	for _, ws := range cfg.Workspaces {
		ex, err := newMatcher(ws.Exclude.Emails, ws.Exclude.EmailDomains, ws.Exclude.EmailRegex)
		if err != nil {
			return nil, fmt.Errorf("workspace %s exclude: %w", ws.Workspace, err)
		}
		cw := workspace{slug: ws.Workspace, exclude: ex}
		e.needEmail = e.needEmail || !ex.empty()
		for _, r := range ws.Rules {
			m, err := newMatcher(r.Match.Emails, r.Match.EmailDomains, r.Match.EmailRegex)
			if err != nil {
				return nil, fmt.Errorf("workspace %s rule %s: %w", ws.Workspace, r.Name, err)
			}
			cw.rules = append(cw.rules, rule{name: r.Name, match: m, jiraGroups: set(r.Match.JiraGroups), groups: r.Groups})
			e.needEmail = e.needEmail || r.Match.NeedsEmail()
			e.needGroups = e.needGroups || len(r.Match.JiraGroups) > 0
		}
		e.workspaces = append(e.workspaces, cw)
	}
	return e, nil
}

// Config returns the config the engine was compiled from: the settings that
// go with these rules. Callers must not modify it.
func (e *Engine) Config() *config.Config { return e.cfg }

// NeedsEmail reports whether any rule or exclusion looks at the email address.
func (e *Engine) NeedsEmail() bool { return e.needEmail }

// NeedsJiraGroups reports whether any rule looks at Jira group membership.
func (e *Engine) NeedsJiraGroups() bool { return e.needGroups }

// Workspaces lists the configured workspace slugs in config order.
func (e *Engine) Workspaces() []string {
	out := make([]string, len(e.workspaces))
	for i, w := range e.workspaces {
		out[i] = w.slug
	}
	return out
}

// Eligible reports whether an account can ever get Bitbucket access: app and
// customer (Service Desk) accounts cannot.
func Eligible(accountType string) bool {
	return accountType == "" || accountType == "atlassian"
}

// Evaluate returns one decision per workspace in which the person gets at least
// one group or is excluded or undecided. Ineligible accounts get none.
func (e *Engine) Evaluate(p Person) []Decision {
	if !Eligible(p.AccountType) {
		return nil
	}
	email := strings.ToLower(strings.TrimSpace(p.Email))
	jiraGroups := set(p.JiraGroups)
	var out []Decision
	for _, ws := range e.workspaces {
		d := Decision{Workspace: ws.slug, RulesByGroup: map[string][]string{}}
		if email == "" && !ws.exclude.empty() {
			d.EmailUnknown, d.Held = true, true
		}
		if email != "" && !ws.exclude.empty() && ws.exclude.matchesAny(email) {
			d.Excluded = true
			out = append(out, d)
			continue
		}
		for _, r := range ws.rules {
			if !r.match.empty() && email == "" {
				d.EmailUnknown = true
				continue
			}
			if !r.match.empty() && !r.match.matchesAll(email) {
				continue
			}
			if len(r.jiraGroups) > 0 && !anyIn(jiraGroups, r.jiraGroups) {
				continue
			}
			for _, g := range r.groups {
				if _, seen := d.RulesByGroup[g]; !seen {
					d.Groups = append(d.Groups, g)
				}
				d.RulesByGroup[g] = append(d.RulesByGroup[g], r.name)
			}
		}
		if len(d.Groups) > 0 || d.EmailUnknown {
			out = append(out, d)
		}
	}
	return out
}

func anyIn(have, want map[string]bool) bool {
	for g := range want {
		if have[g] {
			return true
		}
	}
	return false
}
