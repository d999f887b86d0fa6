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
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/autoinvite/autoinvite/jobs"
)

const (
	senders      = 64
	intakeRounds = 7
)

// benchIntake: signed webhooks per second and latency through autoinvite's
// intake, against the limit: a handler that only reads the body and enqueues.
// Both run as their own processes, built from this checkout, with their logs
// on and written to files; the load generator (this process) reads every
// answer and counts anything but a 202 as an error.
func benchIntake(ctx context.Context, env *benchEnv) error {
	hooks := signups(env.o.requests, accountID)
	queue := jobs.EventsQueue(keyPrefix)

	dir, err := os.MkdirTemp("", "autoinvite-bench-intake")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := buildBinaries(dir, "./cmd/autoinvite", "./bench/minimal-intake"); err != nil {
		return err
	}
	minimal, err := startMinimal(dir, env.redisURL, queue)
	if err != nil {
		return err
	}
	defer minimal.stop()
	ai, err := startAutoinvite(dir, env.redisURL)
	if err != nil {
		return err
	}
	defer ai.stop()

	// Warm both up (connections, pools, the GC's pacing), then run the rounds,
	// alternating which goes first so that drift hits both alike.
	warm := hooks[:min(2000, len(hooks))]
	for _, p := range []*intakeProcess{minimal, ai} {
		env.flush(ctx)
		if r := load(p.url, warm, senders); r.errors > 0 {
			return fmt.Errorf("warm-up: %d of %d requests to %s failed; its log: %s", r.errors, r.n, p.name, p.logPath)
		}
	}
	var m, a intakeRuns
	for round := 0; round < intakeRounds; round++ {
		order := []*intakeProcess{minimal, ai}
		if round%2 == 1 {
			order = []*intakeProcess{ai, minimal}
		}
		for _, p := range order {
			env.flush(ctx)
			run, err := p.run(hooks, env)
			if err != nil {
				return fmt.Errorf("round %d: %w", round, err)
			}
			if p == minimal {
				m = append(m, run)
			} else {
				a = append(a, run)
			}
		}
	}
	env.flush(ctx)
	opt, err := asynq.ParseRedisURI(env.redisURL)
	if err != nil {
		return err
	}
	client := asynq.NewClient(opt)
	defer client.Close()
	bare := bareEnqueue(ctx, client, queue, len(hooks))
	env.flush(ctx)

	ratios := make([]float64, intakeRounds)
	for i := range ratios {
		ratios[i] = a[i].rate() / m[i].rate()
	}
	ratio, p99Ratio := median(ratios), a.median(p99)/m.median(p99)
	fmt.Printf("%d signed webhooks per run, %d concurrent senders over loopback keep-alive connections, every answer read;\n", len(hooks), senders)
	fmt.Printf("each handler its own process with its logs on (written to a file); median of %d interleaved rounds\n\n", intakeRounds)
	fmt.Println("| handler | webhooks/s | p50 | p99 | CPU µs/webhook | log B/webhook | load generator, redis CPU µs/webhook |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, x := range []struct {
		name string
		runs intakeRuns
	}{{"minimal net/http + Enqueue (the limit)", m}, {"autoinvite serve --role intake", a}} {
		fmt.Printf("| %s | %.0f | %s | %s | %.0f | %.0f | %.0f, %.0f |\n", x.name, x.runs.median(rate), ms(time.Duration(x.runs.median(p50))),
			ms(time.Duration(x.runs.median(p99))), x.runs.median(cpuPerWebhook), x.runs.median(logPerWebhook),
			x.runs.median(loadPerWebhook), x.runs.median(redisPerWebhook))
	}
	fmt.Printf("| bare asynq Enqueue, %d goroutines, no HTTP | %.0f | | | | | |\n", senders, bare)
	fmt.Printf("\nper round: minimal %s webhooks/s; autoinvite %s; ratio %s\n", m.list(rate, "%.0f"), a.list(rate, "%.0f"), joinf(ratios, "%.2f"))
	// On a shared machine the rates follow what else runs; the CPU each
	// webhook costs the three processes moves less (the verdict is on rates).
	total := func(r intakeRun) float64 {
		return float64((r.cpu + r.loadCPU + r.redisCPU).Microseconds()) / float64(r.n)
	}
	fmt.Printf("CPU per webhook, intake + load generator + redis: minimal %.0f µs, autoinvite %.0f µs (ratio %.2f)\n",
		m.median(total), a.median(total), m.median(total)/a.median(total))
	fmt.Printf("ratio %.3f (median of the rounds' ratios, range %.2f-%.2f; goal >= 0.80), p99 ratio %.2f (goal <= 1.50): %s\n",
		ratio, slices.Min(ratios), slices.Max(ratios), p99Ratio, verdict(ratio >= 0.8 && p99Ratio <= 1.5))
	return nil
}

// intakeProcess is one handler under test, running as its own process.
type intakeProcess struct {
	name    string
	url     string
	cmd     *exec.Cmd
	logPath string
	log     *os.File
	logged  int64 // bytes of log read so far
}

// intakeRun is what one run of the load against one process measured.
type intakeRun struct {
	loadResult
	cpu      time.Duration // the process's CPU time during the run
	loadCPU  time.Duration // the load generator's (this process's)
	redisCPU time.Duration // redis-server's
	logBytes int64
}

type intakeRuns []intakeRun

func rate(r intakeRun) float64          { return r.rate() }
func p50(r intakeRun) float64           { return float64(r.p50) }
func p99(r intakeRun) float64           { return float64(r.p99) }
func cpuPerWebhook(r intakeRun) float64 { return float64(r.cpu.Microseconds()) / float64(r.n) }
func logPerWebhook(r intakeRun) float64 { return float64(r.logBytes) / float64(r.n) }
func loadPerWebhook(r intakeRun) float64 {
	return float64(r.loadCPU.Microseconds()) / float64(r.n)
}
func redisPerWebhook(r intakeRun) float64 {
	return float64(r.redisCPU.Microseconds()) / float64(r.n)
}

func (rs intakeRuns) median(f func(intakeRun) float64) float64 {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	return median(xs)
}

func (rs intakeRuns) list(f func(intakeRun) float64, format string) string {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	return joinf(xs, format)
}

func joinf(xs []float64, format string) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(s, ", ")
}

// run sends every hook to the process and checks that it logged a line for each.
func (p *intakeProcess) run(hooks []webhook, env *benchEnv) (intakeRun, error) {
	cpu, self, redis := processCPU(p.cmd.Process.Pid), selfCPU(), env.redisCPU()
	r := load(p.url, hooks, senders)
	run := intakeRun{loadResult: r, loadCPU: selfCPU() - self, redisCPU: env.redisCPU() - redis}
	if r.errors > 0 {
		return run, fmt.Errorf("%d of %d requests to %s failed; its log: %s", r.errors, r.n, p.name, p.logPath)
	}
	lines, size, err := p.awaitLogLines(len(hooks))
	run.logBytes = size
	if err != nil {
		return run, err
	}
	run.cpu = processCPU(p.cmd.Process.Pid) - cpu // its log writes included
	if lines < len(hooks) {
		return run, fmt.Errorf("%s logged %d lines for %d webhooks within %s: logs must be on", p.name, lines, len(hooks), logWait)
	}
	return run, nil
}

// logWait: how long after its last answer a process's log lines may come.
const logWait = time.Second

// awaitLogLines counts the lines the process logs from now until there are
// want of them or logWait has passed: a process may write its lines a
// little after its answers (autoinvite batches info lines for a few
// milliseconds).
func (p *intakeProcess) awaitLogLines(want int) (lines int, size int64, err error) {
	for deadline := time.Now().Add(logWait); ; time.Sleep(time.Millisecond) {
		n, s, err := p.newLogLines()
		if err != nil {
			return lines, size, err
		}
		lines, size = lines+n, size+s
		if lines >= want || time.Now().After(deadline) {
			return lines, size, nil
		}
	}
}

// newLogLines counts the lines the process logged since the last call.
func (p *intakeProcess) newLogLines() (lines int, size int64, err error) {
	f, err := os.Open(p.logPath)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, p.logged, 1<<62))
	if err != nil {
		return 0, 0, err
	}
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 { // whole lines only
		b = b[:i+1]
	} else {
		b = nil
	}
	p.logged += int64(len(b))
	return bytes.Count(b, []byte("\n")), int64(len(b)), nil
}

func (p *intakeProcess) stop() {
	p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	p.log.Close()
}

// buildBinaries builds the packages (paths relative to the module root) into dir.
func buildBinaries(dir string, pkgs ...string) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return fmt.Errorf("run the benchmarks inside the autoinvite module (go env GOMOD: %v)", err)
	}
	cmd := exec.Command("go", append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)...)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", strings.Join(pkgs, " "), err, out)
	}
	return nil
}

// startAutoinvite runs the real binary as an intake-only process, configured
// as the README says (a config file, Redis and secrets in the environment),
// logging at info, as deployed, to a file.
func startAutoinvite(dir, redisURL string) (*intakeProcess, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "autoinvite.yaml")
	if err := os.WriteFile(cfg, []byte("redis: {key_prefix: "+keyPrefix+"}\n"+benchRules), 0o600); err != nil {
		return nil, err
	}
	return startProcess("autoinvite", filepath.Join(dir, "autoinvite"), addr, "/webhooks/jira", "/readyz",
		[]string{"serve", "--config", cfg, "--role", "intake", "--log-level", "info"},
		"AUTOINVITE_LISTEN="+addr, "AUTOINVITE_REDIS_URL="+redisURL,
		// Atlassian is never called by an intake; the credentials only let it start.
		"AUTOINVITE_JIRA_BASE_URL=http://127.0.0.1:1", "AUTOINVITE_BITBUCKET_BASE_URL=http://127.0.0.1:1",
		"AUTOINVITE_JIRA_EMAIL=bot@acme.com", "AUTOINVITE_JIRA_API_TOKEN=t", "AUTOINVITE_BITBUCKET_ACCESS_TOKEN=t",
		"AUTOINVITE_JIRA_WEBHOOK_SECRET="+webhookSecret)
}

// startMinimal runs bench/minimal-intake, the limit.
func startMinimal(dir, redisURL, queue string) (*intakeProcess, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	return startProcess("minimal", filepath.Join(dir, "minimal-intake"), addr, "/", "",
		nil, "MINIMAL_LISTEN="+addr, "MINIMAL_REDIS_URL="+redisURL, "MINIMAL_QUEUE="+queue)
}

// startProcess starts bin with its stdout and stderr going to a log file in
// the binary's directory, and waits until it answers on addr (GET ready, or
// a TCP connection when ready is empty).
func startProcess(name, bin, addr, path, ready string, args []string, env ...string) (*intakeProcess, error) {
	// Not next to the config: the service watches the config's directory,
	// and a log written there would wake the watcher at every line.
	logPath := filepath.Join(filepath.Dir(bin), "logs", filepath.Base(bin)+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		return nil, err
	}
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() { // the machine's Go settings (GOMAXPROCS, GOGC…), none of autoinvite's
		if !strings.HasPrefix(kv, "AUTOINVITE_") && !strings.HasPrefix(kv, "MINIMAL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	p := &intakeProcess{name: name, url: "http://" + addr + path, cmd: cmd, logPath: logPath, log: log}
	exited := make(chan struct{})
	go func() { cmd.Process.Wait(); close(exited) }()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-exited:
			b, _ := os.ReadFile(logPath)
			log.Close()
			return nil, fmt.Errorf("%s exited at start:\n%s", name, b)
		default:
		}
		if up(addr, ready) {
			if _, _, err := p.newLogLines(); err != nil { // start-up lines are not per request
				p.stop()
				return nil, err
			}
			return p, nil
		}
	}
	p.stop()
	b, _ := os.ReadFile(logPath)
	return nil, fmt.Errorf("%s did not start within 30s:\n%s", name, b)
}

func up(addr, ready string) bool {
	if ready == "" {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	resp, err := http.Get("http://" + addr + ready)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// processCPU is a process's user and system CPU time so far (0 if unknown).
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return 0
	}
	fields := strings.Fields(string(b[i+2:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// bareEnqueue is the enqueue rate with no HTTP at all.
func bareEnqueue(ctx context.Context, client *asynq.Client, queue string, n int) float64 {
	payload := signups(1, accountID)[0].body
	start := time.Now()
	fanOut(n, senders, func(_, i int) {
		client.EnqueueContext(ctx, asynq.NewTask(jobs.TypeUserEvent, payload), asynq.TaskID(fmt.Sprintf("bare-%d", i)), asynq.Queue(queue))
	})
	return float64(n) / time.Since(start).Seconds()
}

func verdict(ok bool) string {
	if ok {
		return "MET"
	}
	return "NOT MET"
}

// noRateLimits turns the Atlassian budgets off: the benchmarks measure autoinvite.
const noRateLimits = `
rate_limits:
  bitbucket: {requests: 0}
  bitbucket_invitations: {requests: 0}
  jira: {requests: 0}
`

// benchRules: everyone at acme.com gets developers; everyone gets readers.
const benchRules = noRateLimits + `
workspaces:
  - workspace: acme
    rules:
      - name: staff
        match: {email_domains: [acme.com]}
        groups: [developers]
      - name: everyone
        match: {}
        groups: [readers]
`
