package metrics

import "github.com/prometheus/client_golang/prometheus"

// Reconcile counts what reconciliation passes examine, find and fix. It is
// the worker's ReconcileObserver.
type Reconcile struct {
	Users  prometheus.Counter
	Drift  *prometheus.CounterVec // kind
	Fixed  *prometheus.CounterVec // kind
	Passes *prometheus.CounterVec // outcome: completed, interrupted
}

// reconcileKinds are the drift kinds (reconcile.Kind*), pre-created at zero
// so that increase() alerts see them from the start.
var reconcileKinds = []string{"missing", "deactivated", "removed-by-hand", "not-covered", "no-longer-covered", "held"}

// NewReconcile registers the reconciliation metrics on reg.
func NewReconcile(reg prometheus.Registerer) *Reconcile {
	r := &Reconcile{
		Users: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "autoinvite_reconcile_users_total", Help: "Jira users examined by reconciliation passes (progress).",
		}),
		Drift: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "autoinvite_reconcile_drift_total", Help: "Differences reconciliation passes found, by kind.",
		}, []string{"kind"}),
		Fixed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "autoinvite_reconcile_fixed_total", Help: "Differences reconciliation passes repaired, by kind.",
		}, []string{"kind"}),
		Passes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "autoinvite_reconcile_passes_total", Help: "Reconciliation passes by outcome (completed, interrupted: the next resumes).",
		}, []string{"outcome"}),
	}
	reg.MustRegister(r.Users, r.Drift, r.Fixed, r.Passes)
	for _, k := range reconcileKinds {
		r.Drift.WithLabelValues(k)
		r.Fixed.WithLabelValues(k)
	}
	for _, o := range []string{"completed", "interrupted"} {
		r.Passes.WithLabelValues(o)
	}
	return r
}

// ReconcileUsers counts examined users.
func (r *Reconcile) ReconcileUsers(n int) { r.Users.Add(float64(n)) }

// ReconcileDrift counts one difference found.
func (r *Reconcile) ReconcileDrift(kind string) { r.Drift.WithLabelValues(kind).Inc() }

// ReconcileFixed counts one difference repaired.
func (r *Reconcile) ReconcileFixed(kind string) { r.Fixed.WithLabelValues(kind).Inc() }

// ReconcilePass counts a pass's end.
func (r *Reconcile) ReconcilePass(outcome string) { r.Passes.WithLabelValues(outcome).Inc() }
