package ledger

import (
	"context"
	"testing"
	"time"
)

func TestSeatReservationsAdmitOneIntoTheLastSeat(t *testing.T) {
	s, _, _ := testStore(t, Options{})
	ctx := context.Background()
	const members, max = 4, 5
	begin := func() SeatCount {
		t.Helper()
		c, err := s.BeginSeatCount(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	reserve := func(holder string, c SeatCount, counted int) (bool, int) {
		t.Helper()
		ok, n, err := s.ReserveSeat(ctx, "acme", holder, c, counted, max)
		if err != nil {
			t.Fatal(err)
		}
		return ok, n
	}

	// Two workers count 4 of 5 at once: one gets the seat.
	ca, cb := begin(), begin()
	if ok, _ := reserve("acct:a", ca, members); !ok {
		t.Fatal("first reservation refused")
	}
	if ok, n := reserve("acct:b", cb, members); ok || n != 1 {
		t.Fatalf("second reservation = %v (%d reserved), want refused by 1", ok, n)
	}
	// A retry of the same person does not count its own reservation.
	if ok, _ := reserve("acct:a", ca, members); !ok {
		t.Fatal("a holder's retry refused by its own reservation")
	}
	// A's invitation goes out. B's count began before: it may have missed it.
	if err := s.SettleSeat(ctx, "acme", "acct:a", true); err != nil {
		t.Fatal(err)
	}
	if ok, n := reserve("acct:b", cb, members); ok || n != 1 {
		t.Fatalf("stale count admitted = %v (%d)", ok, n)
	}
	// A count begun after sees A's invitation in Bitbucket: 5 of 5.
	if ok, n := reserve("acct:b", begin(), members+1); ok || n != 0 {
		t.Fatalf("full workspace admitted = %v (%d)", ok, n)
	}
	// A failed invitation frees its seat.
	cc := begin()
	if ok, _ := reserve("acct:c", cc, members); !ok {
		t.Fatal("reservation with a free seat refused")
	}
	if err := s.SettleSeat(ctx, "acme", "acct:c", false); err != nil {
		t.Fatal(err)
	}
	if ok, _ := reserve("acct:d", begin(), members); !ok {
		t.Fatal("seat of a failed invitation not freed")
	}
	// Other workspaces are apart.
	if ok, _, _ := s.ReserveSeat(ctx, "beta", "acct:b", begin(), members, max); !ok {
		t.Fatal("another workspace's reservation refused")
	}
}

// A shared count is read back with its start until it expires.
func TestKeptSeatCount(t *testing.T) {
	s, _, _ := testStore(t, Options{})
	ctx := context.Background()
	if _, _, ok, err := s.KeptSeatCount(ctx, "acme"); ok || err != nil {
		t.Fatalf("before: ok %v, %v", ok, err)
	}
	c, err := s.BeginSeatCount(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.KeepSeatCount(ctx, "acme", c, 7, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, members, ok, err := s.KeptSeatCount(ctx, "acme")
	if err != nil || !ok || members != 7 || got != c {
		t.Fatalf("kept = %v %d %v, %v; want %v 7", got, members, ok, err, c)
	}
	if _, _, ok, _ := s.KeptSeatCount(ctx, "other"); ok {
		t.Fatal("another workspace's count")
	}
}
