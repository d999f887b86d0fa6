package ledger

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/autoinvite/autoinvite/internal/redistest"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

// fullEntry has every field set, times with sub-second parts.
func fullEntry(ws, person string) *Entry {
	at := t0.Add(123 * time.Millisecond)
	return &Entry{
		Workspace: ws, PersonID: person, AccountID: "557058:other", JiraUser: "anna", Email: "anna@acme.com",
		DisplayName: "Anna \"A\"\tTab\nLine", Status: StatusInvited,
		Granted: []string{"readers"}, Waiting: []string{"developers"}, HandGiven: []string{"admins"}, HeldRemovals: []string{"ops"},
		NextCheckAt: at.Add(time.Hour), MemberSeenAt: at, RulesByGroup: map[string][]string{"developers": {"engineers", "staff"}},
		Batched: map[string]time.Time{"ops": at}, Intents: map[string]time.Time{"leads": at}, Doubts: map[string]time.Time{"leads": at},
		Invitations: []Invitation{
			{Group: "developers", SentAt: at.Add(48 * time.Hour), ExpiresAt: at.Add(9 * 24 * time.Hour), Resends: 2, State: InvitationPending, FirstSentAt: at},
			{Group: "old", SentAt: at, ExpiresAt: at.Add(time.Hour), State: InvitationExpired},
		},
		LastError: "boom", CreatedAt: at, UpdatedAt: at.Add(time.Minute),
	}
}

// putLocked writes e under the person's lock.
func putLocked(t *testing.T, s *Store, e *Entry) {
	t.Helper()
	ctx := context.Background()
	l, err := s.Lock(ctx, e.PersonID, "test", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	if err := s.Put(l.Context(ctx), e); err != nil {
		t.Fatal(err)
	}
}

// entryJSON is e as the API shows it, for comparisons.
func entryJSON(t *testing.T, e *Entry) string {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCompactEntryRoundTrip(t *testing.T) {
	s, _, rdb := testStore(t, Options{})
	ctx := context.Background()
	const person = "acct:557058:anna"
	acme, beta := fullEntry("acme", person), fullEntry("beta", person)
	beta.Status, beta.AccountID = StatusGranted, "557058:anna"
	acme.Record(t0, "webhook", ActionDecided, "", "developers<-engineers")
	putLocked(t, s, acme)
	putLocked(t, s, beta)

	// Put left the entry as it reads back: whole seconds.
	if got := acme.CreatedAt; !got.Equal(t0) {
		t.Fatalf("written entry's created_at = %v, want %v", got, t0)
	}
	want := map[string]string{"acme": entryJSON(t, acme), "beta": entryJSON(t, beta)}
	for _, ws := range []string{"acme", "beta"} {
		got, err := s.Get(ctx, ws, person)
		if err != nil || got == nil {
			t.Fatalf("get %s: %v, %v", ws, got, err)
		}
		if j := entryJSON(t, got); j != want[ws] {
			t.Fatalf("%s read back\n %s\nwant\n %s", ws, j, want[ws])
		}
	}
	if got, _ := s.Get(ctx, "acme", person); !got.DecidedAlready("developers<-engineers") || got.DecidedAlready("readers<-everyone") {
		t.Fatalf("decision not kept: %q", got.Decision)
	}
	if got, _ := s.Get(ctx, "acme", person); !got.FirstInvitedAt("developers").Equal(t0) {
		t.Fatalf("first invited at %v, want %v", got.FirstInvitedAt("developers"), t0)
	}

	// Rewriting one workspace leaves the other's record alone.
	acme.Status, acme.Granted = StatusGranted, []string{"readers", "developers"}
	putLocked(t, s, acme)
	for ws, w := range map[string]string{"acme": entryJSON(t, acme), "beta": want["beta"]} {
		if got, _ := s.Get(ctx, ws, person); entryJSON(t, got) != w {
			t.Fatalf("%s after rewriting acme: %s", ws, entryJSON(t, got))
		}
	}

	// One key per person, with nothing the key says: the account id that the
	// person id names is left out, the workspace and the person too.
	value, err := rdb.Get(ctx, s.personValueKey(person)).Result()
	if err != nil {
		t.Fatal(err)
	}
	// The first line is the person's number (numbers.go), then a line per workspace.
	if n := strings.Count(value, "\n"); n != 3 || !strings.HasPrefix(value, "#1\nacme\t{") || strings.Contains(value, person) || strings.Contains(value, `"557058:anna"`) ||
		!strings.Contains(value, `"557058:other"`) || strings.Contains(value, "2026-") {
		t.Fatalf("person value = %q", value)
	}
	if keys, _ := rdb.Keys(ctx, "{"+strings.Trim(s.prefix, "{}")+"}:entry:*").Result(); len(keys) != 0 {
		t.Fatalf("old-format keys written: %v", keys)
	}

	lock, entries, err := s.LockAndGet(ctx, person, "test", time.Minute, []string{"acme", "beta", "gamma"})
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	if entries["gamma"] != nil || entryJSON(t, entries["acme"]) != entryJSON(t, acme) || entryJSON(t, entries["beta"]) != want["beta"] {
		t.Fatalf("LockAndGet = %+v", entries)
	}
}

func TestDecisionFollowsTheStory(t *testing.T) {
	e := &Entry{}
	if e.DecidedAlready("") {
		t.Fatal("decided with no decision")
	}
	e.Record(t0, "webhook", ActionDecided, "", "developers<-engineers")
	for _, a := range []string{ActionGroupAdded, ActionGroupAlreadyGiven, ActionInvitationSent, ActionInvitationAccepted} {
		e.Record(t0, "webhook", a, "developers", "")
		if !e.DecidedAlready("developers<-engineers") {
			t.Fatalf("an outcome (%s) ended the decision", a)
		}
	}
	if e.DecidedAlready("developers<-engineers readers<-everyone") {
		t.Fatal("another decision counts as taken")
	}
	e.Record(t0, "webhook", ActionError, "", "boom")
	if e.DecidedAlready("developers<-engineers") {
		t.Fatal("an error kept the decision")
	}
}

// oldEntry is an entry as the old format held it, with its history.
func oldEntry(ws, person, email string) (*Entry, []Event) {
	e := &Entry{
		Workspace: ws, PersonID: person, AccountID: strings.TrimPrefix(person, "acct:"), Email: email, DisplayName: "Old " + person,
		Status: StatusInvited, Waiting: []string{"readers"}, NextCheckAt: t0.Add(3 * time.Hour),
		RulesByGroup: map[string][]string{"developers": {"staff"}, "readers": {"everyone"}},
		Invitations:  []Invitation{{Group: "developers", SentAt: t0.Add(48 * time.Hour), ExpiresAt: t0.Add(9 * 24 * time.Hour), Resends: 1, State: InvitationPending}},
		CreatedAt:    t0, UpdatedAt: t0.Add(48 * time.Hour),
	}
	return e, []Event{
		{At: t0, Actor: "webhook", Action: ActionDecided, Detail: "developers<-staff readers<-everyone"},
		{At: t0, Actor: "webhook", Action: ActionInvitationSent, Group: "developers"},
		{At: t0.Add(48 * time.Hour), Actor: "sweep", Action: ActionInvitationResent, Group: "developers", Detail: "re-send 1 of 3"},
	}
}

func TestOldFormatEntryIsReadAndRewrittenOnPut(t *testing.T) {
	s, _, rdb := testStore(t, Options{})
	ctx := context.Background()
	const person = "acct:557058:olga"
	old, story := oldEntry("acme", person, "olga@acme.com")
	if err := s.PutLegacy(ctx, old, story); err != nil {
		t.Fatal(err)
	}
	// What the new format derives from the story comes from the old history.
	old.Invitations[0].FirstSentAt = t0
	old.Decision = ""
	got, err := s.Get(ctx, "acme", person)
	if err != nil || got == nil {
		t.Fatalf("old entry: %v, %v", got, err)
	}
	if entryJSON(t, got) != entryJSON(t, old) {
		t.Fatalf("old entry read as\n %s\nwant\n %s", entryJSON(t, got), entryJSON(t, old))
	}
	if !got.FirstInvitedAt("developers").Equal(t0) {
		t.Fatalf("first invited at %v, want %v (from the old history)", got.FirstInvitedAt("developers"), t0)
	}
	// The resend after the decision ended it, as the old history scan did.
	if got.DecidedAlready("developers<-staff readers<-everyone") {
		t.Fatal("decision still in progress after a re-send")
	}
	if id, _ := s.PersonByEmail(ctx, "Olga@acme.com"); id != person {
		t.Fatalf("old email index: %q", id)
	}

	lock, entries, err := s.LockAndGet(ctx, person, "test", time.Minute, []string{"acme"})
	if err != nil {
		t.Fatal(err)
	}
	if entryJSON(t, entries["acme"]) != entryJSON(t, old) {
		t.Fatalf("LockAndGet read the old entry as %s", entryJSON(t, entries["acme"]))
	}
	e := entries["acme"]
	e.Status = StatusGranted
	if err := s.Put(lock.Context(ctx), e); err != nil {
		t.Fatal(err)
	}
	lock.Unlock()

	for _, key := range []string{s.entryKey("acme", person), s.personKey(person), s.emailKey("olga@acme.com")} {
		if n, _ := rdb.Exists(ctx, key).Result(); n != 0 {
			t.Fatalf("old-format key %s still there after Put", key)
		}
	}
	value, err := rdb.Get(ctx, s.personValueKey(person)).Result()
	if err != nil || !strings.HasPrefix(value, "#1\nacme\t{") {
		t.Fatalf("new-format value = %q, %v", value, err)
	}
	got, _ = s.Get(ctx, "acme", person)
	if got.Status != StatusGranted || !got.FirstInvitedAt("developers").Equal(t0) || got.Invitations[0].Resends != 1 {
		t.Fatalf("rewritten entry = %s", entryJSON(t, got))
	}
	if id, _ := s.PersonByEmail(ctx, "olga@acme.com"); id != person {
		t.Fatalf("email index after the rewrite: %q", id)
	}
	if list, _ := s.List(ctx, "acme"); len(list) != 1 || list[0].Status != StatusGranted {
		t.Fatalf("list after the rewrite = %+v", list)
	}
}

func TestListPersonAndEmailOverMixedFormats(t *testing.T) {
	s, _, _ := testStore(t, Options{})
	ctx := context.Background()
	// Ann: old in acme, new in beta. Bob: new in acme. Cid: old in beta.
	annOld, annStory := oldEntry("acme", "acct:ann", "ann@acme.com")
	if err := s.PutLegacy(ctx, annOld, annStory); err != nil {
		t.Fatal(err)
	}
	putLocked(t, s, &Entry{Workspace: "beta", PersonID: "acct:ann", AccountID: "ann", Email: "ann@acme.com", Status: StatusGranted, Granted: []string{"readers"}, CreatedAt: t0})
	putLocked(t, s, &Entry{Workspace: "acme", PersonID: "acct:bob", AccountID: "bob", Email: "bob@acme.com", Status: StatusGranted, Granted: []string{"readers"}, CreatedAt: t0})
	cid, cidStory := oldEntry("beta", "dc:cid", "cid@beta.com")
	cid.AccountID = ""
	if err := s.PutLegacy(ctx, cid, cidStory); err != nil {
		t.Fatal(err)
	}

	if got, want := listed(t, s, ""), []string{"acme/acct:ann/invited", "acme/acct:bob/granted", "beta/acct:ann/granted", "beta/dc:cid/invited"}; !slices.Equal(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
	if got, want := listed(t, s, "beta"), []string{"beta/acct:ann/granted", "beta/dc:cid/invited"}; !slices.Equal(got, want) {
		t.Fatalf("List(beta) = %q, want %q", got, want)
	}
	ann, err := s.Person(ctx, "acct:ann")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := refsOf(ann), []string{"acme/acct:ann/invited", "beta/acct:ann/granted"}; !slices.Equal(got, want) {
		t.Fatalf("Person(ann) = %q, want %q", got, want)
	}
	if c, _ := s.Person(ctx, "dc:cid"); len(c) != 1 || c[0].AccountID != "" || c[0].Email != "cid@beta.com" {
		t.Fatalf("Person(cid) = %+v", c)
	}
	for email, want := range map[string]string{"ann@acme.com": "acct:ann", "bob@acme.com": "acct:bob", "CID@beta.com": "dc:cid", "nobody@acme.com": ""} {
		if got, err := s.PersonByEmail(ctx, email); err != nil || got != want {
			t.Fatalf("PersonByEmail(%s) = %q, %v, want %q", email, got, err, want)
		}
	}
}

func TestWorkspaceNamesThatCannotBeRecordsAreRefused(t *testing.T) {
	s, _, _ := testStore(t, Options{})
	for _, ws := range []string{"", "a\tb", "a\nb"} {
		if err := s.PutUnlocked(context.Background(), &Entry{Workspace: ws, PersonID: "acct:x"}); err == nil {
			t.Fatalf("workspace %q accepted", ws)
		}
	}
}

// One typical entry's key stays small: the compact format's whole point.
// Measured on a private redis-server (miniredis has no MEMORY USAGE).
func TestTypicalEntryMemory(t *testing.T) {
	srv := redistest.StartServer(t, "--appendonly", "no")
	o, err := redis.ParseURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(o)
	defer rdb.Close()
	ctx := context.Background()
	s := New(rdb, "autoinvite", Options{})
	const person = "acct:557058:f58131cb-b67d-43c7-b30d-6b58d40bd077"
	e, story := oldEntry("acme", person, "firstname.lastname@acme.com")
	e.DisplayName = "Firstname Lastname"
	if err := s.PutLegacy(ctx, e, story); err != nil {
		t.Fatal(err)
	}
	oldSize, err := rdb.MemoryUsage(ctx, s.entryKey("acme", person)).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range story {
		e.Record(ev.At, ev.Actor, ev.Action, ev.Group, ev.Detail)
	}
	putLocked(t, s, e)
	size, err := rdb.MemoryUsage(ctx, s.personValueKey(person)).Result()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("MEMORY USAGE of an invited newcomer: %d B (old format %d B)", size, oldSize)
	// With a real-length account id and email: 440 B on Redis 7.0 (1144 B before).
	if size > 512 || size*5 > oldSize*2 {
		t.Fatalf("MEMORY USAGE of an invited newcomer's key = %d B, want ≤ 512 B and under 40%% of the old format's %d B", size, oldSize)
	}
}
