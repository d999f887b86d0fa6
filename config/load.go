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
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		doc := root.Content[0]
		if errs := checkShape(file, doc, reflect.TypeOf(cfg), "", lines); len(errs) > 0 {
			return nil, errs
		}
		if err := doc.Decode(&cfg); err != nil {
			return nil, Errors{{File: file, Line: yamlErrorLine(err), Msg: cleanYAMLError(err)}}
		}
	}
	if errs := applyEnv(&cfg, env); len(errs) > 0 {
		return nil, errs
	}
	cfg.Hash = contentHash(data, cfg.overrides, cfg)
	if errs := cfg.validate(file, lines); len(errs) > 0 {
		return nil, errs
	}
	return &cfg, nil
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
func checkShape(file string, n *yaml.Node, t reflect.Type, path string, lines map[string]int) Errors {
	lines[path] = n.Line
	if n.Kind == yaml.AliasNode {
		n = n.Alias
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
			return Errors{{file, n.Line, path, "expected a mapping of keys to values"}}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			sub := joinPath(path, key.Value)
			lines[sub] = key.Line
			errs = append(errs, checkShape(file, val, t.Elem(), sub, lines)...)
			lines[sub] = key.Line
		}
	case t.Kind() == reflect.Struct && t != reflect.TypeOf(Duration(0)):
		if n.Kind != yaml.MappingNode {
			return Errors{{file, n.Line, path, "expected a mapping of keys to values"}}
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
			errs = append(errs, checkShape(file, val, f.Type, sub, lines)...)
			lines[sub] = key.Line
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
		if n.Kind != yaml.SequenceNode {
			return Errors{{file, n.Line, path, "expected a list"}}
		}
		for i, item := range n.Content {
			errs = append(errs, checkShape(file, item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), lines)...)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			return Errors{{file, n.Line, path, fmt.Sprintf("expected a single %s value", scalarName(t))}}
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			errs = append(errs, FieldError{file, n.Line, path, cleanYAMLError(err)})
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
	s := strings.TrimSpace(n.Value)
	if strings.HasSuffix(s, "d") {
		var days int
		if _, err := fmt.Sscanf(s, "%dd", &days); err == nil && fmt.Sprintf("%dd", days) == s {
			*d = Duration(time.Duration(days) * 24 * time.Hour)
			return nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: write a number with a unit, e.g. 90s, 15m, 168h or 7d", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration back in its text form.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }
