package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const notifyRules = `
workspaces:
  - workspace: acme
    rules:
      - {name: everyone, match: {}, groups: [readers]}
`

func TestNotificationsLoadWithDefaults(t *testing.T) {
	src := `notifications:
  public_url: https://autoinvite.acme.com
  webhooks:
    - {url: "https://hooks.acme.com/autoinvite", secret_env: AUTOINVITE_NOTIFY_SECRET}
    - {url: "http://pager.internal/in", events: [auth_failure, reload_failed]}
  slack:
    - {webhook_url_env: AUTOINVITE_SLACK_URL, events: [digest, invitation_given_up]}
  email:
    smtp_addr: smtp.acme.com:587
    from: autoinvite@acme.com
    to: [it-ops@acme.com]
    username_env: AUTOINVITE_SMTP_USER
    password_env: AUTOINVITE_SMTP_PASSWORD
    starttls: true
` + notifyRules
	cfg, err := Parse("n.yaml", []byte(src), nil)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	n := cfg.Notifications
	if !n.Enabled() || len(n.Webhooks) != 2 || n.Webhooks[0].SecretEnv != "AUTOINVITE_NOTIFY_SECRET" || n.Slack[0].Events[0] != EventDigest {
		t.Fatalf("notifications = %+v", n)
	}
	if n.Window.D() != DefaultNotifyWindow || n.DigestSchedule != DefaultDigestSchedule {
		t.Fatalf("defaults not applied: window %s, digest %q", n.Window, n.DigestSchedule)
	}
	if e := n.Email; e == nil || !e.StartTLS || e.To[0] != "it-ops@acme.com" || e.PasswordEnv != "AUTOINVITE_SMTP_PASSWORD" {
		t.Fatalf("email = %+v", n.Email)
	}

	empty, err := Parse("e.yaml", []byte(notifyRules), nil)
	if err != nil || empty.Notifications.Enabled() {
		t.Fatalf("no notifications block: enabled=%v err=%v", empty.Notifications.Enabled(), err)
	}
	if empty.Notifications.Window.D() != 5*time.Minute {
		t.Fatalf("window default = %s", empty.Notifications.Window)
	}
}

func TestNotificationProblemsCarryFileLineAndField(t *testing.T) {
	src := `notifications:
  aggregate_window: 10ms
  digest_schedule: "daily please"
  webhooks:
    - {url: "ftp://hooks.acme.com", secret_env: "my secret value"}
    - {events: [invitation_expired]}
  slack:
    - {events: [digest]}
  email:
    smtp_addr: smtp.acme.com
    from: "Autoinvite <autoinvite@acme.com>"
    to: []
    username_env: SMTP_USER
` + notifyRules
	_, err := Parse("n.yaml", []byte(src), nil)
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want Errors, got %v", err)
	}
	got := err.Error()
	for _, want := range []string{
		`n.yaml:2: notifications.aggregate_window: must be at least 1s, got 10ms`,
		`n.yaml:3: notifications.digest_schedule: invalid cron schedule "daily please"`,
		`n.yaml:5: notifications.webhooks[0].url: must be an absolute http(s) URL, got "ftp://hooks.acme.com"`,
		`n.yaml:5: notifications.webhooks[0].secret_env: "my secret value" is not an environment variable name`,
		`n.yaml:6: notifications.webhooks[1].url: is required`,
		`n.yaml:6: notifications.webhooks[1].events[0]: unknown event "invitation_expired" (known: invitation_given_up, revocation_held, auth_failure, reload_failed, permanent_failure, digest)`,
		`n.yaml:8: notifications.slack[0].webhook_url_env: is required`,
		`n.yaml:10: notifications.email.smtp_addr: must be host:port`,
		`n.yaml:11: notifications.email.from: must be one email address`,
		`n.yaml:12: notifications.email.to: needs at least one address`,
		`n.yaml:13: notifications.email.username_env: username_env and password_env go together`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
}

func TestNotificationShapeErrors(t *testing.T) {
	src := `notifications:
  webhooks:
    - {url: "https://x.acme.com", secret: abc}
  email: [smtp.acme.com]
` + notifyRules
	_, err := Parse("n.yaml", []byte(src), nil)
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{
		`n.yaml:3: notifications.webhooks[0].secret: unknown field "secret" (known fields: events, secret_env, url)`,
		`n.yaml:4: notifications.email: expected a mapping of keys to values`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%s", want, err)
		}
	}
}
