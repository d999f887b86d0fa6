package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestCheckConfigReportsEveryProblemAndExitsNonZero(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	os.WriteFile(path, []byte(`invitations: {expire_after: 168h, sweep_schedule: "@every 15m", max_resends: 3}
workspaces:
  - workspace: acme
    rules:
      - name: engineers
        match: {email_regex: "(("}
        groups: [developers]
      - name: engineers
        groups: []
`), 0o600)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"check-config", "--config", path}, &out, &errOut, func(string) string { return "" })
	want := path + ":6: workspaces[0].rules[0].match.email_regex: invalid regular expression: error parsing regexp: missing closing ): `((`\n" +
		path + ":8: workspaces[0].rules[1].name: duplicate rule name \"engineers\" in workspace \"acme\"\n" +
		path + ":9: workspaces[0].rules[1].groups: a rule needs at least one Bitbucket group\n"
	if code != 1 || errOut.String() != want {
		t.Fatalf("exit %d, stderr:\n%s\nwant:\n%s", code, errOut.String(), want)
	}
}

func TestCheckConfigAcceptsTheExample(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"check-config", "--config", "../../examples/autoinvite.yaml"}, &out, &errOut, func(string) string { return "" })
	if code != 0 || out.String() != "../../examples/autoinvite.yaml: OK (2 workspaces, 3 rules)\n" {
		t.Fatalf("exit %d, out %q, err %q", code, out.String(), errOut.String())
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"frobnicate"}, &out, &errOut, func(string) string { return "" }); code != 2 {
		t.Fatalf("exit %d", code)
	}
}
