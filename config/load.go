package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// FieldError is one problem in a config file.
type FieldError struct {
	File  string // file name, or "env" for an environment override
	Line  int    // 1-based; 0 when unknown
	Field string // dotted path, e.g. workspaces[0].rules[1].groups
	Msg   string
}

func (e FieldError) Error() string {
	loc := e.File
	if loc == "" {
		loc = "config"
	}
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", loc, e.Line)
	}
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", loc, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", loc, e.Field, e.Msg)
}

// Errors is every problem found in one load, in file order.
type Errors []FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// LoadFile reads, decodes, defaults and validates a config file, then applies
// the environment overrides from env (nil means none).
func LoadFile(path string, env func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data, env)
}

// Parse is LoadFile for bytes already read; file names the source in errors.
func Parse(file string, data []byte, env func(string) string) (*Config, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	// io.EOF means an empty file: the defaults apply.
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, Errors{{File: file, Line: yamlErrorLine(err), Msg: cleanYAMLError(err)}}
	}
	cfg := Defaults()
	cfg.Source = file
	lines := map[string]int{}
	var shape Errors
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		doc := root.Content[0]
		bad := map[*yaml.Node]bool{}
		shape = checkShape(file, doc, reflect.TypeOf(cfg), "", lines, bad)
		// Decode even after shape errors, so that validation reports the rest
		// of the file in the same pass: a value of the wrong type is left out
		// (its default stays), and checkShape has already reported it.
		prune(doc, bad)
		if err := doc.Decode(&cfg); err != nil && len(shape) == 0 {
			var typeErr *yaml.TypeError
			if !errors.As(err, &typeErr) {
				return nil, Errors{{File: file, Line: yamlErrorLine(err), Msg: cleanYAMLError(err)}}
			}
			shape = append(shape, FieldError{File: file, Line: yamlErrorLine(err), Msg: cleanYAMLError(err)})
		}
	}
	errs := append(shape, applyEnv(&cfg, env)...)
	cfg.Hash = contentHash(data, cfg.overrides, cfg)
	errs = append(errs, withoutShapeFields(cfg.validate(file, lines), shape)...)
	if len(errs) > 0 {
		sortByLine(errs)
		return nil, errs
	}
	return &cfg, nil
}

// prune takes the values checkShape found bad out of the tree: mapping
// entries are dropped, list items become null (indices, and so field paths,
// stay as in the file).
func prune(n *yaml.Node, bad map[*yaml.Node]bool) {
	switch n.Kind {
	case yaml.MappingNode:
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			if bad[n.Content[i+1]] {
				continue
			}
			prune(n.Content[i+1], bad)
			kept = append(kept, n.Content[i], n.Content[i+1])
		}
		n.Content = kept
	case yaml.SequenceNode:
		for i, item := range n.Content {
			if bad[item] {
				n.Content[i] = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: item.Line, Column: item.Column}
				continue
			}
			prune(item, bad)
		}
	}
}

// withoutShapeFields drops validation errors about fields whose shape was
// already reported (a wrong type leaves the default, which may fail too).
func withoutShapeFields(errs, shape Errors) Errors {
	if len(shape) == 0 {
		return errs
	}
	var out Errors
	for _, e := range errs {
		under := false
		for _, s := range shape {
			if s.Field != "" && (e.Field == s.Field || strings.HasPrefix(e.Field, s.Field+".") || strings.HasPrefix(e.Field, s.Field+"[")) {
				under = true
				break
			}
		}
		if !under {
			out = append(out, e)
		}
	}
	return out
}

// sortByLine puts the file's problems in file order, then the environment's.
func sortByLine(errs Errors) {
	sort.SliceStable(errs, func(i, j int) bool {
		li, lj := errs[i].Line, errs[j].Line
		if (li == 0) != (lj == 0) {
			return lj == 0
		}
		return li < lj
	})
}

// contentHash hashes the file and the values the environment overrode.
func contentHash(data []byte, overrides map[string]string, c Config) string {
	h := sha256.New()
	h.Write(data)
	for _, field := range sortedKeys(overrides) {
		fmt.Fprintf(h, "\x00%s=%s", field, overrideValue(c, field))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func overrideValue(c Config, field string) string {
	switch field {
	case "listen":
		return c.Listen
	case "redis.url":
		return c.Redis.URL
	case "jira.base_url":
		return c.Jira.BaseURL
	case "bitbucket.base_url":
		return c.Bitbucket.BaseURL
	}
	return ""
}

var yamlLineRe = regexp.MustCompile(`line (\d+): `)

func yamlErrorLine(err error) int {
	m := yamlLineRe.FindStringSubmatch(err.Error())
	if m == nil {
		return 0
	}
	var n int
	fmt.Sscanf(m[1], "%d", &n)
	return n
}

func cleanYAMLError(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n")
	s = strings.TrimPrefix(s, "yaml: ")
	s = yamlLineRe.ReplaceAllString(strings.TrimSpace(s), "")
	return s
}

// checkShape walks the YAML tree against the Go type, reporting unknown keys and
// values of the wrong type with their lines, and records the line of every path.
func checkShape(file string, n *yaml.Node, t reflect.Type, path string, lines map[string]int, bad map[*yaml.Node]bool) Errors {
	lines[path] = n.Line
	orig := n
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	// fail marks the value bad, for prune.
	fail := func(msg string) Errors {
		bad[orig] = true
		return Errors{{file, n.Line, path, msg}}
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	var errs Errors
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String:
		if n.Kind != yaml.MappingNode {
			return fail("expected a mapping of keys to values")
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			sub := joinPath(path, key.Value)
			lines[sub] = key.Line
			errs = append(errs, checkShape(file, val, t.Elem(), sub, lines, bad)...)
			lines[sub] = key.Line
		}
	case t.Kind() == reflect.Struct && t != reflect.TypeOf(Duration(0)):
		if n.Kind != yaml.MappingNode {
			return fail("expected a mapping of keys to values")
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			sub := joinPath(path, key.Value)
			f, ok := fields[key.Value]
			if !ok {
				errs = append(errs, FieldError{file, key.Line, sub,
					fmt.Sprintf("unknown field %q (known fields: %s)", key.Value, strings.Join(sortedKeys(fields), ", "))})
				continue
			}
			lines[sub] = key.Line
			errs = append(errs, checkShape(file, val, f.Type, sub, lines, bad)...)
			lines[sub] = key.Line
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
		if n.Kind != yaml.SequenceNode {
			return fail("expected a list")
		}
		for i, item := range n.Content {
			errs = append(errs, checkShape(file, item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), lines, bad)...)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			return fail(fmt.Sprintf("expected a single %s value", scalarName(t)))
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			return fail(cleanYAMLError(err))
		}
	}
	return errs
}

func scalarName(t reflect.Type) string {
	switch {
	case t == reflect.TypeOf(Duration(0)):
		return "duration"
	case t.Kind() == reflect.String:
		return "string"
	case t.Kind() == reflect.Bool:
		return "boolean"
	default:
		return "number"
	}
}

func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if name == "" || name == "-" {
			continue
		}
		out[name] = f
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// UnmarshalYAML parses "90s", "15m", "168h"; "7d" is accepted as days for convenience.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ParseDuration reads a duration as the config does: Go's "90s", "15m",
// "168h", or a whole number of days, "7d". The CLI's flags use it too, so
// that what the config accepts the commands accept.
func ParseDuration(text string) (time.Duration, error) {
	s := strings.TrimSpace(text)
	if strings.HasSuffix(s, "d") {
		var days int
		if _, err := fmt.Sscanf(s, "%dd", &days); err == nil && fmt.Sprintf("%dd", days) == s {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: write a number with a unit, e.g. 90s, 15m, 168h or 7d", text)
	}
	return v, nil
}

// MarshalYAML writes the duration back in its text form.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }
