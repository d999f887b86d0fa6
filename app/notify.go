package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-resty/resty/v2"
	"github.com/hibiken/asynq"
	"github.com/robfig/cron/v3"

	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
	"github.com/autoinvite/autoinvite/metrics"
	"github.com/autoinvite/autoinvite/notify"
	"github.com/autoinvite/autoinvite/outcome"
)

// notifyTimeout bounds the Redis work of recording one notification event,
// which happens inline where the event happens (the delivery does not).
const notifyTimeout = 2 * time.Second

// setUpNotifications builds the notifier, registers its task handlers and the
// ledger gauges.
func (a *App) setUpNotifications() error {
	n, err := notify.New(notify.Options{
		Redis: a.rdb, Prefix: a.cfg.Redis.KeyPrefix, Enqueue: a.client.EnqueueContext,
		Config: func() config.Notifications { return a.current.Load().cfg.Notifications },
		Env:    a.opts.Env, Now: a.now, MaxRetry: 12,
		Logger: a.log.With().Str("component", "notify").Logger(),
		Observe: func(sink, outcome string) {
			a.metrics.Lifecycle.Notifications.WithLabelValues(sink, outcome).Inc()
		},
		Digest: a.digest,
	})
	if err != nil {
		return err
	}
	a.notifier = n
	a.mux.HandleFunc(notify.TypeFlush, n.HandleFlush)
	a.mux.HandleFunc(notify.TypeDeliver, n.HandleDeliver)
	a.mux.HandleFunc(notify.TypeDigest, n.HandleDigest)
	a.metrics.WatchLedger(ledgerStats{a}, a.now)
	return nil
}

// ledgerStats reads the gauges from the ledger of the config in force.
type ledgerStats struct{ a *App }

func (s ledgerStats) PendingAges(ctx context.Context, now time.Time) ([]time.Duration, error) {
	return s.a.current.Load().ledger.PendingAges(ctx, now)
}

func (s ledgerStats) InvitationOutcomes(ctx context.Context) (map[string][2]int64, error) {
	return s.a.current.Load().ledger.InvitationOutcomes(ctx)
}

// notifyServerConfig adds the notifications queue and the permanent-failure
// hook to the Asynq server's config.
func (a *App) notifyServerConfig(c *asynq.Config) {
	queues := map[string]int{notify.Queue(a.cfg.Redis.KeyPrefix): 1}
	for q, w := range c.Queues {
		queues[q] = w
	}
	c.Queues = queues
	c.ErrorHandler = asynq.ErrorHandlerFunc(a.taskFailed)
}

// checkNotifications fails a config whose sinks' secrets are not in the
// environment (at start and at reload, like the other credentials).
func (a *App) checkNotifications(cfg *config.Config) error {
	if _, err := notify.Sinks(cfg.Notifications, a.opts.Env, nil); err != nil {
		return err
	}
	return nil
}

// emit records a notification event; a failure is logged, never passed on:
// telling admins must not fail the work being told about.
func (a *App) emit(ev notify.Event) {
	if a.notifier == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), notifyTimeout)
	defer cancel()
	if err := a.notifier.Emit(ctx, ev); err != nil {
		a.log.Warn().Err(err).Str("event", ev.Event).Msg("notification not recorded")
	}
}

// observeAudit sees every stored audit record: metrics, the acceptance
// statistics and the notifications the record calls for.
func (a *App) observeAudit(r ledger.AuditRecord) {
	a.metrics.ObserveAudit(r)
	if r.Outcome == ledger.OutcomeDryRun {
		return
	}
	switch r.Action {
	case ledger.ActionInvitationAccepted, ledger.ActionInvitationExpired:
		a.invitationDecided(r)
	}
	if ev, ok := notify.FromAudit(r); ok {
		a.emit(ev)
	}
}

// invitationDecided counts an invitation's outcome per workspace and times
// an acceptance from the first invitation.
func (a *App) invitationDecided(r ledger.AuditRecord) {
	rt := a.current.Load()
	if rt == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), notifyTimeout)
	defer cancel()
	accepted := r.Action == ledger.ActionInvitationAccepted
	if err := rt.ledger.CountInvitationOutcome(ctx, r.Workspace, accepted); err != nil {
		a.log.Warn().Err(err).Msg("invitation outcome not counted")
	}
	if !accepted {
		return
	}
	e, err := rt.ledger.Get(ctx, r.Workspace, r.PersonID)
	if err != nil || e == nil {
		return
	}
	if first := e.FirstInvitedAt(r.Group); !first.IsZero() && !r.Time.Before(first) {
		a.metrics.Lifecycle.Acceptance.Observe(r.Time.Sub(first).Seconds())
	}
}

// firstAction times a signup's first Atlassian write, once per task.
type firstAction struct {
	received time.Time
	once     sync.Once
}

type firstActionKey struct{}

// trackFirstAction marks ctx as a signup's task, received at received.
func trackFirstAction(ctx context.Context, ev jobs.UserEvent) context.Context {
	if ev.Deactivated() || ev.ReceivedAt.IsZero() {
		return ctx
	}
	return context.WithValue(ctx, firstActionKey{}, &firstAction{received: ev.ReceivedAt})
}

type callKey struct{}

// watchCalls hooks a client: 401/403 answers notify the admins, and a
// signup's first successful write is timed.
func (a *App) watchCalls(api string, c *resty.Client) {
	c.OnBeforeRequest(func(_ *resty.Client, r *resty.Request) error {
		// The path template: resty fills the parameters in later.
		r.SetContext(context.WithValue(r.Context(), callKey{}, r.Method+" "+r.URL))
		return nil
	})
	c.OnAfterResponse(func(_ *resty.Client, r *resty.Response) error {
		call, _ := r.Request.Context().Value(callKey{}).(string)
		status := r.StatusCode()
		switch {
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			// A 403 from a Bitbucket 1.0 write is how a workspace administered in
			// Atlassian Administration answers (administration: auto switches).
			if status == http.StatusForbidden && strings.Contains(call, "/1.0/") {
				return nil
			}
			a.emit(notify.Event{
				Event:  config.EventAuthFailure,
				Detail: fmt.Sprintf("%s answered %d to %s: check the credential and its scopes", api, status, call),
			})
		case r.Request.Method != http.MethodGet && !strings.Contains(call, "search") && (status < 300 || status == http.StatusConflict):
			if fa, ok := r.Request.Context().Value(firstActionKey{}).(*firstAction); ok {
				fa.once.Do(func() {
					a.metrics.Lifecycle.FirstAction.Observe(a.now().Sub(fa.received).Seconds())
				})
			}
		}
		return nil
	})
}

// taskFailed is Asynq's error hook: a task archived for good (a permanent
// failure, or retries spent) notifies the admins.
func (a *App) taskFailed(ctx context.Context, t *asynq.Task, err error) {
	if strings.HasPrefix(t.Type(), "notify:") || !outcome.IsFailure(err) {
		return
	}
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, ok := asynq.GetMaxRetry(ctx)
	if !errors.Is(err, asynq.SkipRetry) && (!ok || retried < maxRetry) {
		return
	}
	detail := strings.TrimSuffix(err.Error(), ": "+asynq.SkipRetry.Error())
	ev := notify.Event{Event: config.EventPermanentFailure, Detail: fmt.Sprintf("task %s archived: %s", t.Type(), detail)}
	switch t.Type() {
	case jobs.TypeUserEvent:
		if ue, derr := jobs.DecodeUserEvent(t.Payload()); derr == nil && ue.User.PersonID() != "" {
			ev.Person = &notify.Person{ID: ue.User.PersonID(), Email: ue.User.Email, AccountID: ue.User.AccountID}
		}
	case jobs.TypeBatch:
		if b, derr := jobs.DecodeBatch(t.Payload()); derr == nil {
			ev.Workspace = b.Items[0].Workspace
		}
	}
	a.emit(ev)
}

// notifyReloadFailed tells the admins a reload was refused.
func (a *App) notifyReloadFailed(err error) {
	a.emit(notify.Event{Event: config.EventReloadFailed, Detail: "the running config stays: " + err.Error()})
}

// scheduleDigest fires the daily digest on notifications.digest_schedule.
// Every scheduler may run it: the tick-stamped task lets one digest through.
func (a *App) scheduleDigest() error {
	spec := a.cfg.Notifications.DigestSchedule
	if a.notifier == nil || spec == "" || spec == "off" {
		return nil
	}
	sched, err := config.CronParser.Parse(spec)
	if err != nil {
		return fmt.Errorf("notifications.digest_schedule: %w", err)
	}
	c := cron.New(cron.WithLocation(time.UTC))
	c.Schedule(sched, cron.FuncJob(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.notifier.EnqueueDigest(ctx, a.now().UTC().Truncate(time.Minute)); err != nil {
			a.log.Warn().Err(err).Msg("digest not queued")
		}
	}))
	c.Start()
	a.closers = append(a.closers, func() { <-c.Stop().Done() })
	return nil
}

// digest sums up a period: per workspace, people invited, accepted and given
// up (from the audit trail), and pending invitations by age (the ledger).
func (a *App) digest(ctx context.Context, since, until time.Time) (notify.Digest, error) {
	st := a.current.Load().ledger
	type tally struct{ invited, accepted, givenUp map[string]bool }
	per := map[string]*tally{}
	get := func(ws string) *tally {
		if per[ws] == nil {
			per[ws] = &tally{map[string]bool{}, map[string]bool{}, map[string]bool{}}
		}
		return per[ws]
	}
	err := st.AuditBetween(ctx, since, until, func(r ledger.AuditRecord) {
		if r.Outcome == ledger.OutcomeDryRun || r.Workspace == "" {
			return
		}
		switch r.Action {
		case ledger.ActionInvitationSent:
			get(r.Workspace).invited[r.PersonID] = true
		case ledger.ActionInvitationAccepted:
			get(r.Workspace).accepted[r.PersonID] = true
		case ledger.ActionInvitationExpired:
			get(r.Workspace).givenUp[r.PersonID] = true
		}
	})
	if err != nil {
		return notify.Digest{}, err
	}
	pending, err := st.PendingInvitations(ctx)
	if err != nil {
		return notify.Digest{}, err
	}
	ages := map[string]map[string]int{}
	for _, p := range pending {
		get(p.Workspace)
		if ages[p.Workspace] == nil {
			ages[p.Workspace] = map[string]int{}
		}
		ages[p.Workspace][metrics.AgeBucket(p.Age(until))]++
	}
	d := notify.Digest{Since: since, Until: until}
	for ws, t := range per {
		w := notify.WorkspaceDigest{Workspace: ws, Invited: len(t.invited), Accepted: len(t.accepted), GivenUp: len(t.givenUp)}
		for _, b := range metrics.PendingAgeBuckets {
			w.Pending = append(w.Pending, notify.AgeCount{Age: b.Label, Count: ages[ws][b.Label]})
		}
		d.Workspaces = append(d.Workspaces, w)
	}
	slices.SortFunc(d.Workspaces, func(x, y notify.WorkspaceDigest) int { return strings.Compare(x.Workspace, y.Workspace) })
	return d, nil
}
