package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := LoadFile("../examples/autoinvite.yaml", nil)
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	if cfg.Invitations.ExpireAfter.D() != 168*time.Hour || cfg.Invitations.MaxResends != 3 {
		t.Fatalf("invitations = %+v", cfg.Invitations)
	}
	if got := cfg.Workspaces[0].Rules[0].Match.EmailDomains; len(got) != 1 || got[0] != "acme.com" {
		t.Fatalf("email_domains = %v", got)
	}
	if cfg.Worker.Concurrency != 10 || cfg.Intake.MaxBodyBytes != 1<<20 {
		t.Fatalf("defaults not applied: %+v %+v", cfg.Worker, cfg.Intake)
	}
}

func TestEveryProblemReportedWithFileLineAndField(t *testing.T) {
	src := `listen: ":8080"
jira: {deployment: cloud, tiemout: 5s}
invitations:
  expire_after: 7 days
  sweep_schedule: "every fifteen minutes"
workspaces:
  - workspace: acme
    exclude: {email_regex: "(unclosed"}
    rules:
      - name: engineers
        match: {email_domains: [acme.com]}
        groups: [developers]
      - name: engineers
        match: {}
        groups: []
      - name: bad-group
        match: {email_regex: "[z-a]"}
        groups: [Developers]
`
	_, err := Parse("rules.yaml", []byte(src), nil)
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want Errors, got %v", err)
	}
	// Shape errors (unknown keys, bad scalars) and semantic ones together, in
	// file order, all of them in one pass.
	rest := []string{
		`rules.yaml:5: invitations.sweep_schedule: invalid cron schedule "every fifteen minutes": expected exactly 5 fields, found 3: [every fifteen minutes]`,
		"rules.yaml:8: workspaces[0].exclude.email_regex: invalid regular expression: error parsing regexp: missing closing ): `(unclosed`",
		`rules.yaml:13: workspaces[0].rules[1].name: duplicate rule name "engineers" in workspace "acme"`,
		`rules.yaml:15: workspaces[0].rules[1].groups: a rule needs at least one Bitbucket group`,
		"rules.yaml:17: workspaces[0].rules[2].match.email_regex: invalid regular expression: error parsing regexp: invalid character class range: `z-a`",
		`rules.yaml:18: workspaces[0].rules[2].groups[0]: "Developers" is not a group slug (lowercase letters, digits, '-', '_', '.'; use the slug, not the display name)`,
	}
	want := append([]string{
		`rules.yaml:2: jira.tiemout: unknown field "tiemout" (known fields: base_url, deployment, timeout)`,
		`rules.yaml:4: invitations.expire_after: invalid duration "7 days": write a number with a unit, e.g. 90s, 15m, 168h or 7d`,
	}, rest...)
	assertErrors(t, errs, want)

	src = strings.Replace(strings.Replace(src, ", tiemout: 5s", "", 1), "7 days", "7d", 1)
	_, err = Parse("rules.yaml", []byte(src), nil)
	if !errors.As(err, &errs) {
		t.Fatalf("want Errors, got %v", err)
	}
	assertErrors(t, errs, rest)
}

// A value of the wrong type, an unknown field, a misplaced list item and an
// environment override are reported beside the validation errors they would
// otherwise hide; a bad value is never reported twice.
func TestShapeErrorsDoNotHideTheRest(t *testing.T) {
	src := `worker:
  concurrency: many
workspaces:
  - workspace: acme
    rules:
      - name: engineers
        groups: [Developers]
        colour: blue
      - just-a-string
  - workspace: acme
    rules: [{name: r, groups: [g]}]
`
	env := func(k string) string {
		if k == "AUTOINVITE_LISTEN" {
			return "no-port"
		}
		return ""
	}
	_, err := Parse("f.yaml", []byte(src), env)
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want Errors, got %v", err)
	}
	assertErrors(t, errs, []string{
		"f.yaml:2: worker.concurrency: cannot unmarshal !!str `many` into int",
		`f.yaml:7: workspaces[0].rules[0].groups[0]: "Developers" is not a group slug (lowercase letters, digits, '-', '_', '.'; use the slug, not the display name)`,
		`f.yaml:8: workspaces[0].rules[0].colour: unknown field "colour" (known fields: groups, match, name)`,
		`f.yaml:9: workspaces[0].rules[1]: expected a mapping of keys to values`,
		`f.yaml:10: workspaces[1].workspace: workspace "acme" is listed twice; put all its rules under one entry`,
		`env AUTOINVITE_LISTEN: listen: must be host:port or :port, got "no-port"`,
	})
}

func TestWrongTypesAndSyntax(t *testing.T) {
	cases := map[string]struct{ src, want string }{
		"list expected": {"workspaces: acme\n", "f.yaml:1: workspaces: expected a list"},
		"number expected": {"invitations:\n  max_resends: three\n",
			"f.yaml:2: invitations.max_resends: cannot unmarshal !!str `three` into int"},
		"syntax": {"listen: [\n", "f.yaml:1: did not find expected node content"},
		"bad enum": {"jira: {deployment: server}\n",
			`f.yaml:1: jira.deployment: must be "cloud" or "datacenter", got "server"`},
		"workspace twice": {"workspaces:\n- workspace: a\n  rules: [{name: r, groups: [g]}]\n- workspace: a\n  rules: [{name: r, groups: [g]}]\n",
			`f.yaml:4: workspaces[1].workspace: workspace "a" is listed twice; put all its rules under one entry`},
		"two redis topologies": {"redis: {url: \"redis://r:6379/0\", cluster: {addrs: [\"r1:7000\"]}}\n",
			"f.yaml:1: redis: set only one of url, sentinel and cluster"},
		"sentinel without master": {"redis:\n  sentinel: {addrs: [\"s1:26379\", s2]}\n",
			"f.yaml:2: redis.sentinel.master_name: is required (the name the Sentinels monitor, e.g. mymaster)\n" +
				`f.yaml:2: redis.sentinel.addrs[1]: must be host:port, got "s2"`},
		"bad domain": {"workspaces:\n- workspace: a\n  rules: [{name: r, match: {email_domains: [bob@acme.com]}, groups: [g]}]\n",
			`f.yaml:3: workspaces[0].rules[0].match.email_domains[0]: "bob@acme.com" is not a domain name (write acme.com, not an address)`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tc.src), nil)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error:\n got  %v\n want %s", err, tc.want)
			}
		})
	}
}

func TestEnvironmentOverridesAndTheirErrors(t *testing.T) {
	env := map[string]string{
		"AUTOINVITE_LISTEN":             "127.0.0.1:9999",
		"AUTOINVITE_REDIS_URL":          "redis://127.0.0.1:6379/3",
		"AUTOINVITE_BITBUCKET_BASE_URL": "http://127.0.0.1:1234",
	}
	cfg, err := Parse("f.yaml", []byte("listen: \":8080\"\n"), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:9999" || cfg.Redis.URL != "redis://127.0.0.1:6379/3" || cfg.Bitbucket.BaseURL != "http://127.0.0.1:1234" {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
	env["AUTOINVITE_REDIS_URL"] = "localhost:6379"
	_, err = Parse("f.yaml", []byte("listen: \":8080\"\n"), func(k string) string { return env[k] })
	want := "env AUTOINVITE_REDIS_URL: redis.url: must be a redis://, rediss:// or unix:// URL (or empty for the embedded Redis)"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

// A redis.url that go-redis would refuse at start-up is refused at load,
// with the file, the line and the field, and without its password.
func TestRedisURLIsCheckedAsGoRedisReadsIt(t *testing.T) {
	for url, want := range map[string]string{
		"redis://:s3cret-pw@db.internal:6379/cache":    `f.yaml:3: redis.url: redis: invalid database number: "cache"`,
		"redis://:s3cret-pw@db.internal:6379/0?pool=5": `f.yaml:3: redis.url: redis: unexpected option: pool`,
	} {
		_, err := Parse("f.yaml", []byte("listen: \":8080\"\nredis:\n  url: \""+url+"\"\n"), nil)
		if err == nil || err.Error() != want {
			t.Errorf("%s: got %v, want %s", url, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret-pw") {
			t.Errorf("%s: the password is in the error: %v", url, err)
		}
	}
}

func TestEmptyFileGivesDefaults(t *testing.T) {
	cfg, err := Parse("empty.yaml", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != ":8080" || cfg.Invitations.SweepSchedule != "@every 15m" {
		t.Fatalf("defaults: %+v", cfg)
	}
}

func TestSecretsFromEnvAndFilesNeverPrinted(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"AUTOINVITE_JIRA_EMAIL":                  "bot@acme.com",
		"AUTOINVITE_JIRA_API_TOKEN":              "jira-secret",
		"AUTOINVITE_BITBUCKET_ACCESS_TOKEN_FILE": tokenFile,
	}
	s, err := SecretsFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if s.BitbucketAccessToken != "file-token" || s.JiraAPIToken != "jira-secret" {
		t.Fatalf("secrets = %#v", s)
	}
	if err := s.ValidateCredentials(DeploymentCloud); err != nil {
		t.Fatal(err)
	}
	for _, printed := range []string{s.String(), s.GoString()} {
		if strings.Contains(printed, "jira-secret") || strings.Contains(printed, "file-token") {
			t.Fatalf("secret printed: %s", printed)
		}
	}
	err = Secrets{JiraEmail: "x"}.ValidateCredentials(DeploymentDataCenter)
	want := "incomplete Atlassian credentials: Jira Data Center needs AUTOINVITE_JIRA_BEARER_TOKEN (a personal access token); Bitbucket needs AUTOINVITE_BITBUCKET_EMAIL and AUTOINVITE_BITBUCKET_API_TOKEN, or AUTOINVITE_BITBUCKET_ACCESS_TOKEN"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v", err)
	}
}

func assertErrors(t *testing.T, got Errors, want []string) {
	t.Helper()
	var lines []string
	for _, e := range got {
		lines = append(lines, e.Error())
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("errors:\n got:\n%s\n want:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestDataCenterAndOrganizationTargetsAreValidated(t *testing.T) {
	src := `workspaces:
  - workspace: dc
    bitbucket: {deployment: datacenter, username: login, token_env: my-token}
    rules: [{name: all, groups: [developers]}]
  - workspace: org
    organization:
      base_url: api.atlassian.com
      groups: {developers: grp-1}
    rules: [{name: all, groups: [developers, readers]}]
  - workspace: both
    bitbucket: {deployment: server}
    rules: [{name: all, groups: [developers]}]
  - workspace: admin
    administration: atlassian
    rules: [{name: all, groups: [Bitbucket Developers]}]
  - workspace: mixed
    administration: unified
    organization: {id: org-2, role: atlassian/owner, invites_per_call: 500}
    rules: [{name: all, groups: [Bitbucket Developers]}]
`
	_, err := Parse("rules.yaml", []byte(src), nil)
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want Errors, got %v", err)
	}
	assertErrors(t, errs, []string{
		`rules.yaml:3: workspaces[0].bitbucket.base_url: is required with deployment: datacenter (e.g. https://bitbucket.acme.com)`,
		`rules.yaml:3: workspaces[0].bitbucket.token_env: "my-token" is not an environment variable name (it names the variable holding the secret, not the secret)`,
		`rules.yaml:3: workspaces[0].bitbucket.username: must be "jira_name" or "email", got "login"`,
		`rules.yaml:6: workspaces[1].organization.id: is required (the organization id from admin.atlassian.com)`,
		`rules.yaml:7: workspaces[1].organization.base_url: must be an absolute http(s) URL, got "api.atlassian.com"`,
		`rules.yaml:11: workspaces[2].bitbucket.deployment: must be "cloud" or "datacenter", got "server"`,
		`rules.yaml:13: workspaces[3].organization: is required with administration: atlassian (id: the UUID in admin.atlassian.com/o/<id>, api_key_env: the variable holding an organization API key)`,
		`rules.yaml:17: workspaces[4].administration: must be "auto" or "atlassian" or "bitbucket", got "unified"`,
		`rules.yaml:18: workspaces[4].organization.role: must be "atlassian/user" or "atlassian/admin" or "atlassian/guest" or "atlassian/contributor" or "atlassian/customer" or "atlassian/basic" or "atlassian/stakeholder" or "atlassian/viewer", got "atlassian/owner"`,
		`rules.yaml:18: workspaces[4].organization.invites_per_call: must be between 1 and 100 (Atlassian is reported to accept 25), got 500`,
		`rules.yaml:19: workspaces[4].rules[0].groups[0]: "Bitbucket Developers" is not a group slug (lowercase letters, digits, '-', '_', '.'; use the slug, not the display name)`,
	})

	good := `workspaces:
  - workspace: dc
    bitbucket: {deployment: datacenter, base_url: "https://bitbucket.acme.com"}
    rules: [{name: all, groups: [developers]}]
  - workspace: org
    organization: {id: org-1, groups: {developers: grp-1}}
    rules: [{name: all, groups: [developers]}]
  - workspace: unified
    administration: atlassian
    organization: {id: org-1, notification_text: "Welcome to Acme"}
    rules: [{name: all, groups: [Bitbucket Developers, readers]}]
`
	cfg, err := Parse("rules.yaml", []byte(good), nil)
	if err != nil {
		t.Fatal(err)
	}
	dc, org := cfg.Workspace("dc"), cfg.Workspace("org")
	if !dc.Bitbucket.DataCenter() || dc.Bitbucket.TokenEnv != DefaultDataCenterTokenEnv || dc.Bitbucket.Username != UsernameJiraName {
		t.Fatalf("datacenter defaults = %+v", dc.Bitbucket)
	}
	if org.Bitbucket.Deployment != BitbucketCloud || org.Organization.BaseURL != DefaultOrgBaseURL || org.Organization.APIKeyEnv != DefaultOrgAPIKeyEnv {
		t.Fatalf("organization defaults = %+v %+v", org.Bitbucket, org.Organization)
	}
	if org.Administration != AdministrationAuto || dc.Administration != "" {
		t.Fatalf("administration defaults = %q, %q; want auto and none for Data Center", org.Administration, dc.Administration)
	}
	u := cfg.Workspace("unified").Organization
	if u.Role != DefaultInviteRole || u.InvitesPerCall != DefaultInvitesPerCall || u.NotificationText != "Welcome to Acme" {
		t.Fatalf("unified organization defaults = %+v", u)
	}
}

// The early-check share and the member cache have defaults and are checked.
func TestEarlyCheckShareAndMemberCache(t *testing.T) {
	cfg, err := Parse("a.yaml", []byte("workspaces: []\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RateLimits.EarlyCheckShare != 0.1 || cfg.Bitbucket.MemberCache.MaxSize != 100000 || cfg.Bitbucket.MemberCache.MaxAge.D() != time.Hour {
		t.Fatalf("defaults: share %v, member cache %+v", cfg.RateLimits.EarlyCheckShare, cfg.Bitbucket.MemberCache)
	}
	_, err = Parse("a.yaml", []byte("rate_limits: {early_check_share: 1.5}\nbitbucket: {member_cache: {max_size: -1, max_age: 0s}}\nworkspaces: []\n"), nil)
	for _, want := range []string{"rate_limits.early_check_share", "bitbucket.member_cache.max_size", "bitbucket.member_cache.max_age"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}
