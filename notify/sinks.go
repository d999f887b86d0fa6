package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/smtp"
	"slices"
	"strings"
	"time"

	"github.com/autoinvite/autoinvite/config"
)

// HeaderSignature carries the HMAC-SHA256 of a webhook body: sha256=<hex>.
const HeaderSignature = "X-Autoinvite-Signature"

// Sign returns the X-Autoinvite-Signature value of body under secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Sink sends messages somewhere.
type Sink interface {
	Kind() string // webhook, slack, email
	Send(ctx context.Context, m Message) error
}

// permanentError is a refusal a retry cannot change (a 4xx, a missing secret).
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// sinkRef is a configured sink, by its stable id ("webhooks[0]", "slack[1]", "email").
type sinkRef struct {
	id     string
	events []string
}

func (s sinkRef) wants(event string) bool {
	return len(s.events) == 0 || slices.Contains(s.events, event)
}

func sinkRefs(c config.Notifications) []sinkRef {
	var out []sinkRef
	for i, w := range c.Webhooks {
		out = append(out, sinkRef{id: fmt.Sprintf("webhooks[%d]", i), events: w.Events})
	}
	for i, s := range c.Slack {
		out = append(out, sinkRef{id: fmt.Sprintf("slack[%d]", i), events: s.Events})
	}
	if c.Email != nil {
		out = append(out, sinkRef{id: "email", events: c.Email.Events})
	}
	return out
}

func kindOf(id string) string {
	switch {
	case strings.HasPrefix(id, "webhooks"):
		return "webhook"
	case strings.HasPrefix(id, "slack"):
		return "slack"
	}
	return "email"
}

// sink builds the sink with this id from the config in force, with its
// secrets from the environment.
func (n *Notifier) sink(id string) (Sink, error) {
	sinks, err := Sinks(n.o.Config(), n.o.Env, n.o.HTTP)
	if err != nil {
		return nil, err
	}
	s, ok := sinks[id]
	if !ok {
		return nil, fmt.Errorf("notifications.%s is no longer configured", id)
	}
	return s, nil
}

// Sinks builds every configured sink, keyed by id; it fails when a secret the
// config names is missing from the environment (checked at start and reload).
func Sinks(c config.Notifications, env func(string) string, client *http.Client) (map[string]Sink, error) {
	secret := func(field, name string) (string, error) {
		v, err := config.Secret(env, name)
		if err == nil && v == "" {
			err = fmt.Errorf("notifications.%s: the environment variable %s (or %s_FILE) is not set", field, name, name)
		}
		return v, err
	}
	out := map[string]Sink{}
	for i, w := range c.Webhooks {
		id := fmt.Sprintf("webhooks[%d]", i)
		s := &Webhook{URL: w.URL, Client: client}
		if w.SecretEnv != "" {
			v, err := secret(id+".secret_env", w.SecretEnv)
			if err != nil {
				return nil, err
			}
			s.Secret = []byte(v)
		}
		out[id] = s
	}
	for i, sl := range c.Slack {
		id := fmt.Sprintf("slack[%d]", i)
		v, err := secret(id+".webhook_url_env", sl.WebhookURLEnv)
		if err != nil {
			return nil, err
		}
		out[id] = &Slack{URL: v, Client: client}
	}
	if e := c.Email; e != nil {
		s := &Email{Addr: e.SMTPAddr, From: e.From, To: e.To, StartTLS: e.StartTLS}
		if e.UsernameEnv != "" {
			var err error
			if s.Username, err = secret("email.username_env", e.UsernameEnv); err != nil {
				return nil, err
			}
			if s.Password, err = secret("email.password_env", e.PasswordEnv); err != nil {
				return nil, err
			}
		}
		out["email"] = s
	}
	return out, nil
}

// Webhook POSTs the message as JSON, signed when it has a secret.
type Webhook struct {
	URL    string
	Secret []byte
	Client *http.Client
}

// Kind implements Sink.
func (w *Webhook) Kind() string { return "webhook" }

// Send implements Sink.
func (w *Webhook) Send(ctx context.Context, m Message) error {
	body, err := json.Marshal(m)
	if err != nil {
		return &permanentError{fmt.Errorf("encode: %w", err)}
	}
	h := http.Header{"Content-Type": {"application/json"}}
	if len(w.Secret) > 0 {
		h.Set(HeaderSignature, Sign(w.Secret, body))
	}
	return post(ctx, w.Client, w.URL, body, h, "webhook "+w.URL)
}

// Slack posts a readable message to an incoming webhook.
type Slack struct {
	URL    string // a secret: never in errors or logs
	Client *http.Client
}

// Kind implements Sink.
func (s *Slack) Kind() string { return "slack" }

// Send implements Sink.
func (s *Slack) Send(ctx context.Context, m Message) error {
	body, _ := json.Marshal(map[string]any{"text": SlackText(m), "unfurl_links": false})
	return post(ctx, s.Client, s.URL, body, http.Header{"Content-Type": {"application/json"}}, "Slack incoming webhook")
}

// post sends body; name describes the target without its secrets.
func post(ctx context.Context, client *http.Client, url string, body []byte, h http.Header, name string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return &permanentError{fmt.Errorf("%s: bad URL", name)}
	}
	req.Header = h
	req.Header.Set("User-Agent", "autoinvite-notify")
	resp, err := client.Do(req)
	if err != nil {
		var uerr interface{ Unwrap() error }
		if errors.As(err, &uerr) { // *url.Error carries the URL: keep only the cause
			err = uerr.Unwrap()
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	if resp.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("%s answered %d: %s", name, resp.StatusCode, strings.TrimSpace(string(snippet)))
	if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
		return &permanentError{err}
	}
	return err
}

// Email sends the message through an SMTP server.
type Email struct {
	Addr               string
	From               string
	To                 []string
	Username, Password string
	StartTLS           bool
	// TLSConfig overrides the STARTTLS settings (tests).
	TLSConfig *tls.Config
}

// Kind implements Sink.
func (e *Email) Kind() string { return "email" }

// Send implements Sink.
func (e *Email) Send(ctx context.Context, m Message) error {
	host, _, err := net.SplitHostPort(e.Addr)
	if err != nil {
		return &permanentError{fmt.Errorf("smtp_addr %q: %w", e.Addr, err)}
	}
	d := net.Dialer{Timeout: 15 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", e.Addr)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", e.Addr, err)
	}
	deadline := time.Now().Add(time.Minute)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	conn.SetDeadline(deadline)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp %s: %w", e.Addr, err)
	}
	defer c.Close()
	if e.StartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return &permanentError{fmt.Errorf("smtp %s does not offer STARTTLS (starttls: true)", e.Addr)}
		}
		cfg := e.TLSConfig
		if cfg == nil {
			cfg = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		}
		if err := c.StartTLS(cfg); err != nil {
			return fmt.Errorf("smtp %s: starttls: %w", e.Addr, err)
		}
	}
	if e.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", e.Username, e.Password, host)); err != nil {
			return fmt.Errorf("smtp %s: authenticate: %w", e.Addr, err)
		}
	}
	if err := c.Mail(e.From); err != nil {
		return fmt.Errorf("smtp %s: MAIL FROM: %w", e.Addr, err)
	}
	for _, to := range e.To {
		if err := c.Rcpt(to); err != nil {
			return fmt.Errorf("smtp %s: RCPT TO %s: %w", e.Addr, to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp %s: DATA: %w", e.Addr, err)
	}
	if _, err := w.Write(e.mail(m)); err != nil {
		return fmt.Errorf("smtp %s: write: %w", e.Addr, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp %s: end of data: %w", e.Addr, err)
	}
	return c.Quit()
}

func (e *Email) mail(m Message) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\n", e.From)
	fmt.Fprintf(&b, "To: %s\r\n", strings.Join(e.To, ", "))
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", Subject(m)))
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().UTC().Format(time.RFC1123Z))
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(strings.ReplaceAll(PlainText(m), "\n", "\r\n"))
	b.WriteString("\r\n")
	return []byte(b.String())
}
