package config

import (
	"os"
	"strings"
	"testing"

	"github.com/autoinvite/autoinvite/internal/validate"
)

// The loader never panics; what it accepts is valid, and what it refuses is
// explained with the file name.
func FuzzParse(f *testing.F) {
	example, _ := os.ReadFile("../examples/autoinvite.yaml")
	f.Add(example)
	f.Add([]byte("workspaces:\n- workspace: acme\n  rules: [{name: r, groups: [g]}]\n"))
	f.Add([]byte("invitations: {expire_after: 7d, sweep_schedule: '*/5 * * * *'}\n"))
	f.Add([]byte("workspaces: [{workspace: A, rules: [{name: '', groups: []}]}]\nfoo: 1\n"))
	f.Add([]byte("listen: [\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data, nil)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error without its file: %v", err)
			}
			return
		}
		for _, ws := range cfg.Workspaces {
			if !validate.Slug(ws.Workspace) || len(ws.Rules) == 0 {
				t.Fatalf("accepted workspace %+v", ws)
			}
			for _, r := range ws.Rules {
				if r.Name == "" || len(r.Groups) == 0 {
					t.Fatalf("accepted rule %+v", r)
				}
				seen := map[string]bool{}
				for _, g := range r.Groups {
					// Atlassian-administered workspaces name organization
					// groups (spaces allowed); the others take slugs.
					ok := validate.Slug(g) || (ws.Administration == AdministrationAtlassian && validate.GroupName(g))
					if !ok || seen[g] {
						t.Fatalf("accepted group %q in %+v", g, ws)
					}
					seen[g] = true
				}
			}
		}
	})
}
