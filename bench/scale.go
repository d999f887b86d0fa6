package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/hibiken/asynq"

	"github.com/autoinvite/autoinvite/app"
	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/jobs"
)

// apiLatency is what every fake Atlassian call takes, the other cost of a
// signup (real Bitbucket calls take 100-300 ms).
const apiLatency = 50 * time.Millisecond

// benchScale: one and two `serve --role worker` processes draining the same
// queue, when the (fake) Atlassian's latency is the only other cost.
func benchScale(ctx context.Context, env *benchEnv) error {
	dir, err := os.MkdirTemp("", "autoinvite-scale")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	binary := filepath.Join(dir, "autoinvite")
	if out, err := exec.Command("go", "build", "-o", binary, "./cmd/autoinvite").CombinedOutput(); err != nil {
		return fmt.Errorf("build (run from the repository root): %v\n%s", err, out)
	}
	const n = 2000
	cfgPath := filepath.Join(dir, "autoinvite.yaml")
	if err := os.WriteFile(cfgPath, []byte("listen: 127.0.0.1:0\nredis: {key_prefix: "+keyPrefix+"}\n"+benchRules), 0o600); err != nil {
		return err
	}
	fmt.Printf("%d signups queued, then drained by `autoinvite serve --role worker` processes (worker.concurrency 10 each); every Atlassian call takes %s\n\n", n, apiLatency)
	fmt.Println("| worker processes | signups/s | time |")
	fmt.Println("| ---: | ---: | ---: |")
	var rates []float64
	for _, procs := range []int{1, 2} {
		// Each run starts from the same Atlassian: what a run granted and
		// invited would change the next one's answers and calls.
		fakeURL, stop, err := serveFake(scaleFake(n))
		if err != nil {
			return err
		}
		rate, took, err := drainProcesses(ctx, env, binary, cfgPath, fakeURL, n, procs)
		stop()
		if err != nil {
			return err
		}
		rates = append(rates, rate)
		fmt.Printf("| %d | %.0f | %s |\n", procs, rate, took.Round(time.Millisecond))
	}
	fmt.Printf("\ntwo processes / one: %.2f (about 2 expected): %s\n", rates[1]/rates[0], verdict(rates[1]/rates[0] >= 1.8))
	return nil
}

// scaleFake is the scale benchmark's Atlassian: a workspace where half of n
// signups are members, every call answered after apiLatency.
func scaleFake(n int) *fake.Fake {
	f := fake.New()
	f.AddWorkspace("acme", "developers", "readers")
	for i := 0; i < n; i += 2 {
		f.AddMember("acme", accountID(i))
	}
	f.InjectFault(fake.Fault{PathPrefix: "/", Delay: apiLatency})
	return f
}

// drainProcesses queues n signups and times procs worker processes draining them.
func drainProcesses(ctx context.Context, env *benchEnv, binary, cfgPath, fakeURL string, n, procs int) (float64, time.Duration, error) {
	env.flush(ctx)
	intakeOnly, err := env.newApp(fakeURL, benchRules, app.Roles{Intake: true}, nil)
	if err != nil {
		return 0, 0, err
	}
	for i, h := range signups(n, accountID) {
		if err := post(intakeOnly, "user_created", h.deliveryID, map[string]any{"accountId": accountID(i), "accountType": "atlassian", "emailAddress": fmt.Sprintf("p%07d@acme.com", i), "active": true}); err != nil {
			intakeOnly.Close()
			return 0, 0, err
		}
	}
	intakeOnly.Close()
	queue := jobs.EventsQueue(keyPrefix)
	ins := asynq.NewInspectorFromRedisClient(env.rdb)
	if err := ins.PauseQueue(queue); err != nil {
		return 0, 0, err
	}
	for p := 0; p < procs; p++ {
		cmd := exec.Command(binary, "serve", "--role", "worker", "--config", cfgPath, "--log-level", "warn")
		cmd.Env = append(os.Environ(), "AUTOINVITE_REDIS_URL="+env.redisURL, "AUTOINVITE_JIRA_BASE_URL="+fakeURL,
			"AUTOINVITE_BITBUCKET_BASE_URL="+fakeURL, "AUTOINVITE_JIRA_EMAIL=bot@acme.com", "AUTOINVITE_JIRA_API_TOKEN=t",
			"AUTOINVITE_BITBUCKET_ACCESS_TOKEN=t")
		if err := cmd.Start(); err != nil {
			return 0, 0, err
		}
		defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		servers, _ := ins.Servers()
		if len(servers) >= procs {
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("%d worker processes did not start", procs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := ins.UnpauseQueue(queue); err != nil {
		return 0, 0, err
	}
	took, err := env.waitProcessed(ctx, queue, n, 5*time.Minute)
	if err != nil {
		return 0, 0, err
	}
	return float64(n) / took.Seconds(), took, nil
}
