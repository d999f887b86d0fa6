package worker

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/integrations/organization"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
	"github.com/autoinvite/autoinvite/membership"
)

// Acceptance questions of Atlassian-administered workspaces, answered
// together. Each early check of an invitee would cost one Bitbucket member
// check; the organization's user search (POST …/directories/-/users/search
// with exact accountIds, expand productAccess) answers up to 100 of them in
// one call. Its answer proves acceptance only through productAccess: the
// invitee's activity in the workspace's Bitbucket since the invitation (an
// active directory membership proves nothing: invitees are in the directory
// from the invitation on). Atlassian says that activity may show up to 24
// hours late, so "no activity" only means "not yet" for an early check, and
// never stands in for the exact Bitbucket check before a re-send.

// idsPerSearch is how many accounts one user search asks about (the
// organization client's chunk).
const idsPerSearch = 100

// minSearchChecks is the fewest early checks one search must answer to cost
// fewer calls than checking each person (one check costs one call too, and
// answers exactly).
const minSearchChecks = 2

// orgQuestion is one invitee the search asks about.
type orgQuestion struct {
	ref      ledger.Ref
	account  string
	resource string // the workspace's resource id, which productAccess names
}

// orgQuestions gathers one organization's questions.
type orgQuestions struct {
	org           OrgAdmin
	checks, rides []orgQuestion
}

// orgActivity answers the sweep's early checks in Atlassian-administered
// workspaces with one user search per organization (per 100 people) when
// at least minSearchChecks are due there, and lets due re-sends of the same
// organization ride along when that adds no call. held are the checks whose
// search failed for now: they are not queued, so they stay due for the next
// sweep (nothing is written, nothing is lost). A question the search could
// not take (no organization, no resource id, a permanent failure) has no
// answer: its follow-up asks Bitbucket about the one person, as before.
func (w *Worker) orgActivity(ctx context.Context, due, checks []ledger.Ref) (answers map[ledger.Ref]*jobs.Activity, held map[ledger.Ref]bool) {
	log := zerolog.Ctx(ctx)
	byOrg := map[string]*orgQuestions{}
	var orgs []string
	w.gatherQuestions(ctx, checks, func(OrgAdmin) bool { return true }, func(org OrgAdmin, q orgQuestion) {
		g := byOrg[org.OrgID()]
		if g == nil {
			g = &orgQuestions{org: org}
			byOrg[org.OrgID()] = g
			orgs = append(orgs, org.OrgID())
		}
		g.checks = append(g.checks, q)
	})
	// Re-sends ride along while they fill the calls the checks need anyway.
	room := func(org OrgAdmin) bool {
		g := byOrg[org.OrgID()]
		return g != nil && len(g.checks) >= minSearchChecks && pagesOf(len(g.checks)+len(g.rides)+1) == pagesOf(len(g.checks))
	}
	if !slices.ContainsFunc(orgs, func(id string) bool { return len(byOrg[id].checks) >= minSearchChecks }) {
		return nil, nil
	}
	w.gatherQuestions(ctx, due, room, func(org OrgAdmin, q orgQuestion) {
		if room(org) {
			g := byOrg[org.OrgID()]
			g.rides = append(g.rides, q)
		}
	})
	answers, held = map[ledger.Ref]*jobs.Activity{}, map[ledger.Ref]bool{}
	for _, id := range orgs {
		g := byOrg[id]
		if len(g.checks) < minSearchChecks {
			continue
		}
		if !w.withResources(ctx, g) {
			continue
		}
		all := append(slices.Clone(g.checks), g.rides...)
		var accounts []string
		for _, q := range all {
			accounts = append(accounts, q.account)
		}
		users, err := g.org.FindUserActivity(ctx, "-", accounts)
		if err != nil {
			if isTemporaryOrWait(err) {
				log.Warn().Err(err).Str("organization", id).Int("early_checks", len(g.checks)).
					Msg("user search failed for now: its early checks stay due for the next sweep")
				for _, q := range g.checks {
					held[q.ref] = true
				}
			} else {
				log.Error().Err(err).Str("organization", id).Int("early_checks", len(g.checks)).
					Msg("user search failed: each early check asks Bitbucket about its person instead")
			}
			continue
		}
		for _, q := range all {
			answers[q.ref] = &jobs.Activity{LastActive: bitbucketActivity(users[q.account].Products, q.resource)}
		}
		log.Info().Str("organization", id).Int("early_checks", len(g.checks)).Int("re_sends", len(g.rides)).Int("calls", pagesOf(len(all))).
			Msg("one user search answered the pending acceptance questions of the organization")
	}
	return answers, held
}

// gatherQuestions hands fn each ref in an Atlassian-administered workspace
// with an organization client that want takes, whose entry names an
// invitee with an account id. The others are left to their follow-ups.
func (w *Worker) gatherQuestions(ctx context.Context, refs []ledger.Ref, want func(OrgAdmin) bool, fn func(OrgAdmin, orgQuestion)) {
	for _, ref := range refs {
		if atl, err := w.atlassianAdministered(ctx, ref.Workspace); err != nil || !atl {
			continue
		}
		org, _, err := w.orgOf(ref.Workspace)
		if err != nil || !want(org) {
			continue
		}
		e, err := w.o.Ledger.Get(ctx, ref.Workspace, ref.PersonID)
		if err != nil || e == nil || e.AccountID == "" || !e.AnyPendingInvitation() {
			continue
		}
		fn(org, orgQuestion{ref: ref, account: e.AccountID})
	}
}

// withResources finds the resource id of each workspace asked about, which
// productAccess names. A workspace without one leaves the search (its
// follow-ups ask Bitbucket); false when too few checks remain to pay.
func (w *Worker) withResources(ctx context.Context, g *orgQuestions) bool {
	resources := map[string]string{} // workspace -> resource id ("": unknown)
	known := func(qs []orgQuestion) []orgQuestion {
		out := qs[:0]
		for _, q := range qs {
			r, looked := resources[q.ref.Workspace]
			if !looked {
				var err error
				if r, err = w.resource(ctx, q.ref.Workspace); err != nil {
					zerolog.Ctx(ctx).Warn().Err(err).Str("workspace", q.ref.Workspace).Msg("workspace resource id unknown: its acceptance questions go to Bitbucket one by one")
				}
				resources[q.ref.Workspace] = r
			}
			if q.resource = r; r != "" {
				out = append(out, q)
			}
		}
		return out
	}
	g.checks, g.rides = known(g.checks), known(g.rides)
	for len(g.rides) > 0 && pagesOf(len(g.checks)+len(g.rides)) > pagesOf(len(g.checks)) {
		g.rides = g.rides[:len(g.rides)-1]
	}
	return len(g.checks) >= minSearchChecks
}

func pagesOf(n int) int { return membership.Pages(n, idsPerSearch) }

// bitbucketActivity is the latest activity among products that are the
// workspace's Bitbucket: key bitbucket and the id of its resource (equal, or
// equal once both are cut to what follows their last "/", since Atlassian
// does not say whether productAccess names an instance by its ARI). Activity
// in another product or workspace proves nothing here.
func bitbucketActivity(products []organization.ProductAccess, resource string) time.Time {
	var last time.Time
	for _, p := range products {
		if strings.Contains(strings.ToLower(p.Key), "bitbucket") && sameResource(p.ID, resource) && p.LastActive.After(last) {
			last = p.LastActive
		}
	}
	return last
}

func sameResource(id, resource string) bool {
	norm := func(s string) string {
		s = strings.ToLower(strings.TrimSpace(s))
		if i := strings.LastIndex(s, "/"); i >= 0 {
			s = s[i+1:]
		}
		return strings.Trim(s, "{}")
	}
	return id != "" && resource != "" && (id == resource || norm(id) == norm(resource))
}

// activityProves reports whether a search's answer shows that the invitee
// joined: active in the workspace's Bitbucket at or after the latest sending
// of a pending invitation (a re-send went out after the exact check found
// them not a member, so earlier activity does not count).
func activityProves(a *jobs.Activity, e *ledger.Entry) bool {
	if a == nil || a.LastActive.IsZero() {
		return false
	}
	var sent time.Time
	for _, inv := range e.Invitations {
		if inv.State == ledger.InvitationPending && inv.SentAt.After(sent) {
			sent = inv.SentAt
		}
	}
	return !sent.IsZero() && !a.LastActive.Before(sent)
}

// activityKey carries a follow-up's search answer.
type activityKey struct{}

func withActivity(ctx context.Context, a *jobs.Activity) context.Context {
	if a == nil {
		return ctx
	}
	return context.WithValue(ctx, activityKey{}, a)
}

func carriedActivity(ctx context.Context) *jobs.Activity {
	a, _ := ctx.Value(activityKey{}).(*jobs.Activity)
	return a
}
