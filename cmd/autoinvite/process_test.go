package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/autoinvite/autoinvite/intake"
	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/integrations/fake/faketest"
	"github.com/autoinvite/autoinvite/internal/redistest"
	"github.com/autoinvite/autoinvite/internal/testenv"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// autoinviteBinary builds the command once for the process tests.
func autoinviteBinary(t *testing.T) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "autoinvite-bin")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "autoinvite")
		// -buildvcs=auto: `autoinvite version` reports the revision when built in a checkout.
		out, err := exec.Command("go", "build", "-buildvcs=auto", "-o", binary, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// procEnv is a Redis, a fake Atlassian and a config shared by serve processes.
type procEnv struct {
	t      *testing.T
	redis  *redistest.Server
	fake   *faketest.Server
	config string
	queue  string
}

func newProcEnv(t *testing.T, extra string) *procEnv {
	srv := redistest.StartServer(t)
	f := faketest.Start(t)
	f.SeedDemo()
	cfg := filepath.Join(t.TempDir(), "autoinvite.yaml")
	os.WriteFile(cfg, []byte("redis: {key_prefix: proc}\n"+extra+testenv.DefaultRules), 0o600)
	return &procEnv{t: t, redis: srv, fake: f, config: cfg, queue: "proc:events"}
}

type proc struct {
	cmd  *exec.Cmd
	url  string
	logs *testenv.SyncBuffer
}

func (p *procEnv) start(args ...string) *proc {
	p.t.Helper()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	logs := &testenv.SyncBuffer{}
	cmd := exec.Command(autoinviteBinary(p.t), append([]string{"serve", "--config", p.config}, args...)...)
	cmd.Env = append(os.Environ(),
		"AUTOINVITE_LISTEN="+addr, "AUTOINVITE_REDIS_URL="+p.redis.URL,
		"AUTOINVITE_JIRA_BASE_URL="+p.fake.URL, "AUTOINVITE_BITBUCKET_BASE_URL="+p.fake.URL,
		"AUTOINVITE_JIRA_EMAIL=bot@acme.com", "AUTOINVITE_JIRA_API_TOKEN=t", "AUTOINVITE_BITBUCKET_ACCESS_TOKEN=t",
		"AUTOINVITE_JIRA_WEBHOOK_SECRET="+testenv.WebhookSecret)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	pr := &proc{cmd: cmd, url: "http://" + addr, logs: logs}
	p.t.Cleanup(func() {
		if pr.cmd.ProcessState == nil {
			pr.cmd.Process.Kill()
			pr.cmd.Wait()
		}
		if p.t.Failed() {
			p.t.Logf("process logs:\n%s", logs.String())
		}
	})
	waitFor(p.t, 20*time.Second, "serve to listen", func() bool {
		resp, err := http.Get(pr.url + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return pr
}

func (pr *proc) webhook(t *testing.T, id, email string) int {
	body := testenv.Payload("user_created", map[string]any{"accountId": id, "accountType": "atlassian", "emailAddress": email})
	req, _ := http.NewRequest(http.MethodPost, pr.url+"/webhooks/jira", strings.NewReader(string(body)))
	req.Header.Set(intake.HeaderSignature, intake.Sign([]byte(testenv.WebhookSecret), body))
	req.Header.Set(intake.HeaderDeliveryID, "d-"+id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (p *procEnv) inspector() *asynq.Inspector {
	opt, _ := asynq.ParseRedisURI(p.redis.URL)
	ins := asynq.NewInspector(opt)
	p.t.Cleanup(func() { ins.Close() })
	return ins
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// invitationCalls counts the invitation PUTs the fake answered, by status.
func invitationCalls(f *fake.Fake) map[int]int {
	out := map[int]int{}
	for _, c := range f.Calls() {
		if c.Method == http.MethodPut && c.Path == "/1.0/users/acme/invitations" {
			out[c.Status]++
		}
	}
	return out
}

// A worker killed with SIGKILL mid-task: another process recovers the task
// after the lease, and the person ends with exactly one invitation.
func TestWorkerKilledMidTaskIsRecoveredWithOneInvitation(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out Asynq's lease: about 75s")
	}
	p := newProcEnv(t, "")
	// Bitbucket is slow on the invitation and applies it even after the worker died.
	p.fake.InjectFault(fake.Fault{Method: http.MethodPut, PathPrefix: "/1.0/users/acme/invitations", Delay: 3 * time.Second, Apply: true, Times: 1})
	a := p.start()
	if code := a.webhook(t, fake.DemoNewcomerAccountID, "noah@acme.com"); code != http.StatusAccepted {
		t.Fatalf("webhook = %d", code)
	}
	ins := p.inspector()
	waitFor(t, 20*time.Second, "the task to be active", func() bool {
		tasks, _ := ins.ListActiveTasks(p.queue)
		return len(tasks) == 1
	})
	time.Sleep(500 * time.Millisecond) // the invitation request is on the wire
	a.cmd.Process.Signal(syscall.SIGKILL)
	a.cmd.Wait()

	// Asynq recovers a task once its lease (30s) expired 30s ago (clock-skew
	// margin); a new server's recoverer looks at start, then every minute.
	time.Sleep(62 * time.Second)
	b := p.start()
	var last *asynq.QueueInfo
	defer func() {
		if t.Failed() && last != nil {
			t.Logf("queue: %+v", *last)
		}
	}()
	waitFor(t, 60*time.Second, "the recovered task to finish", func() bool {
		info, err := ins.GetQueueInfo(p.queue)
		last = info
		return err == nil && info.Pending+info.Active+info.Retry+info.Scheduled == 0 && info.Processed >= 1
	})
	calls := invitationCalls(p.fake.Fake)
	if calls[200] != 1 || calls[409] != 1 || len(p.fake.Invitations("acme")) != 1 {
		t.Fatalf("invitation calls by status = %v, pending invitations = %d: want one sent (200) and the re-run's 409",
			calls, len(p.fake.Invitations("acme")))
	}
	// Info lines are written within milliseconds (logDelay), not at once.
	waitFor(t, 5*time.Second, "the second process to log the finished signup", func() bool {
		return strings.Contains(b.logs.String(), `"message":"signup processed"`)
	})
}

// SIGTERM: the intake stops, an in-flight task finishes within the shutdown
// timeout, and one that cannot goes back to the queue for the next process.
func TestGracefulShutdownFinishesOrRequeues(t *testing.T) {
	p := newProcEnv(t, "worker: {shutdown_timeout: 4s}\n")
	p.fake.InjectFault(fake.Fault{Method: http.MethodPut, PathPrefix: "/1.0/users/acme/invitations", Delay: time.Second, Times: 1})
	a := p.start()
	ins := p.inspector()
	if code := a.webhook(t, fake.DemoNewcomerAccountID, "noah@acme.com"); code != http.StatusAccepted {
		t.Fatalf("webhook = %d", code)
	}
	waitFor(t, 20*time.Second, "the task to be active", func() bool {
		tasks, _ := ins.ListActiveTasks(p.queue)
		return len(tasks) == 1
	})
	a.cmd.Process.Signal(syscall.SIGTERM)
	if err := a.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if code := a.webhook(t, fake.DemoMemberAccountID, "mia@acme.com"); code != 0 {
		t.Fatalf("the intake still answered after shutdown: %d", code)
	}
	if calls := invitationCalls(p.fake.Fake); calls[200] != 1 {
		t.Fatalf("in-flight task did not finish: %v", calls)
	}

	// A task longer than the shutdown timeout goes back to the queue.
	os.WriteFile(p.config, []byte("redis: {key_prefix: proc}\nworker: {shutdown_timeout: 500ms}\n"+testenv.DefaultRules), 0o600)
	p.fake.InjectFault(fake.Fault{Method: http.MethodPut, PathPrefix: "/1.0/groups/acme/developers/", Delay: 5 * time.Second, Times: 1})
	c := p.start()
	if code := c.webhook(t, fake.DemoMemberAccountID, "mia@acme.com"); code != http.StatusAccepted {
		t.Fatalf("webhook = %d", code)
	}
	waitFor(t, 20*time.Second, "the task to be active", func() bool {
		tasks, _ := ins.ListActiveTasks(p.queue)
		return len(tasks) == 1
	})
	c.cmd.Process.Signal(syscall.SIGTERM)
	c.cmd.Wait()
	info, err := ins.GetQueueInfo(p.queue)
	if err != nil || info.Pending+info.Retry+info.Scheduled != 1 || info.Active != 0 {
		t.Fatalf("unfinished task not back in the queue: %+v %v", info, err)
	}
	p.start()
	waitFor(t, 60*time.Second, "the requeued task to finish", func() bool {
		info, err := ins.GetQueueInfo(p.queue)
		return err == nil && info.Pending+info.Active+info.Retry+info.Scheduled == 0
	})
	if got := p.fake.GroupMembers("acme", "developers"); len(got) != 1 || got[0] != fake.DemoMemberAccountID {
		t.Fatalf("requeued task did not finish: developers = %v", got)
	}
	if got := p.fake.GroupMembers("acme", "readers"); len(got) != 1 {
		t.Fatalf("readers = %v", got)
	}
}

// Intake and workers as separate processes: the intake only queues, the
// worker only processes, and a webhook sent to the worker is refused.
func TestRolesSplitIntakeAndWorkers(t *testing.T) {
	p := newProcEnv(t, "")
	in := p.start("--role", "intake")
	ins := p.inspector()
	if code := in.webhook(t, fake.DemoNewcomerAccountID, "noah@acme.com"); code != http.StatusAccepted {
		t.Fatalf("webhook to the intake = %d", code)
	}
	time.Sleep(500 * time.Millisecond) // an intake-only process must not process it
	if info, err := ins.GetQueueInfo(p.queue); err != nil || info.Pending != 1 || len(p.fake.Calls()) != 0 {
		t.Fatalf("after intake only: %+v, %v, %d Atlassian calls; want 1 pending and none", info, err, len(p.fake.Calls()))
	}
	wk := p.start("--role", "worker")
	waitFor(t, 20*time.Second, "the worker to process the signup", func() bool {
		return invitationCalls(p.fake.Fake)[200] == 1
	})
	if code := wk.webhook(t, fake.DemoMemberAccountID, "mia@acme.com"); code != http.StatusNotFound {
		t.Fatalf("webhook to a worker-only process = %d, want 404", code)
	}
	waitFor(t, 5*time.Second, "the processes to log their roles", func() bool {
		return strings.Contains(wk.logs.String(), `"roles":"worker"`) && strings.Contains(in.logs.String(), `"roles":"intake"`)
	})
}

// serve batches its info lines (logDelay), but a clean stop writes them
// all: webhooks answered just before a SIGTERM each have their line, whole.
func TestCleanStopWritesEveryWebhookLine(t *testing.T) {
	p := newProcEnv(t, "")
	in := p.start("--role", "intake")
	const n = 40
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = in.webhook(t, fmt.Sprintf("557058:stop-%02d", i), fmt.Sprintf("p%02d@acme.com", i))
		}()
	}
	wg.Wait()
	if err := in.cmd.Process.Signal(syscall.SIGTERM); err != nil { // at once: lines may still be queued
		t.Fatal(err)
	}
	if err := in.cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v", err)
	}
	logs := in.logs.String()
	for i, code := range codes {
		want := fmt.Sprintf(`"delivery_id":"d-557058:stop-%02d"`, i)
		if code != http.StatusAccepted || strings.Count(logs, want) != 1 {
			t.Errorf("webhook %d: answered %d, logged %d times", i, code, strings.Count(logs, want))
		}
	}
	for _, line := range strings.Split(strings.TrimSuffix(logs, "\n"), "\n") {
		if !json.Valid([]byte(line)) {
			t.Fatalf("not a whole JSON line: %q", line)
		}
	}
}
