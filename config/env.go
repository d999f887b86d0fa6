package config

import (
	"fmt"
	"os"
	"strings"
)

// Environment variables that override the file (they win over it).
var envOverrides = []struct {
	name, field string
	set         func(*Config, string)
}{
	{"AUTOINVITE_LISTEN", "listen", func(c *Config, v string) { c.Listen = v }},
	{"AUTOINVITE_REDIS_URL", "redis.url", func(c *Config, v string) { c.Redis.URL = v }},
	{"AUTOINVITE_JIRA_BASE_URL", "jira.base_url", func(c *Config, v string) { c.Jira.BaseURL = v }},
	{"AUTOINVITE_BITBUCKET_BASE_URL", "bitbucket.base_url", func(c *Config, v string) { c.Bitbucket.BaseURL = v }},
}

func applyEnv(c *Config, env func(string) string) Errors {
	if env == nil {
		return nil
	}
	for _, o := range envOverrides {
		if v := strings.TrimSpace(env(o.name)); v != "" {
			o.set(c, v)
			if c.overrides == nil {
				c.overrides = map[string]string{}
			}
			c.overrides[o.field] = o.name
		}
	}
	return nil
}

func (c *Config) envFields() map[string]string { return c.overrides }

// SetByEnv returns the environment variable that set field ("redis.url"),
// or "" when the field comes from the file.
func (c *Config) SetByEnv(field string) string { return c.overrides[field] }

// Secrets are the credentials autoinvite uses. They come only from the
// environment (or from files named by NAME_FILE variables), never from the
// config file, and they are never printed.
type Secrets struct {
	JiraEmail            string
	JiraAPIToken         string
	JiraBearerToken      string
	BitbucketEmail       string
	BitbucketAPIToken    string
	BitbucketAccessToken string
	WebhookSecret        string
	AdminUser            string
	AdminPassword        string
	// RedisPassword is the Redis password (it overrides a redis.url's own);
	// RedisSentinelPassword the Sentinels'.
	RedisPassword         string
	RedisSentinelPassword string
}

// SecretsFromEnv reads the secrets. For each NAME, NAME_FILE may name a file
// holding the value instead (Docker and Kubernetes secrets).
func SecretsFromEnv(env func(string) string) (Secrets, error) {
	var firstErr error
	get := func(name string) string {
		v, err := Secret(env, name)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return v
	}
	s := Secrets{
		JiraEmail:             get("AUTOINVITE_JIRA_EMAIL"),
		JiraAPIToken:          get("AUTOINVITE_JIRA_API_TOKEN"),
		JiraBearerToken:       get("AUTOINVITE_JIRA_BEARER_TOKEN"),
		BitbucketEmail:        get("AUTOINVITE_BITBUCKET_EMAIL"),
		BitbucketAPIToken:     get("AUTOINVITE_BITBUCKET_API_TOKEN"),
		BitbucketAccessToken:  get("AUTOINVITE_BITBUCKET_ACCESS_TOKEN"),
		WebhookSecret:         get(WebhookSecretEnv),
		AdminUser:             get(AdminUserEnv),
		AdminPassword:         get(AdminPasswordEnv),
		RedisPassword:         get(RedisPasswordEnv),
		RedisSentinelPassword: get("AUTOINVITE_REDIS_SENTINEL_PASSWORD"),
	}
	return s, firstErr
}

// The variables of the secrets a reload reads again besides the Atlassian
// credentials.
const (
	WebhookSecretEnv = "AUTOINVITE_JIRA_WEBHOOK_SECRET"
	AdminUserEnv     = "AUTOINVITE_ADMIN_USER"
	AdminPasswordEnv = "AUTOINVITE_ADMIN_PASSWORD"
	// RedisPasswordEnv overrides a redis.url's password too.
	RedisPasswordEnv = "AUTOINVITE_REDIS_PASSWORD"
)

// AtlassianSecretNames are the variables of the Jira and Bitbucket
// credentials, which a reload reads again (a token rotated in its _FILE).
func AtlassianSecretNames() []string {
	return []string{"AUTOINVITE_JIRA_EMAIL", "AUTOINVITE_JIRA_API_TOKEN", "AUTOINVITE_JIRA_BEARER_TOKEN",
		"AUTOINVITE_BITBUCKET_EMAIL", "AUTOINVITE_BITBUCKET_API_TOKEN", "AUTOINVITE_BITBUCKET_ACCESS_TOKEN"}
}

// Secret reads one secret from NAME, or from the file NAME_FILE names.
func Secret(env func(string) string, name string) (string, error) {
	if v := env(name); v != "" {
		return strings.TrimSpace(v), nil
	}
	if path := env(name + "_FILE"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("read %s_FILE: %w", name, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return "", nil
}

// HasAtlassianCredentials reports whether any Jira or Bitbucket credential is set.
func (s Secrets) HasAtlassianCredentials() bool {
	return s.JiraEmail+s.JiraAPIToken+s.JiraBearerToken+s.BitbucketEmail+s.BitbucketAPIToken+s.BitbucketAccessToken != ""
}

// ValidateCredentials checks that the credentials are complete for the deployment.
func (s Secrets) ValidateCredentials(jiraDeployment string) error {
	var problems []string
	switch jiraDeployment {
	case DeploymentDataCenter:
		if s.JiraBearerToken == "" {
			problems = append(problems, "Jira Data Center needs AUTOINVITE_JIRA_BEARER_TOKEN (a personal access token)")
		}
	default:
		if s.JiraEmail == "" || s.JiraAPIToken == "" {
			problems = append(problems, "Jira Cloud needs both AUTOINVITE_JIRA_EMAIL and AUTOINVITE_JIRA_API_TOKEN")
		}
	}
	if s.BitbucketAccessToken == "" && (s.BitbucketEmail == "" || s.BitbucketAPIToken == "") {
		problems = append(problems, "Bitbucket needs AUTOINVITE_BITBUCKET_EMAIL and AUTOINVITE_BITBUCKET_API_TOKEN, or AUTOINVITE_BITBUCKET_ACCESS_TOKEN")
	}
	if len(problems) > 0 {
		return fmt.Errorf("incomplete Atlassian credentials: %s", strings.Join(problems, "; "))
	}
	return nil
}

// String never shows a secret, only which ones are set.
func (s Secrets) String() string {
	set := func(v string) string {
		if v == "" {
			return "unset"
		}
		return "set"
	}
	return fmt.Sprintf("jira_email=%s jira_api_token=%s jira_bearer_token=%s bitbucket_email=%s bitbucket_api_token=%s bitbucket_access_token=%s webhook_secret=%s admin_user=%s admin_password=%s redis_password=%s redis_sentinel_password=%s",
		set(s.JiraEmail), set(s.JiraAPIToken), set(s.JiraBearerToken), set(s.BitbucketEmail),
		set(s.BitbucketAPIToken), set(s.BitbucketAccessToken), set(s.WebhookSecret), set(s.AdminUser), set(s.AdminPassword), set(s.RedisPassword), set(s.RedisSentinelPassword))
}

// GoString keeps %#v from printing secrets too.
func (s Secrets) GoString() string { return "config.Secrets{" + s.String() + "}" }
