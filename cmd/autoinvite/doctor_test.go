package main

import (
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/internal/testenv"
)

const doctorRules = `
jira: {deployment: cloud}
workspaces:
  - workspace: acme
    rules: [{name: staff, match: {email_domains: [acme.com]}, groups: [developers, readers]}]
  - workspace: globex
    administration: atlassian
    organization: {id: ` + fake.DemoOrgID + `, base_url: $FAKE_URL}
    rules: [{name: staff, match: {email_domains: [globex.com]}, groups: [developers, readers]}]
  - workspace: acme-dc
    bitbucket: {deployment: datacenter, base_url: $FAKE_URL}
    rules: [{name: staff, match: {}, groups: [developers]}]
`

// doctorEnv runs doctor against the fake holding one workspace of each kind;
// env overrides its environment.
func doctorEnv(t *testing.T, rules string, override ...map[string]string) (*testenv.Env, func() (string, int)) {
	t.Helper()
	e := testenv.New(t, testenv.IntakeOnly())
	e.Fake.SeedAtlassianDemo()
	e.Fake.AddDataCenterGroups("developers")
	path := filepath.Join(t.TempDir(), "doctor.yaml")
	body := "redis: {key_prefix: " + e.Redis.Prefix + "}\n" + strings.ReplaceAll(rules, "$FAKE_URL", e.Fake.URL)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"AUTOINVITE_REDIS_URL":              e.Redis.URL,
		"AUTOINVITE_JIRA_BASE_URL":          e.Fake.URL,
		"AUTOINVITE_BITBUCKET_BASE_URL":     e.Fake.URL,
		"AUTOINVITE_JIRA_EMAIL":             "bot@acme.com",
		"AUTOINVITE_JIRA_API_TOKEN":         testenv.JiraToken,
		"AUTOINVITE_BITBUCKET_ACCESS_TOKEN": testenv.BitbucketToken,
		"AUTOINVITE_JIRA_WEBHOOK_SECRET":    testenv.WebhookSecret,
		config.DefaultOrgAPIKeyEnv:          testenv.OrgAPIKey,
		config.DefaultDataCenterTokenEnv:    testenv.DataCenterToken,
	}
	for _, o := range override {
		maps.Copy(env, o)
	}
	return e, func() (string, int) {
		t.Helper()
		e.Fake.ResetCalls()
		out, errOut, code := (&cliEnv{t: t, clock: testenv.NewClock(t0cli), env: env, cfg: path}).run("doctor")
		if errOut != "" {
			t.Fatalf("doctor wrote to stderr: %s", errOut)
		}
		for _, c := range e.Fake.Calls() {
			readOnly := c.Method == http.MethodGet || (c.Method == http.MethodPost && (strings.HasSuffix(c.Path, "/search") || strings.HasSuffix(c.Path, "/workspaces")))
			if !readOnly {
				t.Fatalf("doctor made a write call: %s", c)
			}
		}
		for _, secret := range []string{testenv.JiraToken, testenv.BitbucketToken, testenv.OrgAPIKey, testenv.DataCenterToken, testenv.WebhookSecret} {
			if strings.Contains(out, secret) {
				t.Fatalf("doctor printed a secret: %s", out)
			}
		}
		return strings.ReplaceAll(out, path, "doctor.yaml"), code
	}
}

func TestDoctorOnAGoodConfig(t *testing.T) {
	_, doctor := doctorEnv(t, doctorRules)
	out, code := doctor()
	golden(t, "doctor-good", out)
	if code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
}

// A webhook secret rotation left half done (two secrets accepted) is shown.
func TestDoctorShowsAWebhookSecretRotationUnderway(t *testing.T) {
	_, doctor := doctorEnv(t, doctorRules, map[string]string{"AUTOINVITE_JIRA_WEBHOOK_SECRET": testenv.WebhookSecret + "\nwhsec-next"})
	out, code := doctor()
	if !strings.Contains(out, "AUTOINVITE_JIRA_WEBHOOK_SECRET holds 2 secrets, each accepted (a rotation)") || strings.Contains(out, "whsec-next") {
		t.Fatalf("doctor output:\n%s", out)
	}
	if code != 0 {
		t.Fatalf("exit %d, want 0 (a warning)", code)
	}
}

func TestDoctorFindsAMissingGroup(t *testing.T) {
	rules := strings.Replace(doctorRules, "groups: [developers, readers]}]", "groups: [developers, ghosts]}]", 2)
	_, doctor := doctorEnv(t, rules)
	out, code := doctor()
	golden(t, "doctor-missing-group", out)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
}

func TestDoctorFindsAWrongWorkspace(t *testing.T) {
	_, doctor := doctorEnv(t, strings.Replace(doctorRules, "workspace: acme\n", "workspace: acmee\n", 1))
	out, code := doctor()
	golden(t, "doctor-wrong-workspace", out)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
}

func TestDoctorFindsBadCredentials(t *testing.T) {
	e, doctor := doctorEnv(t, doctorRules)
	for _, path := range []string{"/rest/api/3/users/search", "/2.0/user", "/admin/v2/orgs/" + fake.DemoOrgID + "/directories", "/rest/api/latest/admin/groups"} {
		e.Fake.InjectFault(fake.Fault{Method: "GET", PathPrefix: path, Status: http.StatusUnauthorized, Body: "Unauthorized"})
	}
	out, code := doctor()
	golden(t, "doctor-bad-credentials", out)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
}
