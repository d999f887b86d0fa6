package metrics

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// Operators copy metric names and alert rules from the README: every name
// it gives, with the prefix or in its lists that leave the prefix out, is a
// metric this package exports, and every metric is in the README.
func TestREADMENamesTheMetricsThatExist(t *testing.T) {
	defined := definedMetricNames(t)
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)

	named := map[string]bool{}
	for _, m := range regexp.MustCompile(`autoinvite_[a-z0-9_]+`).FindAllString(text, -1) {
		named[strings.TrimPrefix(histogramBase(m, defined), "autoinvite_")] = true
	}
	// The lists say "all prefixed autoinvite_" and give names alone, with
	// their labels, or inside an expression.
	lists := prefixlessLists(text)
	if len(lists) < 3 {
		t.Fatalf("found %d lists of metrics in the README, want the metrics, lifecycle and reconciliation lists", len(lists))
	}
	for _, list := range lists {
		for _, m := range regexp.MustCompile("`([a-z][a-z0-9_]*[a-z0-9])(\\{[^`]*\\})?( (?:==|!=|>|<)[^`]*)?`").FindAllStringSubmatch(list, -1) {
			if strings.Contains(m[1], "_") {
				named[strings.TrimPrefix(m[1], "autoinvite_")] = true
			}
		}
		for _, m := range regexp.MustCompile(`\(([a-z][a-z0-9_]*_[a-z0-9]+)[\[{)]`).FindAllStringSubmatch(list, -1) {
			named[strings.TrimPrefix(m[1], "autoinvite_")] = true
		}
	}
	for name := range named {
		if !defined["autoinvite_"+name] {
			t.Errorf("README names autoinvite_%s, which is not a metric", name)
		}
	}
	for name := range defined {
		if !named[strings.TrimPrefix(name, "autoinvite_")] {
			t.Errorf("metric %s is not in the README", name)
		}
	}
}

// definedMetricNames reads the names this package gives its metrics.
func definedMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`"(autoinvite_[a-z0-9_]+)"`).FindAllStringSubmatch(string(src), -1) {
			names[m[1]] = true
		}
	}
	if len(names) < 30 {
		t.Fatalf("found %d metric names in the package's sources, want them all", len(names))
	}
	return names
}

// histogramBase is a histogram's name for one of its series' names.
func histogramBase(name string, defined map[string]bool) string {
	for _, suffix := range []string{"_bucket", "_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && defined[base] {
			return base
		}
	}
	return name
}

// prefixlessLists are the README's paragraphs that list metrics without
// their prefix.
func prefixlessLists(readme string) []string {
	var lists []string
	for _, para := range strings.Split(readme, "\n\n") {
		if slices.ContainsFunc([]string{"**Metrics** (all prefixed", "**Invitation lifecycle metrics:**", "metrics: `reconcile_"}, func(s string) bool {
			return strings.Contains(para, s)
		}) {
			lists = append(lists, para)
		}
	}
	return lists
}

// The README's alerting rules are a Prometheus rules file an operator can
// load as it is.
func TestREADMEAlertingRulesParse(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "```yaml\ngroups:\n")
	if !ok {
		t.Fatal("README has no alerting rules (a yaml block starting with groups:)")
	}
	block, _, _ := strings.Cut(after, "```")
	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert, Expr, For string
				Labels           map[string]string
				Annotations      map[string]string
			}
		}
	}
	if err := yaml.Unmarshal([]byte("groups:\n"+block), &rules); err != nil {
		t.Fatalf("the README's alerting rules: %v", err)
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %+v: want an alert name, an expression, a severity and a summary", r)
			}
		}
	}
	if n < 8 {
		t.Errorf("%d alerting rules, want the README's 8 or more", n)
	}
}
