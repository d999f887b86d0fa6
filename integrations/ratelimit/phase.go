package ratelimit

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A phase is a step that makes several calls to one API in a row (a
// member's group adds): its first call spends the budget for all of them in
// one round trip, the others draw on what was spent, and what is left when
// the phase ends is given back. A budget that has no room for the whole
// phase is spent call by call, as without a phase.
type phase struct {
	api string

	mu    sync.Mutex
	calls int               // calls the phase still expects
	held  map[string]*spent // spent ahead, by the budgets' keys
}

// spent are calls spent ahead in some budgets and not made yet.
type spent struct {
	l    *Limiter
	keys []string // the budgets' sorted sets
	id   string
	next int // members id:next..id:last are unused
	last int
	at   time.Time // when they were counted
}

type phaseKey struct{ api string }

// Phase declares that about calls calls to api follow with the returned
// context. end gives back what was spent ahead and not used; call it when
// the step is over (a phase that is never ended only wastes budget).
func Phase(ctx context.Context, api string, calls int) (_ context.Context, end func()) {
	if calls < 2 {
		return ctx, func() {}
	}
	p := &phase{api: api, calls: calls}
	return context.WithValue(ctx, phaseKey{api}, p), func() { p.release(context.WithoutCancel(ctx)) }
}

func phaseOf(ctx context.Context, api string) *phase {
	p, _ := ctx.Value(phaseKey{api}).(*phase)
	return p
}

// use takes one call spent ahead in keys, and says when it was counted;
// false when there is none.
func (p *phase) use(keys []string) (time.Time, bool) {
	if p == nil {
		return time.Time{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.held[strings.Join(keys, "\x00")]
	if s == nil || s.next > s.last {
		return time.Time{}, false
	}
	s.next++
	p.calls--
	return s.at, true
}

// ahead is how many calls the next spend covers: this one and the rest the
// phase expects.
func (p *phase) ahead() int {
	if p == nil {
		return 1
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(p.calls, 1)
}

// record records a spend of count calls for keys, the first of them made
// now; calls 2..count are kept for the phase's next calls.
func (p *phase) record(l *Limiter, keys []string, id string, count int, at time.Time) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls--
	if count < 2 {
		return
	}
	if p.held == nil {
		p.held = map[string]*spent{}
	}
	p.held[strings.Join(keys, "\x00")] = &spent{l: l, keys: keys, id: id, next: 2, last: count, at: at}
}

// release gives back what was spent ahead and not used, and ends spending
// ahead: later calls spend one by one.
func (p *phase) release(ctx context.Context) {
	if p == nil {
		return
	}
	p.mu.Lock()
	held := p.held
	p.held, p.calls = nil, 0
	p.mu.Unlock()
	for _, s := range held {
		if s.next > s.last {
			continue
		}
		var members []any
		for j := s.next; j <= s.last; j++ {
			members = append(members, s.id+":"+strconv.Itoa(j))
		}
		pipe := s.l.rdb.Pipeline()
		for _, k := range s.keys {
			pipe.ZRem(ctx, k, members...)
		}
		// A failed give-back only leaves the calls counted until they
		// leave the window: the budget is under-used, never exceeded.
		_, _ = pipe.Exec(ctx)
	}
}
