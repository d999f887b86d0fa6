package doctor_test

import (
	"context"
	"testing"

	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/doctor"
)

// A password written into the config file's redis.url is a warning: where
// it should go instead depends on whether the variable already overrides
// it. A URL from the environment, or without a password, says nothing.
func TestDoctorWarnsOfARedisPasswordInTheConfigFile(t *testing.T) {
	const inFile = "redis: {url: \"redis://:s3cret@db.internal:6379/0\"}\n"
	for _, tc := range []struct {
		name, yaml, envURL string
		fromEnv            bool
		want               string // the check's detail; "" = no check
	}{
		{"in the file", inFile, "", false, "redis.url in the config file carries a password: move it to AUTOINVITE_REDIS_PASSWORD_FILE (or the variable), which overrides it and which a reload rotates"},
		{"overridden", inFile, "", true, "redis.url in the config file carries a password, which AUTOINVITE_REDIS_PASSWORD overrides: remove it from the file"},
		{"from the environment", "", "redis://:s3cret@db.internal:6379/0", false, ""},
		{"no password", "redis: {url: \"redis://db.internal:6379/0\"}\n", "", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse("autoinvite.yaml", []byte(tc.yaml), func(k string) string {
				if k == "AUTOINVITE_REDIS_URL" {
					return tc.envURL
				}
				return ""
			})
			if err != nil {
				t.Fatal(err)
			}
			report := doctor.Run(context.Background(), doctor.Options{
				Config: cfg, WebhookSecrets: 1, RedisPasswordFromEnv: tc.fromEnv,
				Ping:           func(context.Context) error { return nil },
				MissingSecrets: map[string]string{"jira": "not set", "bitbucket": "not set"},
			})
			var got []doctor.Check
			for _, c := range report.Checks {
				if c.Name == "redis password" {
					got = append(got, c)
				}
			}
			switch {
			case tc.want == "" && len(got) != 0:
				t.Fatalf("checks = %+v; want none", got)
			case tc.want != "" && (len(got) != 1 || got[0].Result != doctor.Warn || got[0].Detail != tc.want):
				t.Fatalf("checks = %+v; want one warning %q", got, tc.want)
			}
		})
	}
}
