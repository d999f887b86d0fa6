// Package metrics defines autoinvite's Prometheus metrics. Each App owns one
// registry: no global state, so tests and several apps in one process coexist.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/go-resty/resty/v2"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/autoinvite/autoinvite/integrations/ratelimit"
	"github.com/autoinvite/autoinvite/ledger"
)

// Results of a config reload (the result label of autoinvite_config_reloads_total).
const (
	ReloadSuccess   = "success"
	ReloadUnchanged = "unchanged"
	ReloadFailure   = "failure"
)

// Metrics holds every metric autoinvite exports.
type Metrics struct {
	Registry *prometheus.Registry

	Webhooks         *prometheus.CounterVec   // event, outcome
	IntakeDuration   prometheus.Histogram     //
	SignupDuration   prometheus.Histogram     // webhook received -> task done
	AtlassianCalls   *prometheus.CounterVec   // api, endpoint, status
	AtlassianLatency *prometheus.HistogramVec // api
	Invitations      *prometheus.CounterVec   // event: sent, resent, accepted, expired, cancelled
	Groups           *prometheus.CounterVec   // action: granted, revoked
	RevocationsHeld  prometheus.Counter
	Decisions        *prometheus.CounterVec // outcome of audited decisions (ok, failed, dry-run...)
	RateLimitWaits   *prometheus.CounterVec // api
	AuthFailures     *prometheus.CounterVec // api, status: 401/403, the operator must act
	ReloadSuccess    prometheus.Gauge
	ReloadTimestamp  prometheus.Gauge
	ConfigInfo       *prometheus.GaugeVec   // hash: 1 for the config in force
	Reloads          *prometheus.CounterVec // result

	// Lifecycle: invitation SLO histograms and notification counters (lifecycle.go).
	Lifecycle *Lifecycle

	// byAction counts audit records by action (the series exist from the start at 0).
	byAction map[string]prometheus.Counter
}

// New registers the metrics, Go and process collectors, and the queue
// collector over inspector (nil to skip).
func New(inspector *asynq.Inspector) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		Webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "autoinvite_webhooks_total", Help: "Jira webhooks received, by event and outcome (accepted, duplicate, ignored, refused_*, unavailable).",
		}, []string{"event", "outcome"}),
		IntakeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "autoinvite_intake_duration_seconds", Help: "Time to answer a webhook.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		SignupDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "autoinvite_signup_duration_seconds", Help: "From webhook received to its task done (groups added or invitation sent).",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800},
		}),
		AtlassianCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "autoinvite_atlassian_requests_total", Help: "Atlassian API calls by API, endpoint template and HTTP status (0 = no answer).",
		}, []string{"api", "endpoint", "status"}),
		AtlassianLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "autoinvite_atlassian_request_duration_seconds", Help: "Atlassian API call latency.",
			Buckets: prometheus.DefBuckets,
		}, []string{"api"}),
		Invitations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "autoinvite_invitations_total", Help: "Invitations by event: sent, resent, accepted, expired (given up), cancelled.",
		}, []string{"event"}),
		Groups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "autoinvite_group_changes_total", Help: "Group memberships granted and revoked.",
		}, []string{"action"}),
		RevocationsHeld: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "autoinvite_revocations_held_total", Help: "Group removals held by the circuit breaker.",
		}),
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "autoinvite_audit_records_total", Help: "Audit records written, by outcome.",
		}, []string{"outcome"}),
		RateLimitWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "autoinvite_rate_limit_waits_total", Help: "Times a task waited for the Atlassian rate budget (429s included).",
		}, []string{"api"}),
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "autoinvite_atlassian_auth_failures_total", Help: "Atlassian answers 401/403: credentials or scopes need an operator.",
		}, []string{"api", "status"}),
		ReloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "autoinvite_config_last_reload_successful", Help: "Whether the last config reload succeeded (1) or failed (0).",
		}),
		ReloadTimestamp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "autoinvite_config_last_reload_success_timestamp_seconds", Help: "Time of the last successful config load.",
		}),
		ConfigInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "autoinvite_config_info", Help: "1 for the config in force, labelled with its hash (as in the reload answer and the logs), to spot processes running different configs.",
		}, []string{"hash"}),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "autoinvite_config_reloads_total", Help: "Config reload attempts by result.",
		}, []string{"result"}),
	}
	reg.MustRegister(m.Webhooks, m.IntakeDuration, m.SignupDuration, m.AtlassianCalls, m.AtlassianLatency,
		m.Invitations, m.Groups, m.RevocationsHeld, m.Decisions, m.RateLimitWaits, m.AuthFailures,
		m.ReloadSuccess, m.ReloadTimestamp, m.ConfigInfo, m.Reloads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Alerts (rate(...) > 0, increase(...) > 0) see a series only once it
	// exists: the labelled counters they rely on start at zero.
	for _, api := range []string{"jira", "bitbucket", "bitbucket-dc", "organization"} { // app's instrument() names
		m.RateLimitWaits.WithLabelValues(api)
		for _, status := range []string{"401", "403"} {
			m.AuthFailures.WithLabelValues(api, status)
		}
	}
	m.Lifecycle = newLifecycle(reg)
	for _, result := range []string{ReloadSuccess, ReloadUnchanged, ReloadFailure} {
		m.Reloads.WithLabelValues(result)
	}
	m.byAction = map[string]prometheus.Counter{
		ledger.ActionInvitationSent:       m.Invitations.WithLabelValues("sent"),
		ledger.ActionInvitationResent:     m.Invitations.WithLabelValues("resent"),
		ledger.ActionInvitationAccepted:   m.Invitations.WithLabelValues("accepted"),
		ledger.ActionInvitationExpired:    m.Invitations.WithLabelValues("expired"),
		ledger.ActionInvitationsCancelled: m.Invitations.WithLabelValues("cancelled"),
		ledger.ActionGroupAdded:           m.Groups.WithLabelValues("granted"),
		ledger.ActionGroupRemoved:         m.Groups.WithLabelValues("revoked"),
		ledger.ActionRevocationHeld:       m.RevocationsHeld,
	}
	if inspector != nil {
		reg.MustRegister(&queueCollector{inspector: inspector})
	}
	return m
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// ObserveAudit counts what an audit record says happened.
func (m *Metrics) ObserveAudit(r ledger.AuditRecord) {
	m.Decisions.WithLabelValues(r.Outcome).Inc()
	if r.Outcome == ledger.OutcomeDryRun {
		return
	}
	if c, ok := m.byAction[r.Action]; ok {
		c.Inc()
	}
}

// ConfigLoaded records a successful (re)load of the config with this hash.
func (m *Metrics) ConfigLoaded(hash string, at time.Time) {
	// One series: the config in force, not every config this process has had.
	m.ConfigInfo.Reset()
	m.ConfigInfo.WithLabelValues(hash).Set(1)
	m.ReloadSuccess.Set(1)
	m.ReloadTimestamp.Set(float64(at.Unix()))
}

// InstrumentClient counts and times every call a resty client makes. The
// endpoint label is the path template ("/1.0/groups/{workspace}/..."), never
// the filled-in path, so it stays low-cardinality and holds no personal data.
func (m *Metrics) InstrumentClient(api string, c *resty.Client) {
	// User hooks run before resty fills the path parameters in: keep the template.
	c.OnBeforeRequest(func(_ *resty.Client, r *resty.Request) error {
		r.SetContext(context.WithValue(r.Context(), endpointKey{}, r.Method+" "+r.URL))
		return nil
	})
	c.OnAfterResponse(func(_ *resty.Client, r *resty.Response) error {
		m.observeCall(api, r.Request, r.StatusCode(), r.Time())
		return nil
	})
	c.OnError(func(req *resty.Request, err error) {
		if _, waiting := ratelimit.AsWait(err); !waiting { // no call was made
			m.observeCall(api, req, 0, 0)
		}
	})
}

type endpointKey struct{}

func (m *Metrics) observeCall(api string, req *resty.Request, status int, took time.Duration) {
	endpoint, _ := req.Context().Value(endpointKey{}).(string)
	m.AtlassianCalls.WithLabelValues(api, endpoint, strconv.Itoa(status)).Inc()
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		m.AuthFailures.WithLabelValues(api, strconv.Itoa(status)).Inc()
	}
	if took > 0 {
		m.AtlassianLatency.WithLabelValues(api).Observe(took.Seconds())
	}
}

// queueCollector exports Asynq queue state read through the Inspector (the
// asynq/x collector pins an old go-redis).
type queueCollector struct {
	inspector *asynq.Inspector
}

var (
	queueSize = prometheus.NewDesc("autoinvite_queue_tasks", "Tasks in an Asynq queue by state.", []string{"queue", "state"}, nil)
	queueLat  = prometheus.NewDesc("autoinvite_queue_latency_seconds", "Age of the oldest pending task.", []string{"queue"}, nil)
	queueProc = prometheus.NewDesc("autoinvite_queue_processed_total", "Tasks processed (succeeded or failed) since the queue existed.", []string{"queue"}, nil)
	queueFail = prometheus.NewDesc("autoinvite_queue_failed_total", "Task attempts that failed since the queue existed.", []string{"queue"}, nil)
	queueMem  = prometheus.NewDesc("autoinvite_queue_memory_bytes", "Redis memory used by the queue (sampled by Asynq).", []string{"queue"}, nil)
	queueUp   = prometheus.NewDesc("autoinvite_queue_scrape_ok", "Whether the queues could be read from Redis.", nil, nil)
)

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{queueSize, queueLat, queueProc, queueFail, queueMem, queueUp} {
		ch <- d
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	queues, err := c.inspector.Queues()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(queueUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(queueUp, prometheus.GaugeValue, 1)
	for _, q := range queues {
		info, err := c.inspector.GetQueueInfo(q)
		if err != nil {
			continue
		}
		for state, n := range map[string]int{
			"pending": info.Pending, "active": info.Active, "scheduled": info.Scheduled,
			"retry": info.Retry, "archived": info.Archived, "completed": info.Completed,
		} {
			ch <- prometheus.MustNewConstMetric(queueSize, prometheus.GaugeValue, float64(n), q, state)
		}
		ch <- prometheus.MustNewConstMetric(queueLat, prometheus.GaugeValue, info.Latency.Seconds(), q)
		ch <- prometheus.MustNewConstMetric(queueProc, prometheus.CounterValue, float64(info.ProcessedTotal), q)
		ch <- prometheus.MustNewConstMetric(queueFail, prometheus.CounterValue, float64(info.FailedTotal), q)
		ch <- prometheus.MustNewConstMetric(queueMem, prometheus.GaugeValue, float64(info.MemoryUsage), q)
	}
}

// BacklogSource reads the tasks waiting for each budget (ratelimit.Backlog).
type BacklogSource interface {
	Status(ctx context.Context) ([]ratelimit.QueueStatus, error)
}

// WatchBacklog exports the budget backlog, read from Redis at each scrape:
// every process reports the same shared figures.
func (m *Metrics) WatchBacklog(src BacklogSource) {
	m.Registry.MustRegister(&backlogCollector{src: src})
}

var (
	backlogTasks = prometheus.NewDesc("autoinvite_budget_backlog", "Tasks waiting for an Atlassian budget (they run oldest first as it refills).", []string{"api", "budget"}, nil)
	backlogETA   = prometheus.NewDesc("autoinvite_budget_backlog_eta_seconds", "Time until the last task waiting for the budget gets its turn, under the current budget.", []string{"api", "budget"}, nil)
	backlogUsed  = prometheus.NewDesc("autoinvite_budget_used", "Requests spent in the budget's current window (budgets that had a backlog).", []string{"api", "budget"}, nil)
	backlogUp    = prometheus.NewDesc("autoinvite_budget_backlog_scrape_ok", "Whether the budget backlog could be read from Redis.", nil, nil)
)

type backlogCollector struct{ src BacklogSource }

func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{backlogTasks, backlogETA, backlogUsed, backlogUp} {
		ch <- d
	}
}

func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	queues, err := c.src.Status(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(backlogUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(backlogUp, prometheus.GaugeValue, 1)
	// Several credentials may share an API and budget name: one series each.
	type key struct{ api, budget string }
	tasks, eta, used := map[key]int{}, map[key]time.Duration{}, map[key]int{}
	var order []key
	for _, q := range queues {
		k := key{q.API, q.Budget}
		if _, ok := tasks[k]; !ok {
			order = append(order, k)
		}
		tasks[k] += q.Waiting
		eta[k] = max(eta[k], q.ETA)
		used[k] += q.Used
	}
	for _, k := range order {
		ch <- prometheus.MustNewConstMetric(backlogTasks, prometheus.GaugeValue, float64(tasks[k]), k.api, k.budget)
		ch <- prometheus.MustNewConstMetric(backlogETA, prometheus.GaugeValue, eta[k].Seconds(), k.api, k.budget)
		ch <- prometheus.MustNewConstMetric(backlogUsed, prometheus.GaugeValue, float64(used[k]), k.api, k.budget)
	}
}
