package notify

import (
	"fmt"
	"strings"
	"time"

	"github.com/autoinvite/autoinvite/config"
)

// Title names an event for a reader.
func Title(event string) string {
	switch event {
	case config.EventInvitationGivenUp:
		return "Invitation given up"
	case config.EventRevocationHeld:
		return "Revocation held by the circuit breaker"
	case config.EventAuthFailure:
		return "Atlassian refused autoinvite's credentials"
	case config.EventReloadFailed:
		return "Config reload refused"
	case config.EventPermanentFailure:
		return "Permanent failure"
	case config.EventDigest:
		return "Daily digest"
	}
	return event
}

// action says what the admin can do about an event.
func action(event string) string {
	switch event {
	case config.EventInvitationGivenUp:
		return "`autoinvite invites resend <email>` sends it again."
	case config.EventRevocationHeld:
		return "Check the removals, then `autoinvite revocations resume --workspace <ws>`."
	case config.EventAuthFailure:
		return "Check the API token or key and its scopes (`autoinvite doctor`)."
	case config.EventReloadFailed:
		return "The running config stays; fix the file (`autoinvite check-config`)."
	case config.EventPermanentFailure:
		return "The task is archived: see the ledger and the dashboard's archived tasks."
	}
	return ""
}

// Subject is a one-line summary (the email subject).
func Subject(m Message) string {
	s := "[autoinvite] " + Title(m.Event)
	if m.Workspace != "" {
		s += " in " + m.Workspace
	}
	if m.Count > 1 {
		s += fmt.Sprintf(" (%d)", m.Count)
	} else if m.Person != nil {
		s += ": " + m.Person.Label()
	}
	return s
}

// PlainText is the message for a person reading mail.
func PlainText(m Message) string {
	var b strings.Builder
	b.WriteString(Subject(m) + "\n\n")
	if m.Digest != nil {
		writeDigest(&b, *m.Digest)
	} else {
		if m.Workspace != "" {
			fmt.Fprintf(&b, "Workspace: %s\n", m.Workspace)
		}
		if p := m.Person; p != nil {
			fmt.Fprintf(&b, "Person:    %s", p.Label())
			if p.AccountID != "" && p.Email != "" {
				fmt.Fprintf(&b, " (account %s)", p.AccountID)
			}
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "When:      %s\n", m.Time.UTC().Format(time.RFC3339))
		if m.Detail != "" {
			fmt.Fprintf(&b, "Detail:    %s\n", m.Detail)
		}
		if m.Count > 1 {
			fmt.Fprintf(&b, "\n%d times between %s and %s.\n", m.Count, m.Time.UTC().Format("15:04:05"), m.LastTime.UTC().Format("15:04:05 MST"))
			if len(m.Others) > 0 {
				fmt.Fprintf(&b, "Also: %s\n", labels(m.Others))
			}
		}
		if a := action(m.Event); a != "" {
			b.WriteString("\n" + a + "\n")
		}
	}
	if m.Link != "" {
		fmt.Fprintf(&b, "\nIn the ledger: %s\n", m.Link)
	}
	return b.String()
}

func writeDigest(b *strings.Builder, d Digest) {
	fmt.Fprintf(b, "From %s to %s\n\n", d.Since.UTC().Format("2006-01-02 15:04"), d.Until.UTC().Format("2006-01-02 15:04 MST"))
	if len(d.Workspaces) == 0 {
		b.WriteString("Nothing happened.\n")
	}
	for _, w := range d.Workspaces {
		fmt.Fprintf(b, "%s: %d invited, %d accepted, %d given up\n", w.Workspace, w.Invited, w.Accepted, w.GivenUp)
		var parts []string
		for _, a := range w.Pending {
			if a.Count > 0 {
				parts = append(parts, fmt.Sprintf("%s: %d", a.Age, a.Count))
			}
		}
		if len(parts) > 0 {
			fmt.Fprintf(b, "  pending by age: %s\n", strings.Join(parts, ", "))
		}
	}
}

func labels(ps []Person) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Label()
	}
	return strings.Join(out, ", ")
}

// slackEscape escapes what Slack's mrkdwn treats as markup.
var slackEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// SlackText is the message in Slack's mrkdwn.
func SlackText(m Message) string {
	var b strings.Builder
	icon := ":warning:"
	if m.Event == config.EventDigest {
		icon = ":bar_chart:"
	}
	fmt.Fprintf(&b, "%s *%s*", icon, Title(m.Event))
	if m.Workspace != "" {
		fmt.Fprintf(&b, " in workspace `%s`", slackEscape.Replace(m.Workspace))
	}
	if m.Count > 1 {
		fmt.Fprintf(&b, " — %d times", m.Count)
	}
	b.WriteString("\n")
	if m.Digest != nil {
		var d strings.Builder
		writeDigest(&d, *m.Digest)
		b.WriteString(slackEscape.Replace(d.String()))
	} else {
		if p := m.Person; p != nil {
			b.WriteString(slackEscape.Replace(p.Label()))
			if p.AccountID != "" && p.Email != "" {
				fmt.Fprintf(&b, " (%s)", slackEscape.Replace(p.AccountID))
			}
			b.WriteString(": ")
		}
		b.WriteString(slackEscape.Replace(m.Detail) + "\n")
		if len(m.Others) > 0 {
			fmt.Fprintf(&b, "Also: %s\n", slackEscape.Replace(labels(m.Others)))
		}
		if a := action(m.Event); a != "" {
			b.WriteString("_" + slackEscape.Replace(a) + "_\n")
		}
	}
	if strings.HasPrefix(m.Link, "http") {
		fmt.Fprintf(&b, "<%s|Open in the ledger>", m.Link)
	}
	return strings.TrimRight(b.String(), "\n")
}
