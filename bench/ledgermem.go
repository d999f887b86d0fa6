package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/autoinvite/autoinvite/ledger"
)

// ledgerGoal is the bound on Redis memory per ledger entry at 1M entries.
const ledgerGoal = 900

// benchLedger: Redis memory per ledger entry (the entry and its indexes; the
// audit stream is capped and counted apart) for the two typical kinds of
// entry, in the old layout (a JSON key per entry with its history, a set per
// person, a key per email) and the compact one, at a tenth of -ledger and at
// -ledger entries.
func benchLedger(ctx context.Context, env *benchEnv) error {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	small := env.o.ledger / 10
	fmt.Println("newcomer: invited, one pending invitation, an early-check time, 2 events; member: granted 3 groups, 4 events")
	fmt.Println("(ids of real length, as in the sweep benchmark: person acct:557058:<UUID>, 43-character account id; email first.last<n>@acme-corp.com; one workspace)")
	fmt.Println()
	fmt.Println("| entry | layout | entries | Redis used_memory | per entry | MEMORY USAGE of one entry's key |")
	fmt.Println("| --- | --- | ---: | ---: | ---: | ---: |")
	met := true
	var parts []string // rows of the second table: where a compact entry's bytes go
	for _, kind := range []string{"newcomer", "member"} {
		for _, layout := range []string{"old", "compact"} {
			if err := env.flush(ctx); err != nil {
				return err
			}
			// Records go to the stream as in production, trimmed to a few
			// nodes and deleted before measuring.
			store := ledger.New(env.rdb, keyPrefix, ledger.Options{AuditMaxLen: 1})
			base := usedMemory(ctx, env)
			from := 0
			for _, size := range []int{small, env.o.ledger} {
				err := seedParallel(ctx, from, size, func(i int) error {
					e, story := typicalEntry(kind, i, now)
					// The newest event applied to the person, as every
					// signup records it: its own key in the old layout, a
					// line of the person's value in the compact one.
					if layout == "old" {
						if err := env.rdb.Set(ctx, fmt.Sprintf("{%s}:events:%s", keyPrefix, e.PersonID), now.UnixMilli(), 0).Err(); err != nil {
							return err
						}
						return store.PutLegacy(ctx, e, story)
					}
					if err := store.SetWatermark(ctx, e.PersonID, ledger.Watermark{At: now.UnixMilli()}); err != nil {
						return err
					}
					for _, ev := range story {
						e.Record(ev.At, ev.Actor, ev.Action, ev.Group, ev.Detail)
					}
					return store.PutUnlocked(ctx, e) // seeding: no worker runs
				})
				if err != nil {
					return err
				}
				from = size
				if err := env.rdb.Del(ctx, store.AuditKey()).Err(); err != nil {
					return err
				}
				mem := usedMemory(ctx, env) - base
				key := fmt.Sprintf("{%s}:p:%s", keyPrefix, personID(1))
				if layout == "old" {
					key = fmt.Sprintf("{%s}:entry:acme:%s", keyPrefix, personID(1))
				}
				one, err := env.rdb.MemoryUsage(ctx, key).Result()
				if err != nil {
					return fmt.Errorf("MEMORY USAGE %s: %w", key, err)
				}
				per := mem / int64(size)
				fmt.Printf("| %s | %s | %d | %.0f MB | %d B | %d B |\n", kind, layout, size, float64(mem)/1e6, per, one)
				if layout == "compact" && size == env.o.ledger {
					met = met && per <= ledgerGoal
					rows, err := ledgerParts(ctx, env, kind, size, per)
					if err != nil {
						return err
					}
					parts = append(parts, rows...)
				}
			}
		}
	}
	verdict := "MET"
	if !met {
		verdict = "NOT MET"
	}
	fmt.Printf("\ngoal: ≤ %d B per entry at %d entries, compact layout, both kinds: %s\n", ledgerGoal, env.o.ledger, verdict)
	fmt.Printf("\nwhere a compact entry's bytes go at %d entries (MEMORY USAGE per key type, over the entries):\n\n", env.o.ledger)
	fmt.Println("| entry | key | per entry |")
	fmt.Println("| --- | --- | ---: |")
	for _, row := range parts {
		fmt.Println(row)
	}
	return nil
}

// ledgerParts splits a compact ledger's used memory per entry by key type:
// MEMORY USAGE (every element counted: SAMPLES 0) of each index, of the
// numbers' hashes and of a sample of 1000 people's values, per entry; the
// rest is the keyspace's own table and what the allocator keeps.
func ledgerParts(ctx context.Context, env *benchEnv, kind string, entries int, per int64) ([]string, error) {
	tag := "{" + keyPrefix + "}"
	usage := func(key string) (int64, error) {
		n, err := env.rdb.MemoryUsage(ctx, key, 0).Result()
		if errors.Is(err, redis.Nil) {
			return 0, nil // a member has no pending invitation: no due or check index
		}
		if err != nil {
			return 0, fmt.Errorf("MEMORY USAGE %s: %w", key, err)
		}
		return n, nil
	}
	var values int64
	const sample = 1000
	for j := range sample {
		n, err := usage(tag + ":p:" + personID(j*entries/sample))
		if err != nil {
			return nil, err
		}
		values += n
	}
	var numbers int64
	iter := env.rdb.Scan(ctx, 0, tag+":n:*", 1000).Iterator()
	for iter.Next(ctx) {
		n, err := usage(iter.Val())
		if err != nil {
			return nil, err
		}
		numbers += n
	}
	if err := iter.Err(); err != nil {
		return nil, err
	}
	type part struct {
		name string
		size int64
	}
	parts := []part{{"person's value `p:<person>` (mean of 1000)", values / sample}}
	for _, k := range []struct{ name, key string }{
		{"workspace's people `ws:acme`", ":ws:acme"}, {"email index `emails`", ":emails"},
		{"due invitations `due`", ":due"}, {"early checks `check`", ":check"},
	} {
		n, err := usage(tag + k.key)
		if err != nil {
			return nil, err
		}
		parts = append(parts, part{k.name, n / int64(entries)})
	}
	parts = append(parts, part{"person numbers' hashes `n:<n/128>`", numbers / int64(entries)})
	rest := per
	var rows []string
	for _, p := range parts {
		rest -= p.size
		rows = append(rows, fmt.Sprintf("| %s | %s | %d B |", kind, p.name, p.size))
	}
	return append(rows, fmt.Sprintf("| %s | the rest (keyspace table, allocator) | %d B |", kind, rest)), nil
}

// typicalEntry is entry i of a kind (see benchLedger) and its story.
func typicalEntry(kind string, i int, now time.Time) (*ledger.Entry, []ledger.Event) {
	n := strconv.Itoa(i)
	sent := now.Add(-24 * time.Hour)
	e := &ledger.Entry{
		Workspace: "acme", PersonID: personID(i), AccountID: realAccountID(i),
		Email: realEmail(i), DisplayName: "Person " + n, CreatedAt: sent, UpdatedAt: sent,
	}
	if kind == "member" {
		e.Status = ledger.StatusGranted
		e.Granted = []string{"developers", "leads", "readers"}
		e.RulesByGroup = map[string][]string{"developers": {"engineers"}, "leads": {"leads"}, "readers": {"everyone"}}
		e.MemberSeenAt = sent
		return e, []ledger.Event{
			{At: sent, Actor: "webhook", Action: ledger.ActionDecided, Detail: "developers<-engineers leads<-leads readers<-everyone"},
			{At: sent, Actor: "webhook", Action: ledger.ActionGroupAdded, Group: "developers"},
			{At: sent, Actor: "webhook", Action: ledger.ActionGroupAdded, Group: "leads"},
			{At: sent, Actor: "webhook", Action: ledger.ActionGroupAdded, Group: "readers"},
		}
	}
	return newcomerEntry(i, now, false)
}

// newcomerEntry is an invited person with one pending invitation and an
// early-check time (due ones expired an hour ago), and their story.
func newcomerEntry(i int, now time.Time, due bool) (*ledger.Entry, []ledger.Event) {
	n := strconv.Itoa(i)
	sent, expires := now.Add(-24*time.Hour), now.Add(6*24*time.Hour)
	if due {
		sent, expires = now.Add(-169*time.Hour), now.Add(-time.Hour)
	}
	e := &ledger.Entry{
		Workspace: "acme", PersonID: personID(i), AccountID: realAccountID(i),
		Email: realEmail(i), DisplayName: "Person " + n,
		Status: ledger.StatusInvited, Waiting: []string{"readers"}, NextCheckAt: now.Add(3 * time.Hour),
		RulesByGroup: map[string][]string{"developers": {"staff"}, "readers": {"everyone"}},
		Invitations:  []ledger.Invitation{{Group: "developers", SentAt: sent, ExpiresAt: expires, State: ledger.InvitationPending}},
		CreatedAt:    sent, UpdatedAt: sent,
	}
	return e, []ledger.Event{
		{At: sent, Actor: "webhook", Action: ledger.ActionDecided, Detail: "developers<-staff readers<-everyone"},
		{At: sent, Actor: "webhook", Action: ledger.ActionInvitationSent, Group: "developers"},
	}
}

// seedParallel calls write for every i in [from, to) from 64 goroutines.
func seedParallel(ctx context.Context, from, to int, write func(i int) error) error {
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= to {
					return
				}
				if err := write(i); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return err
	}
	return ctx.Err()
}
