package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/internal/testenv"
)

// freeAddr is a loopback address nothing listens on (for a moment).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// quickStart is what README.md's quick start tells a new user to type.
type quickStart struct {
	serve  []string   // go run ./cmd/autoinvite serve …
	curls  [][]string // curl …, tokenised as sh would
	list   []string   // go run ./cmd/autoinvite invites list …
	output string     // the invites list output the README shows
}

// readQuickStart takes the commands from README.md's quick start, so that
// the test follows it word for word and fails when the README changes.
func readQuickStart(t *testing.T) quickStart {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, "## Quick start")
	end := strings.Index(text, "## Setting it up for real")
	if start < 0 || end < start {
		t.Fatal("README.md has no quick start section")
	}
	var qs quickStart
	blocks := regexp.MustCompile("(?s)```(sh)?\n(.*?)```").FindAllStringSubmatch(text[start:end], -1)
	for _, b := range blocks {
		if b[1] != "sh" {
			if strings.HasPrefix(b[2], "PERSON ") {
				qs.output = b[2]
			}
			continue
		}
		for _, cmd := range shellCommands(b[2]) {
			switch {
			case len(cmd) > 3 && strings.Join(cmd[:4], " ") == "go run ./cmd/autoinvite serve":
				qs.serve = cmd[3:]
			case len(cmd) > 4 && strings.Join(cmd[:5], " ") == "go run ./cmd/autoinvite invites list":
				qs.list = cmd[3:]
			case cmd[0] == "curl":
				qs.curls = append(qs.curls, cmd)
			}
		}
	}
	if qs.serve == nil || qs.list == nil || len(qs.curls) == 0 || qs.output == "" {
		t.Fatalf("README quick start: serve %q, invites list %q, %d curls, output %q", qs.serve, qs.list, len(qs.curls), qs.output)
	}
	return qs
}

// shellCommands splits a sh snippet into commands and words: comments,
// backslash-newlines and single quotes, which is all the README uses.
func shellCommands(src string) [][]string {
	var cmds [][]string
	var words []string
	var word strings.Builder
	inWord, quoted, comment := false, false, false
	flushWord := func() {
		if inWord {
			words = append(words, word.String())
			word.Reset()
			inWord = false
		}
	}
	flushCmd := func() {
		flushWord()
		if len(words) > 0 {
			cmds = append(cmds, words)
			words = nil
		}
	}
	for i := 0; i < len(src); i++ {
		ch := src[i]
		switch {
		case comment:
			if ch == '\n' {
				comment = false
				flushCmd()
			}
		case quoted:
			if ch == '\'' {
				quoted = false
			} else {
				word.WriteByte(ch)
			}
		case ch == '\'':
			quoted, inWord = true, true
		case ch == '\\' && i+1 < len(src) && src[i+1] == '\n':
			i++
			flushWord()
		case ch == '#' && !inWord:
			comment = true
		case ch == '\n':
			flushCmd()
		case ch == ' ' || ch == '\t':
			flushWord()
		default:
			word.WriteByte(ch)
			inWord = true
		}
	}
	flushCmd()
	return cmds
}

// curl does what the README's curl command does, against addr instead of
// localhost:8080 (tests must not take fixed ports).
func curl(t *testing.T, args []string, addr string) (int, string) {
	t.Helper()
	method, target, body := http.MethodGet, "", ""
	header := http.Header{}
	for i := 1; i < len(args); i++ {
		switch args[i] {
		case "-s":
		case "-X":
			i++
			method = args[i]
		case "-H":
			i++
			k, v, _ := strings.Cut(args[i], ":")
			header.Set(k, strings.TrimSpace(v))
		case "-d":
			i++
			body = args[i]
			if method == http.MethodGet {
				method = http.MethodPost
			}
		default:
			if strings.HasPrefix(args[i], "-") {
				t.Fatalf("the test does not know curl's %s", args[i])
			}
			target = args[i]
		}
	}
	target = strings.Replace(target, "localhost:8080", addr, 1)
	req, err := http.NewRequest(method, "http://"+target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // what curl -d sends
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

var timestamps = regexp.MustCompile(`\d{4}-\d{2}-\d{2} \d{2}:\d{2}`)

// The README's quick start, followed word for word from the repository's
// root with the built binary in place of `go run ./cmd/autoinvite`: start
// the service, send the curl signups, then `invites list` shows what the
// README says. Only the two ports move (AUTOINVITE_LISTEN and
// AUTOINVITE_EMBEDDED_REDIS_ADDR), so that tests never take fixed ones.
func TestQuickStartWordForWord(t *testing.T) {
	qs := readQuickStart(t)
	bin := autoinviteBinary(t)
	root, _ := filepath.Abs("../..")
	listen, redisAddr := freeAddr(t), freeAddr(t)
	env := append(os.Environ(), "AUTOINVITE_LISTEN="+listen, "AUTOINVITE_EMBEDDED_REDIS_ADDR="+redisAddr)
	env = slicesWithout(env, "AUTOINVITE_REDIS_URL=", "AUTOINVITE_JIRA_", "AUTOINVITE_BITBUCKET_", "AUTOINVITE_CONFIG=")

	logs := &testenv.SyncBuffer{}
	serve := exec.Command(bin, qs.serve...)
	serve.Dir, serve.Env, serve.Stdout, serve.Stderr = root, env, logs, logs
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		serve.Process.Signal(syscall.SIGTERM)
		serve.Wait()
		if t.Failed() {
			t.Logf("serve logs:\n%s", logs.String())
		}
	})
	waitFor(t, 20*time.Second, "serve to listen", func() bool { return strings.Contains(logs.String(), "autoinvite serving") })

	accepted := regexp.MustCompile(`^\{"status":"accepted","task_id":"delivery:[^"]+","request_id":"[^"]+"\}\n$`)
	for _, c := range qs.curls {
		if code, body := curl(t, c, listen); code != http.StatusAccepted || !accepted.MatchString(body) {
			t.Fatalf("%s: %d %s", strings.Join(c, " "), code, body)
		}
	}

	// The admin command, as typed: it finds the embedded Redis by itself.
	list := func() (string, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, qs.list...)
		var out, errOut bytes.Buffer
		cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = root, env, &out, &errOut
		err := cmd.Run()
		return out.String(), errOut.String(), err
	}
	want := timestamps.ReplaceAllString(qs.output, "YYYY-MM-DD hh:mm")
	var got, errOut string
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		got, errOut, err = list()
		if err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(qs.list, " "), err, errOut)
		}
		got = timestamps.ReplaceAllString(got, "YYYY-MM-DD hh:mm")
		if got == want || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got != want {
		t.Fatalf("invites list (times masked):\n%s\nREADME shows:\n%s", got, want)
	}
	golden(t, "quickstart-invites-list", got)
}

// slicesWithout drops environment entries with any of the prefixes: the
// quick start runs with none of the developer's settings.
func slicesWithout(env []string, prefixes ...string) []string {
	var out []string
next:
	for _, kv := range env {
		for _, p := range prefixes {
			if strings.HasPrefix(kv, p) {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

var _ = fmt.Sprint
