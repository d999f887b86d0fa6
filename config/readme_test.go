package config

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

// readmeConfigBlocks are the README's yaml blocks that are autoinvite
// configs or parts of one (they start with a top-level key), with the line
// each starts on.
func readmeConfigBlocks(t *testing.T) (blocks []string, lines []int) {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const fence = "```yaml\n"
	text, line := string(data), 1
	for {
		i := strings.Index(text, fence)
		if i < 0 {
			return blocks, lines
		}
		line += strings.Count(text[:i+len(fence)], "\n")
		text = text[i+len(fence):]
		block, rest, _ := strings.Cut(text, "```")
		key, _, _ := strings.Cut(block, ":")
		if topLevelKey(key) {
			blocks, lines = append(blocks, block), append(lines, line)
		}
		line += strings.Count(block, "\n")
		text = rest
	}
}

// topLevelKey reports whether key is one of Config's own keys.
func topLevelKey(key string) bool {
	ty := reflect.TypeFor[Config]()
	for i := range ty.NumField() {
		if tag, _, _ := strings.Cut(ty.Field(i).Tag.Get("yaml"), ","); tag == key && tag != "-" {
			return true
		}
	}
	return false
}

// The configuration reference is a whole config an admin can start from: it
// loads with no problem at all.
func TestREADMEConfigReferenceLoads(t *testing.T) {
	blocks, lines := readmeConfigBlocks(t)
	if len(blocks) == 0 || !strings.HasPrefix(blocks[0], "listen:") {
		t.Fatal("the README's first config block is not the configuration reference")
	}
	if _, err := Parse("README.md", []byte(blocks[0]), func(string) string { return "" }); err != nil {
		t.Errorf("the configuration reference (README.md line %d) does not load:\n%v", lines[0], err)
	}
}

// Every config excerpt in the README uses keys and types the loader knows:
// an excerpt may leave out what a whole config needs (rules, say), never
// misspell a key.
func TestREADMEConfigExcerptsUseKnownKeys(t *testing.T) {
	blocks, lines := readmeConfigBlocks(t)
	if len(blocks) < 4 {
		t.Fatalf("found %d config blocks in the README, want the reference, reconciliation, notifications and Redis ones", len(blocks))
	}
	for i, block := range blocks {
		_, err := Parse("README.md", []byte(block), func(string) string { return "" })
		var problems Errors
		if err != nil && !errors.As(err, &problems) {
			t.Errorf("README.md line %d: %v", lines[i], err)
			continue
		}
		for _, p := range problems {
			if strings.Contains(p.Msg, "unknown field") || strings.Contains(p.Msg, "cannot unmarshal") || strings.Contains(p.Msg, "expected a ") {
				t.Errorf("README.md block at line %d: %v", lines[i], p)
			}
		}
	}
}
