package testenv

import (
	"sync"
	"time"
)

// Clock is a clock tests move by hand: no test sleeps through an expiry.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock starts a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// WithClock makes the service read time from c.
func WithClock(c *Clock) Option { return func(s *settings) { s.now = c.Now } }
