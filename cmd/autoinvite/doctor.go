package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/autoinvite/autoinvite/app"
	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/doctor"
	"github.com/autoinvite/autoinvite/intake"
	"github.com/autoinvite/autoinvite/integrations/atlassian"
	"github.com/autoinvite/autoinvite/integrations/bitbucket"
	"github.com/autoinvite/autoinvite/integrations/bitbucketdc"
	"github.com/autoinvite/autoinvite/integrations/jira"
	"github.com/autoinvite/autoinvite/integrations/organization"
	"github.com/autoinvite/autoinvite/ledger"
)

// doctor runs the live preflight: read-only calls against every API and
// workspace the config names; exit 1 when anything fails.
func (c *cli) doctor(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	path := configFlag(fs, c.env)
	timeout := durationFlag(fs, "timeout", 15*time.Second, "timeout of each call")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.LoadFile(*path, c.env)
	if err != nil {
		fmt.Fprintln(c.stderr, err)
		return 1
	}
	secrets, err := config.SecretsFromEnv(c.env)
	if err != nil {
		return c.fail(err)
	}
	o := doctor.Options{Config: cfg, WebhookSecrets: len(intake.Secrets([]byte(secrets.WebhookSecret))), MissingSecrets: map[string]string{}}
	if !cfg.Redis.Embedded() {
		rdb, err := app.ConnectRedis(cfg.Redis, secrets)
		if err != nil {
			return c.fail(err)
		}
		defer rdb.Close()
		o.Ping = func(ctx context.Context) error { return rdb.Ping(ctx).Err() }
		o.RedisPasswordFromEnv = secrets.RedisPassword != ""
		store := ledger.New(rdb, cfg.Redis.KeyPrefix, ledger.Options{})
		o.Learned = store.GetAdministration
	}
	opts := func(baseURL string, auth atlassian.Auth) atlassian.Options {
		return atlassian.Options{BaseURL: baseURL, Auth: auth, Timeout: *timeout, UserAgent: "autoinvite/" + app.Version + " (doctor)"}
	}
	dc := cfg.Jira.Deployment == config.DeploymentDataCenter
	switch {
	case cfg.Jira.BaseURL == "":
		o.MissingSecrets["jira"] = "jira.base_url (or AUTOINVITE_JIRA_BASE_URL) is not set"
	case dc && secrets.JiraBearerToken == "":
		o.MissingSecrets["jira"] = "AUTOINVITE_JIRA_BEARER_TOKEN is not set: a personal access token of a Jira Data Center admin"
	case !dc && (secrets.JiraEmail == "" || secrets.JiraAPIToken == ""):
		o.MissingSecrets["jira"] = "AUTOINVITE_JIRA_EMAIL and AUTOINVITE_JIRA_API_TOKEN are not both set: an Atlassian account email and API token"
	case dc:
		o.Jira = jira.New(opts(cfg.Jira.BaseURL, atlassian.Auth{Bearer: secrets.JiraBearerToken}), true)
	default:
		o.Jira = jira.New(opts(cfg.Jira.BaseURL, atlassian.Auth{Email: secrets.JiraEmail, Token: secrets.JiraAPIToken}), false)
	}
	switch {
	case secrets.BitbucketAccessToken != "":
		o.Bitbucket = bitbucket.New(opts(cfg.Bitbucket.BaseURL, atlassian.Auth{Bearer: secrets.BitbucketAccessToken}))
	case secrets.BitbucketEmail != "" && secrets.BitbucketAPIToken != "":
		o.Bitbucket = bitbucket.New(opts(cfg.Bitbucket.BaseURL, atlassian.Auth{Email: secrets.BitbucketEmail, Token: secrets.BitbucketAPIToken}))
	default:
		o.MissingSecrets["bitbucket"] = "set AUTOINVITE_BITBUCKET_EMAIL + AUTOINVITE_BITBUCKET_API_TOKEN or AUTOINVITE_BITBUCKET_ACCESS_TOKEN"
	}
	dcs, orgs := map[string]doctor.DataCenter{}, map[string]doctor.Organization{}
	for _, ws := range cfg.Workspaces {
		if ws.Bitbucket.DataCenter() {
			token, err := config.Secret(c.env, ws.Bitbucket.TokenEnv)
			if err != nil || token == "" {
				o.MissingSecrets[ws.Workspace] = ws.Bitbucket.TokenEnv + " is not set: an HTTP access token with ADMIN permission"
				continue
			}
			dcs[ws.Workspace] = bitbucketdc.New(opts(ws.Bitbucket.BaseURL, atlassian.Auth{Bearer: token}))
		}
		if org := ws.Organization; org != nil {
			key, err := config.Secret(c.env, org.APIKeyEnv)
			if err != nil || key == "" {
				o.MissingSecrets[ws.Workspace] = org.APIKeyEnv + " is not set: an organization API key from admin.atlassian.com → Settings → API keys"
				continue
			}
			orgs[ws.Workspace] = organization.New(opts(org.BaseURL, atlassian.Auth{Bearer: key}), org.ID, org.APIKeyEnv)
		}
	}
	o.DataCenter = func(ws string) doctor.DataCenter {
		if d, ok := dcs[ws]; ok {
			return d
		}
		return nil
	}
	o.Org = func(ws string) doctor.Organization {
		if d, ok := orgs[ws]; ok {
			return d
		}
		return nil
	}
	report := doctor.Run(ctx, o)
	if err := report.Write(c.stdout); err != nil {
		return c.fail(err)
	}
	if report.Failed() {
		return 1
	}
	return 0
}
