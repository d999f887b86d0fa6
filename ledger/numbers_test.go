package ledger

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// invitedEntry is a newcomer in ws with one pending invitation (due at
// t0+7d) and an early check (t0+3h).
func invitedEntry(ws, person, email string) *Entry {
	return &Entry{
		Workspace: ws, PersonID: person, AccountID: accountOf(person), Email: email,
		Status: StatusInvited, NextCheckAt: t0.Add(3 * time.Hour),
		Invitations: []Invitation{{Group: "developers", SentAt: t0, ExpiresAt: t0.Add(7 * 24 * time.Hour), State: InvitationPending}},
		CreatedAt:   t0, UpdatedAt: t0,
	}
}

// indexes is what the ledger's indexes hold, for exact comparisons: the due
// and check sorted sets ("member@score", NUL shown as "/"), a workspace's
// set of people, the email index and the numbers' counter and hashes.
func indexes(t *testing.T, s *Store, rdb redis.UniversalClient, workspaces ...string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for name, key := range map[string]string{"due": s.DueKey(), "check": s.CheckKey()} {
		zs, err := rdb.ZRangeWithScores(ctx, key, 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		var ms []string
		for _, z := range zs {
			ms = append(ms, fmt.Sprintf("%s@%d", strings.ReplaceAll(z.Member.(string), "\x00", "/"), int64(z.Score)-t0.Unix()))
		}
		out[name] = strings.Join(ms, " ")
	}
	for _, ws := range workspaces {
		people, err := rdb.SMembers(ctx, s.workspaceKey(ws)).Result()
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(people)
		out["ws:"+ws] = strings.Join(people, " ")
	}
	hashes := map[string]string{"emails": s.emailsKey()}
	keys, err := rdb.Keys(ctx, s.numberedPrefix()+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		hashes[strings.TrimPrefix(k, s.prefix+":")] = k
	}
	for name, key := range hashes {
		h, err := rdb.HGetAll(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		var fs []string
		for f, v := range h {
			fs = append(fs, f+"="+v)
		}
		slices.Sort(fs)
		out[name] = strings.Join(fs, " ")
	}
	out["counter"] = rdb.Get(ctx, s.numbersKey()).Val()
	return out
}

// refsOf names entries "<workspace>/<person>/<status>", in their order.
func refsOf(entries []*Entry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Workspace+"/"+e.PersonID+"/"+string(e.Status))
	}
	return out
}

// listed is List(workspace) as refsOf names it.
func listed(t *testing.T, s *Store, workspace string) []string {
	t.Helper()
	entries, err := s.List(context.Background(), workspace)
	if err != nil {
		t.Fatal(err)
	}
	return refsOf(entries)
}

func diffMaps(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k := range got {
		if _, ok := want[k]; !ok && got[k] != "" {
			t.Errorf("%s: unexpected %s = %q", what, k, got[k])
		}
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %s = %q, want %q", what, k, got[k], w)
		}
	}
}

const (
	day   = 24 * 60 * 60
	hours = 60 * 60
)

func TestIndexesNamePeopleByNumber(t *testing.T) {
	s, _, rdb := testStore(t, Options{})
	ctx := context.Background()
	// Start just below the end of the first hash of numbers: Ann is 127, the
	// last of numbers/128 = 0, Bob 128, the first of the next.
	if err := rdb.Set(ctx, s.numbersKey(), 126, 0).Err(); err != nil {
		t.Fatal(err)
	}
	ann, bob := "acct:557058:f58131cb-b67d-43c7-b30d-6b58d40bd077", "dc:JIRAUSER10100"
	putLocked(t, s, invitedEntry("acme", ann, "Ann@Acme.com"))
	putLocked(t, s, invitedEntry("acme", bob, "bob@acme.com"))
	// A second workspace keeps Ann's number.
	putLocked(t, s, &Entry{Workspace: "beta", PersonID: ann, AccountID: strings.TrimPrefix(ann, "acct:"), Email: "ann@acme.com", Status: StatusGranted, CreatedAt: t0})

	diffMaps(t, "indexes", indexes(t, s, rdb, "acme", "beta"), map[string]string{
		"due":     "acme/127@" + fmt.Sprint(7*day) + " acme/128@" + fmt.Sprint(7*day),
		"check":   "acme/127@" + fmt.Sprint(3*hours), // Bob has no account id: no early check
		"ws:acme": "127 128",
		"ws:beta": "127",
		"emails":  "ann@acme.com=127 bob@acme.com=128",
		"n:0":     "127=" + ann,
		"n:1":     "0=" + bob,
		"counter": "128",
	})
	if v := rdb.Get(ctx, s.personValueKey(ann)).Val(); !strings.HasPrefix(v, "#127\nacme\t{") || strings.Count(v, "\n") != 3 {
		t.Fatalf("Ann's value = %q", v)
	}

	// Every reader names people by id.
	due, err := s.DueAt(ctx, s.DueKey(), t0.Add(7*24*time.Hour), 10)
	if err != nil || !slices.Equal(due, []Ref{{"acme", ann}, {"acme", bob}}) {
		t.Fatalf("due = %v, %v", due, err)
	}
	if due, _ := s.DueAt(ctx, s.DueKey(), t0.Add(7*24*time.Hour), 1); !slices.Equal(due, []Ref{{"acme", ann}}) {
		t.Fatalf("due, limit 1 = %v", due)
	}
	if check, err := s.DueAt(ctx, s.CheckKey(), t0.Add(3*time.Hour), 10); err != nil || !slices.Equal(check, []Ref{{"acme", ann}}) {
		t.Fatalf("check = %v, %v", check, err)
	}
	if check, _ := s.DueAt(ctx, s.CheckKey(), t0.Add(3*time.Hour-time.Second), 10); len(check) != 0 {
		t.Fatalf("check before its time = %v", check)
	}
	for email, want := range map[string]string{"ANN@acme.com": ann, "bob@acme.com": bob, "cid@acme.com": ""} {
		if got, err := s.PersonByEmail(ctx, email); err != nil || got != want {
			t.Fatalf("PersonByEmail(%s) = %q, %v, want %q", email, got, err, want)
		}
	}
	// Sorted by person id, not by number.
	if got, want := listed(t, s, ""), []string{"acme/" + ann + "/invited", "acme/" + bob + "/invited", "beta/" + ann + "/granted"}; !slices.Equal(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
	pending, err := s.PendingInvitations(ctx)
	if err != nil || len(pending) != 2 || pending[0].PersonID == pending[1].PersonID {
		t.Fatalf("pending = %+v, %v", pending, err)
	}

	// Settled: out of both indexes; the number stays (other indexes use it).
	e, _ := s.Get(ctx, "acme", ann)
	e.SetPendingInvitations(InvitationAccepted)
	putLocked(t, s, e)
	idx := indexes(t, s, rdb, "acme")
	if idx["due"] != "acme/128@"+fmt.Sprint(7*day) || idx["check"] != "" || idx["ws:acme"] != "127 128" || idx["counter"] != "128" {
		t.Fatalf("after Ann's acceptance: %v", idx)
	}

	// A number with no person id (only a hand-edited Redis) names nobody.
	if err := rdb.ZAdd(ctx, s.DueKey(), redis.Z{Score: float64(t0.Unix()), Member: "acme\x00999"}).Err(); err != nil {
		t.Fatal(err)
	}
	if due, err := s.DueAt(ctx, s.DueKey(), t0.Add(7*24*time.Hour), 10); err != nil || !slices.Equal(due, []Ref{{"acme", bob}}) {
		t.Fatalf("due with an unknown number = %v, %v", due, err)
	}
}

func TestDryRunGivesNoNumber(t *testing.T) {
	s, _, rdb := testStore(t, Options{DryRun: true})
	putLocked(t, s, invitedEntry("acme", "acct:ann", "ann@acme.com"))
	diffMaps(t, "dry run", indexes(t, s, rdb, "acme"), map[string]string{})
}

// Two writers for one person (two workspaces' tasks; Put without the lock
// here, so nothing but the script orders them) give them one number.
func TestConcurrentFirstWritesGiveOnePersonOneNumber(t *testing.T) {
	s, _, rdb := testStore(t, Options{})
	ctx := context.Background()
	const writers = 16
	people := []string{"acct:557058:ann", "acct:557058:bob", "dc:cid"}
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, writers*len(people))
	for w := range writers {
		for _, p := range people {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs <- s.PutUnlocked(ctx, invitedEntry(fmt.Sprintf("ws%02d", w), p, strings.TrimPrefix(p, "acct:")+"@acme.com"))
			}()
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := rdb.Get(ctx, s.numbersKey()).Val(); n != "3" {
		t.Fatalf("counter = %q, want 3: one number per person", n)
	}
	back, err := rdb.HGetAll(ctx, s.numberedPrefix()+"0").Result()
	if err != nil || len(back) != 3 {
		t.Fatalf("numbers' hash = %v, %v", back, err)
	}
	numbers := map[string]string{}
	for _, p := range people {
		v := rdb.Get(ctx, s.personValueKey(p)).Val()
		n := numberOf(v)
		if n == "" || back[n] != p || strings.Count(v, "#") != 1 || strings.Count(v, "\n") != writers+1 {
			t.Fatalf("%s: number %q (way back %q) in %q", p, n, back[n], v)
		}
		numbers[p] = n
	}
	want := []string{numbers[people[0]], numbers[people[1]], numbers[people[2]]}
	slices.Sort(want)
	if want[0] != "1" || want[1] != "2" || want[2] != "3" {
		t.Fatalf("numbers = %v", numbers)
	}
	for w := range writers {
		ws := fmt.Sprintf("ws%02d", w)
		if got := indexes(t, s, rdb, ws)["ws:"+ws]; got != strings.Join(want, " ") {
			t.Fatalf("%s's people = %q, want %q", ws, got, want)
		}
	}
	due, err := s.DueAt(ctx, s.DueKey(), t0.Add(7*24*time.Hour), 0)
	if err != nil || len(due) != writers*len(people) {
		t.Fatalf("due = %d refs, %v", len(due), err)
	}
	for _, r := range due {
		if !slices.Contains(people, r.PersonID) {
			t.Fatalf("due names %q", r.PersonID)
		}
	}
}

// putUnnumbered writes e as the compact format did before person numbers:
// no number in the person's value, the person id in every index.
func putUnnumbered(t *testing.T, s *Store, rdb redis.UniversalClient, e *Entry) {
	t.Helper()
	ctx := context.Background()
	e.normalize()
	raw, err := encodeEntry(e)
	if err != nil {
		t.Fatal(err)
	}
	key := s.personValueKey(e.PersonID)
	v := rdb.Get(ctx, key).Val()
	recs := records(v)
	recs[e.Workspace] = string(raw)
	v = ""
	for _, ws := range slices.Sorted(func(yield func(string) bool) {
		for ws := range recs {
			if !yield(ws) {
				return
			}
		}
	}) {
		v += record(ws, []byte(recs[ws]))
	}
	member := dueMember(e.Workspace, e.PersonID)
	_, err = rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, key, v, 0)
		p.SAdd(ctx, s.workspaceKey(e.Workspace), e.PersonID)
		p.SAdd(ctx, s.workspacesKey(), e.Workspace)
		if e.Email != "" {
			p.HSet(ctx, s.emailsKey(), strings.ToLower(e.Email), e.PersonID)
		}
		if next := e.nextExpiry(); !next.IsZero() {
			p.ZAdd(ctx, s.DueKey(), redis.Z{Score: float64(next.Unix()), Member: member})
		}
		if e.AnyPendingInvitation() && e.AccountID != "" && !e.NextCheckAt.IsZero() {
			p.ZAdd(ctx, s.CheckKey(), redis.Z{Score: float64(e.NextCheckAt.Unix()), Member: member})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Entries written before person numbers are read through every index, and a
// write renumbers the workspace's members it touches.
func TestIndexesWrittenBeforeNumbersAreReadAndRewritten(t *testing.T) {
	s, _, rdb := testStore(t, Options{})
	ctx := context.Background()
	ann, bob := "acct:557058:ann", "acct:557058:bob"
	putUnnumbered(t, s, rdb, invitedEntry("acme", ann, "ann@acme.com"))
	putUnnumbered(t, s, rdb, &Entry{Workspace: "beta", PersonID: ann, AccountID: "557058:ann", Email: "ann@acme.com", Status: StatusGranted, CreatedAt: t0})
	later := invitedEntry("acme", bob, "bob@acme.com")
	later.Invitations[0].ExpiresAt = later.Invitations[0].ExpiresAt.Add(time.Hour)
	putUnnumbered(t, s, rdb, later)
	before := map[string]string{
		"due":     "acme/" + ann + "@" + fmt.Sprint(7*day) + " acme/" + bob + "@" + fmt.Sprint(7*day+hours),
		"check":   "acme/" + ann + "@" + fmt.Sprint(3*hours) + " acme/" + bob + "@" + fmt.Sprint(3*hours),
		"ws:acme": ann + " " + bob,
		"ws:beta": ann,
		"emails":  "ann@acme.com=" + ann + " bob@acme.com=" + bob,
	}
	diffMaps(t, "before numbers", indexes(t, s, rdb, "acme", "beta"), before)

	// readers checks what every reader makes of the indexes.
	readers := func(stage string) {
		t.Helper()
		due, err := s.DueAt(ctx, s.DueKey(), t0.Add(8*24*time.Hour), 10)
		if err != nil || !slices.Equal(due, []Ref{{"acme", ann}, {"acme", bob}}) {
			t.Fatalf("%s: due = %v, %v", stage, due, err)
		}
		check, err := s.DueAt(ctx, s.CheckKey(), t0.Add(3*time.Hour), 10)
		if err != nil || len(check) != 2 || !slices.Contains(check, Ref{"acme", ann}) || !slices.Contains(check, Ref{"acme", bob}) {
			t.Fatalf("%s: check = %v, %v", stage, check, err)
		}
		for email, want := range map[string]string{"ann@acme.com": ann, "Bob@acme.com": bob} {
			if got, err := s.PersonByEmail(ctx, email); err != nil || got != want {
				t.Fatalf("%s: PersonByEmail(%s) = %q, %v", stage, email, got, err)
			}
		}
		if got, want := listed(t, s, ""), []string{"acme/" + ann + "/invited", "acme/" + bob + "/invited", "beta/" + ann + "/granted"}; !slices.Equal(got, want) {
			t.Fatalf("%s: List = %q, want %q", stage, got, want)
		}
		if p, err := s.Person(ctx, ann); err != nil || len(p) != 2 || p[0].Workspace != "acme" || p[1].Workspace != "beta" {
			t.Fatalf("%s: Person(ann) = %+v, %v", stage, p, err)
		}
		pending, err := s.PendingInvitations(ctx)
		if err != nil || len(pending) != 2 {
			t.Fatalf("%s: pending = %+v, %v", stage, pending, err)
		}
	}
	readers("before numbers")

	// Ann's acme task: her acme members and her email get her number; her
	// beta membership (not written) and Bob keep their ids until written.
	lock, entries, err := s.LockAndGet(ctx, ann, "test", time.Minute, []string{"acme"})
	if err != nil {
		t.Fatal(err)
	}
	e := entries["acme"]
	e.NextCheckAt = e.NextCheckAt.Add(time.Hour)
	if err := s.PutAndUnlock(lock.Context(ctx), e); err != nil {
		t.Fatal(err)
	}
	lock.Unlock()
	diffMaps(t, "after Ann's acme write", indexes(t, s, rdb, "acme", "beta"), map[string]string{
		"due":     "acme/1@" + fmt.Sprint(7*day) + " acme/" + bob + "@" + fmt.Sprint(7*day+hours),
		"check":   "acme/" + bob + "@" + fmt.Sprint(3*hours) + " acme/1@" + fmt.Sprint(4*hours),
		"ws:acme": "1 " + bob,
		"ws:beta": ann,
		"emails":  "ann@acme.com=1 bob@acme.com=" + bob,
		"n:0":     "1=" + ann,
		"counter": "1",
	})
	if v := rdb.Get(ctx, s.personValueKey(ann)).Val(); !strings.HasPrefix(v, "#1\nacme\t{") || !strings.Contains(v, "\nbeta\t{") {
		t.Fatalf("Ann's value = %q", v)
	}
	if check, _ := s.DueAt(ctx, s.CheckKey(), t0.Add(3*time.Hour), 10); !slices.Equal(check, []Ref{{"acme", bob}}) {
		t.Fatalf("check after Ann's moved = %v", check)
	}

	// Writing the rest renumbers everything.
	for _, r := range []Ref{{"beta", ann}, {"acme", bob}} {
		e, err := s.Get(ctx, r.Workspace, r.PersonID)
		if err != nil || e == nil {
			t.Fatalf("%v: %v, %v", r, e, err)
		}
		e.NextCheckAt = t0.Add(3 * time.Hour)
		putLocked(t, s, e)
	}
	diffMaps(t, "after every write", indexes(t, s, rdb, "acme", "beta"), map[string]string{
		"due":     "acme/1@" + fmt.Sprint(7*day) + " acme/2@" + fmt.Sprint(7*day+hours),
		"check":   "acme/2@" + fmt.Sprint(3*hours) + " acme/1@" + fmt.Sprint(4*hours),
		"ws:acme": "1 2",
		"ws:beta": "1",
		"emails":  "ann@acme.com=1 bob@acme.com=2",
		"n:0":     "1=" + ann + " 2=" + bob,
		"counter": "2",
	})
	// (Ann's check moved an hour later; otherwise the readers see the same.)
	if err := rdb.ZAdd(ctx, s.CheckKey(), redis.Z{Score: float64(t0.Add(3 * time.Hour).Unix()), Member: "acme\x001"}).Err(); err != nil {
		t.Fatal(err)
	}
	readers("after every write")
}
