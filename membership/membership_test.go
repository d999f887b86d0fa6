package membership_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/integrations/bitbucket"
	"github.com/autoinvite/autoinvite/internal/redistest"
	"github.com/autoinvite/autoinvite/membership"
)

func TestChoose(t *testing.T) {
	const pageLen, maxSize = 100, 10000
	for _, c := range []struct {
		name             string
		fresh            bool
		members, pending int
		maxSize          int
		want             membership.Choice
	}{
		{"a fresh listing answers", true, 4500, 1, maxSize, membership.UseCache},
		{"fewer checks than pages: check", false, 4500, 44, maxSize, membership.CheckOne},
		{"as many checks as pages: list", false, 4500, 45, maxSize, membership.List},
		{"more checks than pages: list", false, 4500, 4500, maxSize, membership.List},
		{"a partial page is a page", false, 4501, 45, maxSize, membership.CheckOne},
		{"an empty workspace is one page", false, 0, 1, maxSize, membership.List},
		{"unknown size, one question: check", false, -1, 1, maxSize, membership.CheckOne},
		{"unknown size, two questions: the first page tells", false, -1, 2, maxSize, membership.List},
		{"larger than max size: never listed", false, 20000, 100000, maxSize, membership.CheckOne},
		{"cache off", false, 10, 100, 0, membership.CheckOne},
	} {
		if got := membership.Choose(c.fresh, c.members, c.pending, pageLen, c.maxSize); got != c.want {
			t.Errorf("%s: Choose(fresh=%v, members=%d, pending=%d) = %s, want %s", c.name, c.fresh, c.members, c.pending, got, c.want)
		}
	}
}

// pages is a member listing of n members, 100 a page, that can fail once.
type pages struct {
	ids    []string
	calls  []string
	failAt string // next value whose read fails once
	noSize bool
}

func (p *pages) ListMembersPage(_ context.Context, _, next string) (bitbucket.MembersPage, error) {
	p.calls = append(p.calls, next)
	if next != "" && next == p.failAt {
		p.failAt = ""
		return bitbucket.MembersPage{}, errors.New("budget spent")
	}
	start, _ := strconv.Atoi(next)
	end := min(start+100, len(p.ids))
	page := bitbucket.MembersPage{AccountIDs: p.ids[start:end], Size: len(p.ids)}
	if p.noSize {
		page.Size = -1
	}
	if end < len(p.ids) {
		page.Next = strconv.Itoa(end)
	}
	return page, nil
}

func newCache(t *testing.T) *membership.Cache {
	r := redistest.New(t)
	return membership.New(r.Client(t), r.Prefix)
}

func members(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("557058:m%04d", i)
	}
	return out
}

// A listing interrupted by a budget wait resumes where it stopped; the
// listing is as old as its start; it answers both ways while fresh and not
// at all once max age has passed; the service's own findings keep it current.
func TestRefreshResumesAndAnswers(t *testing.T) {
	ctx := context.Background()
	c := newCache(t)
	now := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	lim := membership.Limits{MaxSize: 1000, MaxAge: time.Hour}
	src := &pages{ids: members(250), failAt: "200"}
	l := membership.Listing{Workspace: "acme", Source: src, PageLen: 100, Pending: 10, Limits: lim, Now: clock}

	if _, err := c.Refresh(ctx, l); err == nil {
		t.Fatal("the failed page did not stop the listing")
	}
	now = now.Add(time.Minute)
	if listed, err := c.Refresh(ctx, l); err != nil || !listed {
		t.Fatalf("resumed listing: %v, %v", listed, err)
	}
	if want := []string{"", "100", "200", "200"}; fmt.Sprint(src.calls) != fmt.Sprint(want) {
		t.Fatalf("pages read %q, want %q (resumed at the failed page)", src.calls, want)
	}
	a, err := c.Lookup(ctx, "acme", "557058:m0249", now, lim.MaxAge)
	if err != nil || !a.Fresh || !a.Member || a.Members != 250 || a.Known != 250 || !a.ListedAt.Equal(now.Add(-time.Minute)) {
		t.Fatalf("lookup of a member = %+v, %v", a, err)
	}
	if a, _ := c.Lookup(ctx, "acme", "557058:newcomer", now, lim.MaxAge); !a.Fresh || a.Member {
		t.Fatalf("lookup of a newcomer = %+v", a)
	}

	// Kept current: a member found, a member doubted.
	if err := c.Add(ctx, "acme", "557058:newcomer", lim.MaxSize); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, "acme", "557058:m0000"); err != nil {
		t.Fatal(err)
	}
	if a, _ := c.Lookup(ctx, "acme", "557058:newcomer", now, lim.MaxAge); !a.Member || a.Members != 250 {
		t.Fatalf("after add: %+v", a)
	}
	if a, _ := c.Lookup(ctx, "acme", "557058:m0000", now, lim.MaxAge); a.Member {
		t.Fatalf("after remove: %+v", a)
	}

	// Stale: no answer either way, the size is still known for the next decision.
	if a, _ := c.Lookup(ctx, "acme", "557058:m0249", now.Add(lim.MaxAge), lim.MaxAge); a.Fresh || a.Member || a.Known != 250 {
		t.Fatalf("stale lookup = %+v, want no answer and the size known", a)
	}
}

// A listing whose first page shows it does not pay stops there, and so does
// one that outgrows max size; the size is remembered either way.
func TestRefreshStopsWhenItDoesNotPay(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }

	c := newCache(t)
	src := &pages{ids: members(450)}
	listed, err := c.Refresh(ctx, membership.Listing{Workspace: "acme", Source: src, PageLen: 100, Pending: 4,
		Limits: membership.Limits{MaxSize: 1000, MaxAge: time.Hour}, Now: clock})
	if err != nil || listed || len(src.calls) != 1 {
		t.Fatalf("listed %v, %v after %d pages; want not listed after 1 (5 pages > 4 questions)", listed, err, len(src.calls))
	}
	if a, _ := c.Lookup(ctx, "acme", "x", now, time.Hour); a.Fresh || a.Known != 450 {
		t.Fatalf("lookup = %+v", a)
	}

	c = newCache(t)
	src = &pages{ids: members(450), noSize: true}
	listed, err = c.Refresh(ctx, membership.Listing{Workspace: "acme", Source: src, PageLen: 100, Pending: 100,
		Limits: membership.Limits{MaxSize: 150, MaxAge: time.Hour}, Now: clock})
	if err != nil || listed || len(src.calls) != 2 {
		t.Fatalf("listed %v, %v after %d pages; want not listed after 2 (more than max size 150)", listed, err, len(src.calls))
	}
}

// Pending questions are counted per workspace, each person once.
func TestDemand(t *testing.T) {
	ctx := context.Background()
	c := newCache(t)
	now := time.Now()
	for _, p := range []string{"a", "b", "a", "c"} {
		if _, err := c.Demand(ctx, "acme", p, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Served(ctx, "acme", "b"); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Demand(ctx, "acme", "d", now); err != nil || n != 3 {
		t.Fatalf("pending = %d, %v; want 3 (a, c, d)", n, err)
	}
	if n, _ := c.Demand(ctx, "globex", "a", now); n != 1 {
		t.Fatalf("pending in another workspace = %d, want 1", n)
	}
}
