package worker

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/integrations/bitbucket"
	"github.com/autoinvite/autoinvite/integrations/ratelimit"
	"github.com/autoinvite/autoinvite/ledger"
	"github.com/autoinvite/autoinvite/membership"
)

// memberMemo is how long a "yes, a member" answer is trusted.
const memberMemo = time.Hour

// listerWait bounds how long a task waits for another task's member listing
// before asking about its own person (a listing is made ahead of its
// predecessor's expiry, so waiting for one is rare).
const listerWait = 3 * time.Second

// isMember answers whether the entry's person is a member of its workspace:
// a "yes" seen within the hour, else the member cache (membership.Choose
// decides between a fresh listing, a new listing and one check; in the last
// quarter of its max age a listing is renewed ahead when that pays, so a
// burst never stalls on an expired one). listed says the answer came from
// a listing, not from asking about this person.
func (w *Worker) isMember(ctx context.Context, entry *ledger.Entry) (member, listed bool, err error) {
	now := w.o.Now()
	if !entry.MemberSeenAt.IsZero() && now.Sub(entry.MemberSeenAt) < memberMemo {
		return true, false, nil
	}
	member, listed, err = w.memberAnswer(ctx, entry.Workspace, entry.PersonID, entry.AccountID)
	if member {
		entry.MemberSeenAt = now
	}
	return member, listed, err
}

func (w *Worker) memberLimits() membership.Limits {
	mc := w.o.Rules().Config().Bitbucket.MemberCache
	return membership.Limits{MaxSize: mc.MaxSize, MaxAge: mc.MaxAge.D()}
}

func (w *Worker) memberAnswer(ctx context.Context, ws, person, account string) (member, listed bool, err error) {
	mc, lim := w.o.Members, w.memberLimits()
	src, canList := w.o.Bitbucket.(membership.Source)
	if mc == nil || lim.MaxSize <= 0 || !canList {
		return w.checkOne(ctx, ws, person, account)
	}
	log := zerolog.Ctx(ctx).With().Str("workspace", ws).Logger()
	giveUp := time.Now().Add(listerWait)
	// A question registered as pending, by this try or an earlier one,
	// is marked answered; the lock's round trip already did for a question
	// of an earlier try.
	prefetched := prefetchedMember(ctx, ws, account)
	asked := prefetched == nil
	for {
		var a membership.Answer
		var err error
		if prefetched != nil {
			a, err = prefetched(w.o.Now(), lim.MaxAge)
			prefetched = nil
		} else {
			a, err = mc.Lookup(ctx, ws, account, w.o.Now(), lim.MaxAge)
		}
		if err != nil {
			return false, false, err
		}
		if a.Fresh && w.o.Now().Sub(a.ListedAt) < lim.MaxAge*3/4 {
			if asked {
				w.served(ctx, ws, person)
			}
			return a.Member, true, nil
		}
		pending, err := w.pendingQuestions(ctx, ws, person, a.Fresh)
		if err != nil {
			return false, false, err
		}
		asked = asked || !a.Fresh
		if membership.Choose(false, a.Known, pending, bitbucket.MemberPageLen, lim.MaxSize) != membership.List {
			if a.Fresh {
				if asked {
					w.served(ctx, ws, person)
				}
				return a.Member, true, nil
			}
			return w.checkOne(ctx, ws, person, account)
		}
		done, err := mc.Refresh(ctx, membership.Listing{
			Workspace: ws, Source: src, PageLen: bitbucket.MemberPageLen, Pending: pending, Limits: lim, Now: w.o.Now,
			Snapshot: func(ctx context.Context) (membership.Snapshot, error) { return w.seatSnapshot(ctx, ws) },
		})
		switch {
		case a.Fresh && (err != nil || !done):
			// Listed ahead of expiry: until the new listing is done the
			// current one answers (a budget wait keeps the pages read).
			if asked {
				w.served(ctx, ws, person)
			}
			return a.Member, true, nil
		case errors.Is(err, membership.ErrBusy):
			if time.Now().After(giveUp) {
				return w.checkOne(ctx, ws, person, account)
			}
			select {
			case <-ctx.Done():
				return false, false, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		case errors.Is(err, bitbucket.ErrWorkspaceNotFound):
			_ = mc.Drop(ctx, ws)
			return false, false, err
		case err != nil:
			return false, false, err // a budget wait keeps the pages read and the question pending
		case done:
			log.Info().Int("pending", pending).Msg("listed the workspace's members: one listing answers the pending membership questions")
		default:
			return w.checkOne(ctx, ws, person, account) // the listing did not pay
		}
	}
}

// prefetchedKey carries the member-cache answers read in the lock's round
// trip, by workspace.
type prefetchedKey struct{}

type memberAnswerFunc = func(now time.Time, maxAge time.Duration) (membership.Answer, error)

// prefetchMembers queues, for the lock's round trip, a member-cache read for
// each workspace of the signup whose membership a listing may answer (a
// Bitbucket Cloud workspace not known to be administered in Atlassian
// Administration), and marks answered the person's question there that an
// earlier try registered (asked again if the cache cannot answer).
func (w *Worker) prefetchMembers(ctx context.Context, person, account string, workspaces []string) (along []func(redis.Pipeliner), answers map[string]memberAnswerFunc) {
	mc := w.o.Members
	if _, canList := w.o.Bitbucket.(membership.Source); mc == nil || !canList || account == "" || w.memberLimits().MaxSize <= 0 {
		return nil, nil
	}
	cfg := w.o.Rules().Config()
	for _, ws := range workspaces {
		c := cfg.Workspace(ws)
		if c == nil || c.Bitbucket.DataCenter() || c.Administration == config.AdministrationAtlassian || w.adminKnown(ws) {
			continue
		}
		if answers == nil {
			answers = map[string]memberAnswerFunc{}
		}
		along = append(along, func(pipe redis.Pipeliner) {
			answers[ws] = mc.QueueLookup(ctx, pipe, ws, account)
			mc.QueueServed(ctx, pipe, ws, person)
		})
	}
	return along, answers
}

// withPrefetched makes the answers read ahead available to the task's
// membership questions; each answers only the first question about its
// workspace and account (a later one, after a contradiction, reads again).
func withPrefetched(ctx context.Context, account string, answers map[string]memberAnswerFunc) context.Context {
	if len(answers) == 0 {
		return ctx
	}
	return context.WithValue(ctx, prefetchedKey{}, &prefetched{account: account, answers: answers})
}

type prefetched struct {
	mu      sync.Mutex
	account string
	answers map[string]memberAnswerFunc
}

func prefetchedMember(ctx context.Context, ws, account string) memberAnswerFunc {
	p, ok := ctx.Value(prefetchedKey{}).(*prefetched)
	if !ok || p.account != account {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.answers[ws]
	delete(p.answers, ws)
	return a
}

// pendingQuestions estimates the membership questions pending in ws: those
// registered (this one too, unless a listing answers it) or, when more,
// the signups waiting for the Bitbucket budget (most will ask).
func (w *Worker) pendingQuestions(ctx context.Context, ws, person string, fresh bool) (int, error) {
	n := 0
	if !fresh {
		var err error
		if n, err = w.o.Members.Demand(ctx, ws, person, w.o.Now()); err != nil {
			return 0, err
		}
	}
	if w.o.Backlog != nil {
		waiting, err := w.o.Backlog.Waiting(ctx, ratelimit.APIBitbucket)
		if err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Msg("budget backlog unreadable: counting the registered membership questions only")
		}
		n = max(n, waiting)
	}
	return max(n, w.queuedFor(ctx)), nil
}

// queuedRefresh is how often a process counts the queued user events.
const queuedRefresh = time.Second

// queuedCount is the last count of queued user events, shared by a
// process's tasks: counting costs a round trip, and a burst changes it
// slowly.
type queuedCount struct {
	mu sync.Mutex
	at time.Time
	n  int
}

// queuedFor estimates the queued user events that will ask about one
// workspace: the queued events shared evenly among the configured
// workspaces (exact for a site with one; with several, an estimate that
// errs toward checking each person, today's cost, never toward a listing
// that does not pay).
func (w *Worker) queuedFor(ctx context.Context) int {
	if w.o.Queued == nil {
		return 0
	}
	q := &w.queued
	q.mu.Lock()
	defer q.mu.Unlock()
	if now := time.Now(); now.Sub(q.at) >= queuedRefresh {
		n, err := w.o.Queued(ctx)
		if err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Msg("queued user events uncounted: counting the registered membership questions only")
			n = 0
		}
		q.at, q.n = now, n
	}
	return q.n / max(1, len(w.o.Rules().Config().Workspaces))
}

// checkOne asks Bitbucket about one person; a member found is added to the
// member cache, which stays current that way.
func (w *Worker) checkOne(ctx context.Context, ws, person, account string) (bool, bool, error) {
	member, err := w.o.Bitbucket.IsMember(ctx, ws, account)
	if err != nil {
		return false, false, err
	}
	if mc := w.o.Members; mc != nil {
		if member {
			w.memberJoined(ctx, ws, account)
		}
		w.served(ctx, ws, person)
	}
	return member, false, nil
}

// served ends a pending membership question.
func (w *Worker) served(ctx context.Context, ws, person string) {
	if w.o.Members == nil {
		return
	}
	if err := w.o.Members.Served(ctx, ws, person); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("membership question not marked answered: it ages out")
	}
}

// memberJoined adds a person to the workspace's member cache: found a
// member, or seen accepting an invitation.
func (w *Worker) memberJoined(ctx context.Context, ws, account string) {
	if w.o.Members == nil || account == "" {
		return
	}
	if err := w.o.Members.Add(ctx, ws, account, w.memberLimits().MaxSize); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Str("workspace", ws).Msg("member cache not updated: dropping it")
		_ = w.o.Members.Drop(context.WithoutCancel(ctx), ws)
	}
}

// memberDoubted takes a person out of the member cache: an answer
// contradicted the listing.
func (w *Worker) memberDoubted(ctx context.Context, ws, account string) {
	if w.o.Members == nil || account == "" {
		return
	}
	if err := w.o.Members.Remove(ctx, ws, account); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Str("workspace", ws).Msg("member cache not updated: dropping it")
		_ = w.o.Members.Drop(context.WithoutCancel(ctx), ws)
	}
}

// seatSnapshot is taken as a listing begins, for a workspace with
// max_members: the seat count's start and, administered in Bitbucket, its
// pending invitations, listed before the members (an invitation accepted
// in between counts twice, never zero times).
func (w *Worker) seatSnapshot(ctx context.Context, ws string) (membership.Snapshot, error) {
	snap := membership.Snapshot{Invitations: -1}
	if c := w.o.Rules().Config().Workspace(ws); c == nil || c.MaxMembers <= 0 {
		return snap, nil
	}
	count, err := w.o.Ledger.BeginSeatCount(ctx)
	if err != nil {
		return snap, err
	}
	snap.CountedAt = count.Micros()
	if atl, err := w.atlassianAdministered(ctx, ws); err != nil || atl {
		return snap, err
	}
	pending, err := w.o.Bitbucket.ListInvitations(ctx, ws)
	if err != nil {
		return snap, err
	}
	snap.Invitations = distinctEmails(pending)
	return snap, nil
}

func distinctEmails(invs []bitbucket.Invitation) int {
	emails := map[string]bool{}
	for _, inv := range invs {
		emails[strings.ToLower(inv.Email)] = true
	}
	return len(emails)
}

// cachedSeats counts a workspace's seats from a fresh member listing:
// the members cached, plus the invitations pending when it began
// (Bitbucket-administered), counted from when it began so that every
// invitation sent since is still counted by its reservation.
func (w *Worker) cachedSeats(ctx context.Context, ws string, atl bool) (count ledger.SeatCount, members, invitations int, ok bool) {
	if w.o.Members == nil {
		return count, 0, 0, false
	}
	lim := w.memberLimits()
	a, err := w.o.Members.Lookup(ctx, ws, "", w.o.Now(), min(lim.MaxAge, ledger.SeatCountMaxAge))
	if err != nil || !a.Fresh || a.Snapshot.CountedAt <= 0 || (!atl && a.Snapshot.Invitations < 0) {
		return count, 0, 0, false
	}
	if !atl {
		invitations = a.Snapshot.Invitations
	}
	return ledger.SeatCountAt(a.Snapshot.CountedAt), a.Members, invitations, true
}

// listedKey marks a task whose membership answer came from a listing, not
// from asking about the person.
type listedKey struct{}

func fromListing(ctx context.Context) bool {
	v, _ := ctx.Value(listedKey{}).(bool)
	return v
}
