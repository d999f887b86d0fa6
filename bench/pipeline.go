package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/hibiken/asynq"

	"github.com/autoinvite/autoinvite/app"
	"github.com/autoinvite/autoinvite/intake"
	"github.com/autoinvite/autoinvite/integrations/atlassian"
	"github.com/autoinvite/autoinvite/integrations/bitbucket"
	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
)

// benchPipeline: signups from queued webhook to done (membership check, group
// adds or invitation, ledger) against the in-process fake Atlassian with no
// rate limit, against asynq running the same number of no-op tasks with the
// same concurrency.
func benchPipeline(ctx context.Context, env *benchEnv) error {
	n := env.o.signups
	hooks := signups(n, accountID)
	concurrency := 10

	// The limit: asynq and no-op handlers, same payloads, same concurrency.
	env.flush(ctx)
	noop, err := drainWith(ctx, env, hooks, concurrency, func(context.Context, *asynq.Task) error { return nil })
	if err != nil {
		return err
	}
	// Two floors, each asynq plus one unavoidable part of a signup and nothing
	// else: no design of the pipeline can be faster than either.
	env.flush(ctx)
	apiFloor, err := drainWith(ctx, env, hooks, concurrency, atlassianCallsOnly(pipelineFake(n)))
	if err != nil {
		return err
	}
	env.flush(ctx)
	ledgerFloor, err := drainWith(ctx, env, hooks, concurrency, ledgerOnly(ledger.New(env.rdb, keyPrefix, ledger.Options{})))
	if err != nil {
		return err
	}

	f := pipelineFake(n)
	fakeURL, stopFake, err := serveFake(f)
	if err != nil {
		return err
	}
	defer stopFake()

	env.flush(ctx)
	intakeOnly, err := env.newApp(fakeURL, benchRules, app.Roles{Intake: true}, nil)
	if err != nil {
		return err
	}
	for _, h := range hooks {
		req := httptest.NewRequest(http.MethodPost, "/webhooks/jira", bytes.NewReader(h.body))
		req.Header.Set(intake.HeaderSignature, h.signature)
		req.Header.Set(intake.HeaderDeliveryID, h.deliveryID)
		rec := httptest.NewRecorder()
		intakeOnly.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			return fmt.Errorf("intake answered %d: %s", rec.Code, rec.Body)
		}
	}
	intakeOnly.Close()
	worker, err := env.newApp(fakeURL, benchRules, app.Roles{Worker: true}, func(o *app.Options) { o.AtlassianTransport = f.RoundTripper() })
	if err != nil {
		return err
	}
	defer worker.Close()
	cpu0, rcpu0 := selfCPU(), env.redisCPU()
	if err := worker.StartWorkers(); err != nil {
		return err
	}
	took, err := env.waitProcessed(ctx, worker.Queue(), n, 5*time.Minute)
	if err != nil {
		return err
	}
	cpu, rcpu := selfCPU()-cpu0, env.redisCPU()-rcpu0
	calls := len(f.Calls())
	rate := float64(n) / took.Seconds()
	fmt.Printf("%d signups (half workspace members, half invited), worker.concurrency %d, fake Atlassian in process (no socket), no rate limit\n\n", n, concurrency)
	fmt.Println("| run | signups/s | time | CPU per signup (this process) | CPU per signup (redis-server) | Atlassian calls |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: |")
	row := func(name string, d drain, calls string) {
		fmt.Printf("| %s | %.0f | %s | %s | %s | %s |\n", name, d.rate, d.took.Round(time.Millisecond), perOp(d.cpu, n), perOp(d.redisCPU, n), calls)
	}
	row("asynq no-op tasks (the limit)", noop, "0")
	row("floor: asynq + the Atlassian calls alone (Bitbucket client, fake in process; no ledger, no rules)", apiFloor, fmt.Sprint(n*5/2))
	row("floor: asynq + the ledger alone (lock and read, write with audit records, unlock; no Atlassian)", ledgerFloor, "0")
	fmt.Printf("| autoinvite pipeline | %.0f | %s | %s | %s | %d |\n", rate, took.Round(time.Millisecond), perOp(cpu, n), perOp(rcpu, n), calls)
	fmt.Printf("\nratio %.2f (goal >= 0.50): %s. The process CPU includes the fake Atlassian answering %d calls.\n", rate/noop.rate, verdict(rate/noop.rate >= 0.5), calls)
	fmt.Printf("Floors as a share of the limit: Atlassian calls alone %.2f, ledger alone %.2f; the pipeline pays both, so its ceiling is about 1/(1/%.2f + 1/%.2f - 1) = %.2f.\n",
		apiFloor.rate/noop.rate, ledgerFloor.rate/noop.rate, apiFloor.rate/noop.rate, ledgerFloor.rate/noop.rate, ceiling(noop.rate, apiFloor.rate, ledgerFloor.rate)/noop.rate)

	// What the run left in Redis, for the capacity plan.
	auditKey := "{" + keyPrefix + "}:audit"
	records, _ := env.rdb.XLen(ctx, auditKey).Result()
	auditBytes, _ := env.rdb.MemoryUsage(ctx, auditKey, 0).Result()
	info, err := asynq.NewInspectorFromRedisClient(env.rdb).GetQueueInfo(worker.Queue())
	if err == nil && records > 0 && info.Completed > 0 {
		fmt.Printf("Left in Redis: %d audit records, %d B each; %d finished signup tasks kept for intake.dedup_window, about %d B each (Asynq's sampled estimate).\n",
			records, auditBytes/records, info.Completed, info.MemoryUsage/int64(info.Completed))
	}
	return nil
}

type drain struct {
	took          time.Duration
	rate          float64
	cpu, redisCPU time.Duration
}

// drainWith queues the webhooks' bodies as tasks and times asynq running
// handler on them with concurrency workers.
func drainWith(ctx context.Context, env *benchEnv, hooks []webhook, concurrency int, handler asynq.HandlerFunc) (drain, error) {
	queue := jobs.EventsQueue(keyPrefix)
	client := asynq.NewClientFromRedisClient(env.rdb)
	for _, h := range hooks {
		if _, err := client.EnqueueContext(ctx, asynq.NewTask(jobs.TypeUserEvent, h.body), asynq.TaskID(h.deliveryID),
			asynq.Queue(queue), asynq.Retention(24*time.Hour)); err != nil {
			return drain{}, err
		}
	}
	srv := asynq.NewServerFromRedisClient(env.rdb, asynq.Config{Concurrency: concurrency, Queues: map[string]int{queue: 1}, LogLevel: asynq.ErrorLevel})
	mux := asynq.NewServeMux()
	mux.Handle(jobs.TypeUserEvent, handler)
	cpu0, rcpu0 := selfCPU(), env.redisCPU()
	if err := srv.Start(mux); err != nil {
		return drain{}, err
	}
	defer srv.Shutdown()
	took, err := env.waitProcessed(ctx, queue, len(hooks), 5*time.Minute)
	if err != nil {
		return drain{}, err
	}
	return drain{took: took, rate: float64(len(hooks)) / took.Seconds(), cpu: selfCPU() - cpu0, redisCPU: env.redisCPU() - rcpu0}, nil
}

// ceiling is the best rate of work made of two parts, each measured on top of
// the same fixed cost (the limit): per-task times add, the fixed cost once.
func ceiling(limit, a, b float64) float64 { return 1 / (1/a + 1/b - 1/limit) }

// pipelineFake is the fake Atlassian of the pipeline runs: half of the people
// are workspace members already (check + 2 adds), half get an invitation
// (check + invite).
func pipelineFake(n int) *fake.Fake {
	f := fake.New()
	f.AddWorkspace("acme", "developers", "readers")
	for i := 0; i < n; i += 2 {
		f.AddMember("acme", accountID(i))
	}
	return f
}

// signupOf reads the person out of a Jira webhook body.
func signupOf(body []byte) (accountID, email string, err error) {
	var hook struct {
		User struct {
			AccountID    string `json:"accountId"`
			EmailAddress string `json:"emailAddress"`
		} `json:"user"`
	}
	err = json.Unmarshal(body, &hook)
	return hook.User.AccountID, hook.User.EmailAddress, err
}

// atlassianCallsOnly makes a signup's Bitbucket calls through the product's
// client and nothing else.
func atlassianCallsOnly(f *fake.Fake) asynq.HandlerFunc {
	bb := bitbucket.New(atlassian.Options{BaseURL: "http://fake", Transport: f.RoundTripper(), Timeout: 10 * time.Second,
		Auth: atlassian.Auth{Email: "bot@acme.com", Token: "t"}})
	return func(ctx context.Context, t *asynq.Task) error {
		account, email, err := signupOf(t.Payload())
		if err != nil {
			return err
		}
		member, err := bb.IsMember(ctx, "acme", account)
		if err != nil {
			return err
		}
		if !member {
			_, err = bb.Invite(ctx, "acme", email, "developers")
			return err
		}
		for _, g := range []string{"developers", "readers"} {
			if _, err := bb.AddToGroup(ctx, "acme", g, account); err != nil {
				return err
			}
		}
		return nil
	}
}

// ledgerOnly does a signup's ledger work and nothing else: lock and read,
// write the entry with its audit records (3 for a member, 2 for an
// invitation, as the pipeline does), unlock.
func ledgerOnly(store *ledger.Store) asynq.HandlerFunc {
	return func(ctx context.Context, t *asynq.Task) error {
		account, email, err := signupOf(t.Payload())
		if err != nil {
			return err
		}
		taskID, _ := asynq.GetTaskID(ctx)
		lock, entries, err := store.LockAndGet(ctx, account, taskID, 30*time.Second, []string{"acme"})
		if err != nil {
			return err
		}
		defer lock.Unlock()
		ctx = lock.Context(ctx)
		now := time.Now()
		e := entries["acme"]
		if e == nil {
			e = &ledger.Entry{Workspace: "acme", PersonID: account, AccountID: account, Email: email, CreatedAt: now}
		}
		e.UpdatedAt = now
		e.Record(now, "webhook", ledger.ActionDecided, "", "developers<-bench readers<-bench")
		if member := (account[len(account)-1]-'0')%2 == 0; member { // as in pipelineFake
			e.Grant("developers")
			e.Grant("readers")
			e.Record(now, "webhook", ledger.ActionGroupAdded, "developers", "")
			e.Record(now, "webhook", ledger.ActionGroupAdded, "readers", "")
			e.Status = ledger.StatusGranted
		} else {
			e.Invitations = append(e.Invitations, ledger.Invitation{Group: "developers", SentAt: now, ExpiresAt: now.Add(7 * 24 * time.Hour), State: ledger.InvitationPending})
			e.Record(now, "webhook", ledger.ActionInvitationSent, "developers", "")
			e.Status = ledger.StatusInvited
		}
		return store.Put(ctx, e)
	}
}

func perOp(d time.Duration, n int) string {
	return fmt.Sprintf("%.0f µs", float64(d)/float64(n)/float64(time.Microsecond))
}
