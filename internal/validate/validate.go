// Package validate checks what goes into Atlassian URLs and invitations.
package validate

import (
	"net/mail"
	"regexp"
	"strings"
)

// SlugPattern is the form of Bitbucket workspace and group slugs. Anything else
// would be a display name (or an injection attempt) and must not reach a URL path.
var SlugPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,99}$`)

// Slug reports whether s is a Bitbucket slug.
func Slug(s string) bool { return SlugPattern.MatchString(s) }

// Email reports whether s is one plain address: no display name, no list
// (commas, semicolons, spaces) and no header injection (CR, LF).
func Email(s string) bool {
	if s == "" || len(s) > 254 || strings.ContainsAny(s, ",; \t\r\n<>\"()") {
		return false
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return false
	}
	at := strings.LastIndexByte(s, '@')
	return at > 0 && strings.Contains(s[at+1:], ".")
}

// GroupName reports whether s can be an Atlassian organization group name:
// 1-255 printable characters, not blank at either end. Such names only ever
// travel in JSON bodies, never in a URL path.
func GroupName(s string) bool {
	if s == "" || len(s) > 255 || strings.TrimSpace(s) != s {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
