package config

import (
	"errors"
	"testing"
)

func TestReconcileDefaultsAndOverrides(t *testing.T) {
	cfg, err := Parse("r.yaml", []byte(`workspaces:
  - workspace: acme
    rules: [{name: r, groups: [g]}]
  - workspace: beta
    reconcile: {mode: apply, regrant_removed: true}
    rules: [{name: r, groups: [g]}]
  - workspace: gamma
    reconcile: {mode: off}
    rules: [{name: r, groups: [g]}]
`), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Reconcile.Schedule != "@daily" || cfg.Reconcile.Mode != ReconcileReport || cfg.Reconcile.PageSize != 100 {
		t.Fatalf("defaults = %+v", cfg.Reconcile)
	}
	for ws, want := range map[string]string{"acme": ReconcileReport, "beta": ReconcileApply, "gamma": ReconcileOff, "gone": ReconcileOff} {
		if got := cfg.ReconcileMode(ws); got != want {
			t.Errorf("ReconcileMode(%s) = %s, want %s", ws, got, want)
		}
	}
	if cfg.RegrantRemoved("acme") || !cfg.RegrantRemoved("beta") {
		t.Error("regrant_removed: only beta sets it")
	}
}

func TestReconcileValidation(t *testing.T) {
	_, err := Parse("r.yaml", []byte(`reconcile: {schedule: "every day", mode: fix, page_size: 5000}
workspaces:
  - workspace: acme
    reconcile: {mode: sometimes}
    rules: [{name: r, groups: [g]}]
`), func(string) string { return "" })
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want Errors, got %v", err)
	}
	assertErrors(t, errs, []string{
		`r.yaml:1: reconcile.schedule: invalid cron schedule "every day" (or "off"): expected exactly 5 fields, found 2: [every day]`,
		`r.yaml:1: reconcile.mode: must be "apply" or "report" or "off", got "fix"`,
		`r.yaml:1: reconcile.page_size: must be between 1 and 1000, got 5000`,
		`r.yaml:4: workspaces[0].reconcile.mode: must be "apply" or "report" or "off", got "sometimes"`,
	})
}
