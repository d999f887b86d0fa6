package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Lifecycle holds the invitation SLO metrics and the notification counters.
type Lifecycle struct {
	// FirstAction: webhook received -> first Atlassian write for the signup.
	FirstAction prometheus.Histogram
	// Acceptance: first invitation sent -> accepted.
	Acceptance    prometheus.Histogram
	Notifications *prometheus.CounterVec // sink, outcome
}

func newLifecycle(reg *prometheus.Registry) *Lifecycle {
	l := &Lifecycle{
		FirstAction: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "autoinvite_webhook_to_first_action_seconds", Help: "From a signup's webhook received to autoinvite's first Atlassian write for it (group added or invitation sent).",
			Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
		}),
		Acceptance: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "autoinvite_invitation_to_acceptance_seconds", Help: "From the first invitation sent to the person accepting it.",
			Buckets: []float64{3600, 4 * 3600, 12 * 3600, 86400, 2 * 86400, 3 * 86400, 7 * 86400, 14 * 86400, 28 * 86400},
		}),
		Notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "autoinvite_notifications_total", Help: "Admin notifications by sink kind (webhook, slack, email) and outcome (sent, failed: will retry, dropped).",
		}, []string{"sink", "outcome"}),
	}
	reg.MustRegister(l.FirstAction, l.Acceptance, l.Notifications)
	for _, sink := range []string{"webhook", "slack", "email"} {
		for _, outcome := range []string{"sent", "failed", "dropped"} {
			l.Notifications.WithLabelValues(sink, outcome)
		}
	}
	return l
}

// PendingAgeBuckets are the age buckets of pending invitations: upper bounds
// and labels (the last is open).
var PendingAgeBuckets = []struct {
	Upto  time.Duration
	Label string
}{
	{24 * time.Hour, "<1d"}, {3 * 24 * time.Hour, "1-3d"}, {7 * 24 * time.Hour, "3-7d"}, {14 * 24 * time.Hour, "7-14d"}, {0, ">14d"},
}

// AgeBucket returns the label of an age.
func AgeBucket(age time.Duration) string {
	for _, b := range PendingAgeBuckets {
		if b.Upto == 0 || age < b.Upto {
			return b.Label
		}
	}
	return PendingAgeBuckets[len(PendingAgeBuckets)-1].Label
}

// LedgerStats is what the lifecycle gauges read from the ledger at scrape.
type LedgerStats interface {
	// PendingAges returns the age of every pending invitation.
	PendingAges(ctx context.Context, now time.Time) ([]time.Duration, error)
	// InvitationOutcomes returns, per workspace, invitations accepted and
	// given up since the ledger began counting.
	InvitationOutcomes(ctx context.Context) (map[string][2]int64, error)
}

var (
	pendingDesc    = prometheus.NewDesc("autoinvite_pending_invitations", "Pending invitations by age since first sent (bucket: <1d, 1-3d, 3-7d, 7-14d, >14d).", []string{"age"}, nil)
	acceptanceDesc = prometheus.NewDesc("autoinvite_invitation_acceptance_ratio", "Per workspace: invitations accepted / (accepted + given up), over the ledger's life.", []string{"workspace"}, nil)
	statsUpDesc    = prometheus.NewDesc("autoinvite_ledger_stats_scrape_ok", "Whether the ledger statistics could be read from Redis.", nil, nil)
)

type ledgerCollector struct {
	stats LedgerStats
	now   func() time.Time
}

// WatchLedger registers the gauges read from the ledger at each scrape.
func (m *Metrics) WatchLedger(stats LedgerStats, now func() time.Time) {
	m.Registry.MustRegister(&ledgerCollector{stats: stats, now: now})
}

func (c *ledgerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- acceptanceDesc
	ch <- statsUpDesc
}

func (c *ledgerCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ages, err := c.stats.PendingAges(ctx, c.now())
	outcomes, err2 := c.stats.InvitationOutcomes(ctx)
	if err != nil || err2 != nil {
		ch <- prometheus.MustNewConstMetric(statsUpDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(statsUpDesc, prometheus.GaugeValue, 1)
	byBucket := map[string]int{}
	for _, a := range ages {
		byBucket[AgeBucket(a)]++
	}
	for _, b := range PendingAgeBuckets {
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(byBucket[b.Label]), b.Label)
	}
	for ws, o := range outcomes {
		if decided := o[0] + o[1]; decided > 0 {
			ch <- prometheus.MustNewConstMetric(acceptanceDesc, prometheus.GaugeValue, float64(o[0])/float64(decided), ws)
		}
	}
}
