package config

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// Notification events: what an admin is told about. Routine signups are none
// of them.
const (
	EventInvitationGivenUp = "invitation_given_up"
	EventRevocationHeld    = "revocation_held"
	EventAuthFailure       = "auth_failure"
	EventReloadFailed      = "reload_failed"
	EventPermanentFailure  = "permanent_failure"
	EventDigest            = "digest"
)

// NotificationEvents lists every event a sink's events: filter may name.
var NotificationEvents = []string{
	EventInvitationGivenUp, EventRevocationHeld, EventAuthFailure, EventReloadFailed, EventPermanentFailure, EventDigest,
}

// Defaults of the notifications block.
const (
	DefaultNotifyWindow   = 5 * time.Minute
	DefaultDigestSchedule = "0 8 * * *"
)

// Notifications says whom to tell about what needs an admin. Secrets (webhook
// signing keys, the Slack webhook URL, SMTP credentials) come from the
// environment variables the sinks name.
type Notifications struct {
	// PublicURL is where admins reach this service (https://autoinvite.example.com):
	// messages link to the person in the ledger view under it.
	PublicURL string `yaml:"public_url"`
	// Window aggregates bursts: one message per event kind per workspace per window.
	Window Duration `yaml:"aggregate_window"`
	// DigestSchedule fires the daily digest (cron, UTC; "" = no digest).
	DigestSchedule string        `yaml:"digest_schedule"`
	Webhooks       []WebhookSink `yaml:"webhooks"`
	Slack          []SlackSink   `yaml:"slack"`
	Email          *EmailSink    `yaml:"email"`
}

// WebhookSink receives each notification as a JSON POST.
type WebhookSink struct {
	URL string `yaml:"url"`
	// SecretEnv names the variable holding the HMAC-SHA256 key that signs the
	// body (X-Autoinvite-Signature: sha256=<hex>); "" sends unsigned.
	SecretEnv string   `yaml:"secret_env"`
	Events    []string `yaml:"events"`
}

// SlackSink posts a readable message to a Slack incoming webhook.
type SlackSink struct {
	// WebhookURLEnv names the variable holding the incoming webhook's URL (a secret).
	WebhookURLEnv string   `yaml:"webhook_url_env"`
	Events        []string `yaml:"events"`
}

// EmailSink mails each notification through an SMTP server.
type EmailSink struct {
	SMTPAddr    string   `yaml:"smtp_addr"` // host:port
	From        string   `yaml:"from"`
	To          []string `yaml:"to"`
	UsernameEnv string   `yaml:"username_env"`
	PasswordEnv string   `yaml:"password_env"`
	StartTLS    bool     `yaml:"starttls"`
	Events      []string `yaml:"events"`
}

// Enabled reports whether any sink is configured.
func (n Notifications) Enabled() bool {
	return len(n.Webhooks) > 0 || len(n.Slack) > 0 || n.Email != nil
}

// notifications validates and defaults the notifications block.
func (v *validator) notifications(n *Notifications) {
	const p = "notifications"
	if n.Window == 0 {
		n.Window = Duration(DefaultNotifyWindow)
	}
	if n.Window.D() < time.Second {
		v.fail(p+".aggregate_window", "must be at least 1s, got %s", n.Window)
	}
	if n.DigestSchedule == "" {
		n.DigestSchedule = DefaultDigestSchedule
	}
	if n.DigestSchedule != "off" {
		if _, err := CronParser.Parse(n.DigestSchedule); err != nil {
			v.fail(p+".digest_schedule", "invalid cron schedule %q (or \"off\"): %v", n.DigestSchedule, err)
		}
	}
	v.baseURL(p+".public_url", n.PublicURL)
	for i, w := range n.Webhooks {
		wp := fmt.Sprintf("%s.webhooks[%d]", p, i)
		if w.URL == "" {
			v.fail(wp+".url", "is required (where to POST the JSON)")
		}
		v.baseURL(wp+".url", w.URL)
		if w.SecretEnv != "" {
			v.envName(wp+".secret_env", w.SecretEnv)
		}
		v.events(wp+".events", w.Events)
	}
	for i, s := range n.Slack {
		sp := fmt.Sprintf("%s.slack[%d]", p, i)
		if s.WebhookURLEnv == "" {
			v.fail(sp+".webhook_url_env", "is required (the variable holding the Slack incoming webhook URL)")
		} else {
			v.envName(sp+".webhook_url_env", s.WebhookURLEnv)
		}
		v.events(sp+".events", s.Events)
	}
	if e := n.Email; e != nil {
		ep := p + ".email"
		if _, _, err := net.SplitHostPort(e.SMTPAddr); err != nil {
			v.fail(ep+".smtp_addr", "must be host:port (e.g. smtp.acme.com:587), got %q", e.SMTPAddr)
		}
		if !plainAddress(e.From) {
			v.fail(ep+".from", "must be one email address, got %q", e.From)
		}
		if len(e.To) == 0 {
			v.fail(ep+".to", "needs at least one address")
		}
		for i, to := range e.To {
			if !plainAddress(to) {
				v.fail(fmt.Sprintf("%s.to[%d]", ep, i), "must be one email address, got %q", to)
			}
		}
		if (e.UsernameEnv == "") != (e.PasswordEnv == "") {
			v.fail(ep+".username_env", "username_env and password_env go together (both or neither)")
		}
		if e.UsernameEnv != "" {
			v.envName(ep+".username_env", e.UsernameEnv)
		}
		if e.PasswordEnv != "" {
			v.envName(ep+".password_env", e.PasswordEnv)
		}
		v.events(ep+".events", e.Events)
	}
}

func (v *validator) events(field string, events []string) {
	for i, e := range events {
		if !slices.Contains(NotificationEvents, e) {
			v.fail(fmt.Sprintf("%s[%d]", field, i), "unknown event %q (known: %s)", e, strings.Join(NotificationEvents, ", "))
		}
	}
}

// plainAddress accepts one address with no display name, list or line break.
func plainAddress(s string) bool {
	at := strings.LastIndexByte(s, '@')
	return at > 0 && at < len(s)-1 && !strings.ContainsAny(s, " ,;<>\r\n\t")
}
