package validate

import "testing"

func TestEmail(t *testing.T) {
	for s, want := range map[string]bool{
		"ann@acme.com":               true,
		"ann.o'neil+bb@eng.acme.io":  true,
		"":                           false,
		"ann":                        false,
		"ann@localhost":              false,
		"Ann <ann@acme.com>":         false,
		"ann@acme.com,bob@acme.com":  false,
		"ann@acme.com bob@acme.com":  false,
		"ann@acme.com;bob@acme.com":  false,
		"ann@acme.com\r\nBcc: x@y.z": false,
		"ann@acme.com\n":             false,
		"\"a b\"@acme.com":           false,
	} {
		if got := Email(s); got != want {
			t.Errorf("Email(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestSlug(t *testing.T) {
	for s, want := range map[string]bool{
		"acme": true, "dev-team_2.x": true, "Developers": false, "../admin": false,
		"a/b": false, "a%2Fb": false, "": false, "-lead": false, "dev team": false,
	} {
		if got := Slug(s); got != want {
			t.Errorf("Slug(%q) = %v, want %v", s, got, want)
		}
	}
}

func FuzzEmailNeverAcceptsSeparators(f *testing.F) {
	for _, s := range []string{"ann@acme.com", "a@b.c,d@e.f", "x@y.z\r\nBcc: q@r.s", "Ann <a@b.c>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if Email(s) {
			for _, bad := range ",; \t\r\n<>" {
				for _, r := range s {
					if r == bad {
						t.Fatalf("accepted %q with %q", s, bad)
					}
				}
			}
		}
	})
}
