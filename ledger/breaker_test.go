package ledger

import (
	"context"
	"testing"
	"time"
)

func TestRemovalLimitCountsARollingHour(t *testing.T) {
	s, _, _ := testStore(t, Options{})
	ctx := context.Background()
	const limit = 3
	at := func(hms string) time.Time {
		tm, err := time.Parse("2006-01-02 15:04:05", "2026-11-02 "+hms)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	allow := func(ws, hms string) bool {
		t.Helper()
		ok, err := s.AllowRemoval(ctx, ws, limit, at(hms))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}

	// The limit at 10:59:30, the limit again a minute later across the hour:
	// only the first are allowed, and the breaker trips.
	for i := 0; i < limit; i++ {
		if !allow("acme", "10:59:30") {
			t.Fatalf("removal %d at 10:59:30 refused", i+1)
		}
	}
	for i := 0; i < limit; i++ {
		if allow("acme", "11:00:30") {
			t.Fatalf("removal %d at 11:00:30 allowed: %d within an hour, limit %d", i+1, limit+i+1, limit)
		}
	}
	tripped, since, _, err := s.Breaker(ctx, "acme")
	if err != nil || !tripped || !since.Equal(at("11:00:30")) {
		t.Fatalf("breaker = %v since %v, %v", tripped, since, err)
	}
	if allow("acme", "11:59:31") {
		t.Fatal("a tripped breaker let a removal through before resume")
	}

	// Without a trip, removals leave the window an hour after they happened.
	for i := 0; i < limit; i++ {
		if !allow("beta", "10:59:30") {
			t.Fatalf("beta removal %d refused", i+1)
		}
	}
	if ok, _ := s.AllowRemoval(ctx, "gamma", limit, at("11:59:29")); !ok {
		t.Fatal("other workspaces are counted apart")
	}
	for i := 0; i < limit; i++ {
		if !allow("beta", "11:59:31") {
			t.Fatalf("beta removal %d at 11:59:31 refused: 10:59:30's are over an hour old", i+1)
		}
	}
	if allow("beta", "11:59:32") {
		t.Fatal("beta: a fourth removal within the hour allowed")
	}

	// Resume closes the breaker and starts the count afresh.
	if _, err := s.Resume(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < limit; i++ {
		if !allow("acme", "11:00:40") {
			t.Fatalf("removal %d after resume refused", i+1)
		}
	}
	if allow("acme", "11:00:41") {
		t.Fatal("limit not counted after resume")
	}
}

func TestResumeKeepsPeopleHeldUntilReleased(t *testing.T) {
	s, _, _ := testStore(t, Options{})
	ctx := context.Background()
	for _, p := range []string{"acct:a", "acct:b"} {
		if err := s.Hold(ctx, "acme", p); err != nil {
			t.Fatal(err)
		}
	}
	held, err := s.Resume(ctx, "acme")
	if err != nil || len(held) != 2 {
		t.Fatalf("resume = %v, %v", held, err)
	}
	if _, _, n, _ := s.Breaker(ctx, "acme"); n != 2 {
		t.Fatalf("held after resume = %d, want 2 until their removals are done", n)
	}
	if err := s.Unhold(ctx, "acme", "acct:a"); err != nil {
		t.Fatal(err)
	}
	if _, _, n, _ := s.Breaker(ctx, "acme"); n != 1 {
		t.Fatalf("held after one release = %d", n)
	}
}
