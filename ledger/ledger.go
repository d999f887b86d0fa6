// Package ledger records, per workspace and person, what autoinvite decided and
// did: groups granted and waiting, invitations and their expiry, errors. It is
// what makes replays harmless and what the sweep, revocation and CLI read.
package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Status of a person in a workspace.
type Status string

// Statuses.
const (
	StatusGranted         Status = "granted"           // every group granted
	StatusInvited         Status = "invited"           // invitation sent, groups waiting for the person to join
	StatusWaitingForEmail Status = "waiting-for-email" // not a member and Jira hides the email
	StatusFailed          Status = "failed"            // a group or invitation failed; see LastError
	StatusExcluded        Status = "excluded"          // an exclusion matched: nothing granted
	StatusExpired         Status = "expired"           // invitation given up after max_resends
	StatusCancelled       Status = "cancelled"         // invitations cancelled (deactivation or an admin)
	StatusRevoked         Status = "revoked"           // deactivated: granted groups removed
	StatusRevocationHeld  Status = "revocation-held"   // removals held by the circuit breaker
	StatusSeatLimit       Status = "held-seat-limit"   // invitation held: the workspace's max_members is reached
	StatusBatched         Status = "queued-for-batch"  // waiting in a batched call (Data Center adds, organization invitations)
	StatusUserMissing     Status = "user-missing"      // Bitbucket Data Center has no such user: nothing granted
)

// Invitation states.
const (
	InvitationPending   = "pending"
	InvitationAccepted  = "accepted"
	InvitationExpired   = "expired" // given up after max_resends
	InvitationCancelled = "cancelled"
)

// Invitation is one Bitbucket invitation autoinvite sent.
type Invitation struct {
	Group     string    `json:"group"`
	SentAt    time.Time `json:"sent_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Resends   int       `json:"resends"`
	State     string    `json:"state"`
}

// Event is one line of a person's story in a workspace.
type Event struct {
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"` // webhook, sweep, cli:<user>
	Action string    `json:"action"`
	Group  string    `json:"group,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// Entry is the ledger record of one person in one workspace.
type Entry struct {
	Workspace   string   `json:"workspace"`
	PersonID    string   `json:"person_id"`
	AccountID   string   `json:"account_id,omitempty"`
	JiraUser    string   `json:"jira_user,omitempty"`
	Email       string   `json:"email,omitempty"`
	DisplayName string   `json:"display_name,omitempty"`
	Status      Status   `json:"status"`
	Granted     []string `json:"granted,omitempty"`
	Waiting     []string `json:"waiting,omitempty"`
	// HandGiven are groups the person was already in when autoinvite tried to
	// add them: an admin gave them, so revocation never removes them.
	HandGiven []string `json:"hand_given,omitempty"`
	// HeldRemovals are removals the circuit breaker holds until an operator resumes.
	HeldRemovals []string `json:"held_removals,omitempty"`
	// NextCheckAt is when to look again whether an invited person has joined early.
	NextCheckAt time.Time `json:"next_check_at,omitzero"`
	// MemberSeenAt is when Bitbucket last said the person is a workspace member:
	// retries within the hour skip the check (membership is rarely taken back).
	MemberSeenAt time.Time           `json:"member_seen_at,omitzero"`
	RulesByGroup map[string][]string `json:"rules_by_group,omitempty"`
	// Batched are the groups waiting in a batched call, with when they were
	// queued: a replay within the hour does not queue them again.
	Batched     map[string]time.Time `json:"batched,omitempty"`
	Invitations []Invitation         `json:"invitations,omitempty"`
	LastError   string               `json:"last_error,omitempty"`
	CreatedAt   time.Time            `json:"created_at"`
	UpdatedAt   time.Time            `json:"updated_at"`
	History     []Event              `json:"history,omitempty"`

	// unsaved are the events recorded since the last Put: Put appends them to
	// the audit stream in the same transaction.
	unsaved []Event
}

// maxHistory bounds an entry's story so a flapping user cannot grow it forever.
const maxHistory = 100

// Record appends an event to the entry's history (and, at Put, to the audit trail).
func (e *Entry) Record(at time.Time, actor, action, group, detail string) {
	ev := Event{At: at, Actor: actor, Action: action, Group: group, Detail: detail}
	e.History = append(e.History, ev)
	e.unsaved = append(e.unsaved, ev)
	if len(e.History) > maxHistory {
		e.History = e.History[len(e.History)-maxHistory:]
	}
}

// HasGranted reports whether the person has group, granted by autoinvite or by hand.
func (e *Entry) HasGranted(group string) bool {
	return slices.Contains(e.Granted, group) || slices.Contains(e.HandGiven, group)
}

// GrantedByHand records that the person already had group before autoinvite.
func (e *Entry) GrantedByHand(group string) {
	e.Waiting = slices.DeleteFunc(e.Waiting, func(g string) bool { return g == group })
	if !e.HasGranted(group) {
		e.HandGiven = append(e.HandGiven, group)
	}
}

// Revoked removes group from the granted list.
func (e *Entry) Revoked(group string) {
	e.Granted = slices.DeleteFunc(e.Granted, func(g string) bool { return g == group })
}

// PendingInvitation returns the pending invitation for group, or nil.
func (e *Entry) PendingInvitation(group string) *Invitation {
	for i := range e.Invitations {
		if e.Invitations[i].Group == group && e.Invitations[i].State == InvitationPending {
			return &e.Invitations[i]
		}
	}
	return nil
}

// AnyPendingInvitation reports whether an invitation is outstanding.
func (e *Entry) AnyPendingInvitation() bool {
	for _, inv := range e.Invitations {
		if inv.State == InvitationPending {
			return true
		}
	}
	return false
}

// Grant moves group from waiting to granted.
func (e *Entry) Grant(group string) {
	e.Waiting = slices.DeleteFunc(e.Waiting, func(g string) bool { return g == group })
	if !e.HasGranted(group) {
		e.Granted = append(e.Granted, group)
	}
}

// MarkBatched records that group waits in a batched call since at.
func (e *Entry) MarkBatched(group string, at time.Time) {
	if e.Batched == nil {
		e.Batched = map[string]time.Time{}
	}
	e.Batched[group] = at
}

// Unbatch records that group's batched call is over.
func (e *Entry) Unbatch(group string) {
	delete(e.Batched, group)
	if len(e.Batched) == 0 {
		e.Batched = nil
	}
}

// Wait adds group to the groups still to grant.
func (e *Entry) Wait(group string) {
	if !slices.Contains(e.Waiting, group) && !e.HasGranted(group) {
		e.Waiting = append(e.Waiting, group)
	}
}

// Invited reports whether autoinvite ever invited the person into group.
func (e *Entry) Invited(group string) bool {
	for _, inv := range e.Invitations {
		if inv.Group == group {
			return true
		}
	}
	return false
}

// PendingGroups lists the groups of pending invitations.
func (e *Entry) PendingGroups() []string {
	var out []string
	for _, inv := range e.Invitations {
		if inv.State == InvitationPending {
			out = append(out, inv.Group)
		}
	}
	return out
}

// SetPendingInvitations moves every pending invitation to state.
func (e *Entry) SetPendingInvitations(state string) int {
	n := 0
	for i := range e.Invitations {
		if e.Invitations[i].State == InvitationPending {
			e.Invitations[i].State = state
			n++
		}
	}
	return n
}

// nextExpiry is the earliest expiry of a pending invitation (zero if none).
func (e *Entry) nextExpiry() time.Time {
	var next time.Time
	for _, inv := range e.Invitations {
		if inv.State == InvitationPending && (next.IsZero() || inv.ExpiresAt.Before(next)) {
			next = inv.ExpiresAt
		}
	}
	return next
}

// Store keeps the ledger in Redis under a key prefix.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	opts   Options
}

// New returns a store; prefix namespaces every key.
func New(rdb redis.UniversalClient, prefix string, opts Options) *Store {
	if opts.AuditMaxLen <= 0 {
		opts.AuditMaxLen = 100000
	}
	// One Redis Cluster hash tag for every ledger key: an entry, its indexes
	// and its audit record are written in one MULTI, which a cluster only
	// allows within one slot.
	return &Store{rdb: rdb, prefix: "{" + prefix + "}", opts: opts}
}

func (s *Store) entryKey(workspace, personID string) string {
	return s.prefix + ":entry:" + workspace + ":" + personID
}
func (s *Store) personKey(personID string) string { return s.prefix + ":person:" + personID }
func (s *Store) emailKey(email string) string     { return s.prefix + ":email:" + strings.ToLower(email) }
func (s *Store) lockKey(personID string) string   { return s.prefix + ":lock:" + personID }
func (s *Store) workspaceKey(ws string) string    { return s.prefix + ":ws:" + ws }
func (s *Store) workspacesKey() string            { return s.prefix + ":workspaces" }

// CheckKey is the sorted set of invited people whose membership is due for an
// early-acceptance check (score: unix seconds of NextCheckAt).
func (s *Store) CheckKey() string { return s.prefix + ":check" }

// DueKey is the sorted set of pending invitations by expiry (member
// "workspace\x00person", score unix seconds), so the sweep reads only what is due.
func (s *Store) DueKey() string { return s.prefix + ":due" }

func dueMember(workspace, personID string) string { return workspace + "\x00" + personID }

// Get returns the entry, or nil when there is none.
func (s *Store) Get(ctx context.Context, workspace, personID string) (*Entry, error) {
	raw, err := s.rdb.Get(ctx, s.entryKey(workspace, personID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ledger %s/%s: %w", workspace, personID, err)
	}
	var e Entry
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, fmt.Errorf("decode ledger %s/%s: %w", workspace, personID, err)
	}
	return &e, nil
}

// Put writes the entry, its indexes and its new audit records atomically. In
// dry-run mode only the audit records are written.
func (s *Store) Put(ctx context.Context, e *Entry) error {
	raw, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode ledger %s/%s: %w", e.Workspace, e.PersonID, err)
	}
	records := s.recordsOf(e)
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, rec := range records {
			s.xadd(ctx, p, rec)
		}
		if s.opts.DryRun {
			return nil
		}
		p.Set(ctx, s.entryKey(e.Workspace, e.PersonID), raw, 0)
		p.SAdd(ctx, s.personKey(e.PersonID), e.Workspace)
		p.SAdd(ctx, s.workspaceKey(e.Workspace), e.PersonID)
		p.SAdd(ctx, s.workspacesKey(), e.Workspace)
		if e.Email != "" {
			p.Set(ctx, s.emailKey(e.Email), e.PersonID, 0)
		}
		if next := e.nextExpiry(); !next.IsZero() {
			p.ZAdd(ctx, s.DueKey(), redis.Z{Score: float64(next.Unix()), Member: dueMember(e.Workspace, e.PersonID)})
		} else {
			p.ZRem(ctx, s.DueKey(), dueMember(e.Workspace, e.PersonID))
		}
		if e.AnyPendingInvitation() && e.AccountID != "" && !e.NextCheckAt.IsZero() {
			p.ZAdd(ctx, s.CheckKey(), redis.Z{Score: float64(e.NextCheckAt.Unix()), Member: dueMember(e.Workspace, e.PersonID)})
		} else {
			p.ZRem(ctx, s.CheckKey(), dueMember(e.Workspace, e.PersonID))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write ledger %s/%s: %w", e.Workspace, e.PersonID, err)
	}
	e.unsaved = nil
	s.observe(records)
	return nil
}

// DryRun reports whether the store only audits.
func (s *Store) DryRun() bool { return s.opts.DryRun }

// Person returns every workspace entry of a person, sorted by workspace.
func (s *Store) Person(ctx context.Context, personID string) ([]*Entry, error) {
	workspaces, err := s.rdb.SMembers(ctx, s.personKey(personID)).Result()
	if err != nil {
		return nil, fmt.Errorf("read ledger person %s: %w", personID, err)
	}
	slices.Sort(workspaces)
	var out []*Entry
	for _, ws := range workspaces {
		e, err := s.Get(ctx, ws, personID)
		if err != nil {
			return nil, err
		}
		if e != nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// Ref names one entry: a workspace and a person.
type Ref struct {
	Workspace string
	PersonID  string
}

// DueAt lists up to limit entries from an index (DueKey or CheckKey) whose score
// is at or before t, earliest first. The cost grows with the number returned,
// not with the size of the ledger.
func (s *Store) DueAt(ctx context.Context, index string, t time.Time, limit int64) ([]Ref, error) {
	members, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: index, ByScore: true, Start: "-inf", Stop: fmt.Sprint(t.Unix()), Count: limit,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", index, err)
	}
	out := make([]Ref, 0, len(members))
	for _, m := range members {
		ws, person, ok := strings.Cut(m, "\x00")
		if ok {
			out = append(out, Ref{Workspace: ws, PersonID: person})
		}
	}
	return out, nil
}

// List returns every entry of a workspace ("" = all workspaces), sorted by
// workspace then person. It reads the whole workspace: for admins, not hot paths.
func (s *Store) List(ctx context.Context, workspace string) ([]*Entry, error) {
	workspaces := []string{workspace}
	if workspace == "" {
		var err error
		if workspaces, err = s.rdb.SMembers(ctx, s.workspacesKey()).Result(); err != nil {
			return nil, fmt.Errorf("list workspaces: %w", err)
		}
		slices.Sort(workspaces)
	}
	var out []*Entry
	for _, ws := range workspaces {
		people, err := s.rdb.SMembers(ctx, s.workspaceKey(ws)).Result()
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", ws, err)
		}
		slices.Sort(people)
		for _, p := range people {
			e, err := s.Get(ctx, ws, p)
			if err != nil {
				return nil, err
			}
			if e != nil {
				out = append(out, e)
			}
		}
	}
	return out, nil
}

// PersonByEmail resolves an email to a person id ("" when unknown).
func (s *Store) PersonByEmail(ctx context.Context, email string) (string, error) {
	id, err := s.rdb.Get(ctx, s.emailKey(email)).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read ledger email index: %w", err)
	}
	return id, nil
}

// Cursor returns a stored position (0 when none).
func (s *Store) Cursor(ctx context.Context, name string) (int, error) {
	n, err := s.rdb.Get(ctx, s.prefix+":cursor:"+name).Int()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read cursor %s: %w", name, err)
	}
	return n, nil
}

// SetCursor stores a position; 0 deletes it.
func (s *Store) SetCursor(ctx context.Context, name string, pos int) error {
	key := s.prefix + ":cursor:" + name
	var err error
	if pos == 0 {
		err = s.rdb.Del(ctx, key).Err()
	} else {
		err = s.rdb.Set(ctx, key, pos, 30*24*time.Hour).Err()
	}
	if err != nil {
		return fmt.Errorf("write cursor %s: %w", name, err)
	}
	return nil
}

// ErrBusy means another task holds the person's lock.
var ErrBusy = errors.New("another task is working on this person")

var (
	unlockScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)
	// KEYS[1] the lock, KEYS[2..] entries; nil when the lock is taken.
	lockAndGetScript = redis.NewScript(`if not redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then return false end
local out = {}
for i = 2, #KEYS do out[i - 1] = redis.call("GET", KEYS[i]) or "" end
return out`)
	renewScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)
)

// Lock serialises work on one person across every worker process. The holder
// renews a short lease while it works, so a crashed worker blocks the person
// for one lease at most.
func (s *Store) Lock(ctx context.Context, personID, owner string, lease time.Duration) (unlock func(), err error) {
	key := s.lockKey(personID)
	ok, err := s.rdb.SetNX(ctx, key, owner, lease).Result()
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", personID, err)
	}
	if !ok {
		return nil, fmt.Errorf("lock %s: %w", personID, ErrBusy)
	}
	return s.hold(key, owner, lease), nil
}

// LockAndGet takes the person's lock and reads their entries in workspaces,
// in one round trip. Every workspace asked is in the map, nil when the person
// has no entry there.
func (s *Store) LockAndGet(ctx context.Context, personID, owner string, lease time.Duration, workspaces []string) (unlock func(), entries map[string]*Entry, err error) {
	keys := []string{s.lockKey(personID)}
	for _, ws := range workspaces {
		keys = append(keys, s.entryKey(ws, personID))
	}
	res, err := lockAndGetScript.Run(ctx, s.rdb, keys, owner, lease.Milliseconds()).StringSlice()
	if errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("lock %s: %w", personID, ErrBusy)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("lock %s: %w", personID, err)
	}
	unlock = s.hold(keys[0], owner, lease)
	entries = make(map[string]*Entry, len(workspaces))
	for i, raw := range res {
		if raw == "" {
			entries[workspaces[i]] = nil
			continue
		}
		var e Entry
		if err := json.Unmarshal([]byte(raw), &e); err != nil {
			unlock()
			return nil, nil, fmt.Errorf("decode ledger %s/%s: %w", workspaces[i], personID, err)
		}
		entries[workspaces[i]] = &e
	}
	return unlock, entries, nil
}

// hold renews a lock while its holder works and returns its release.
func (s *Store) hold(key, owner string, lease time.Duration) (unlock func()) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(lease / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				renewScript.Run(context.Background(), s.rdb, []string{key}, owner, lease.Milliseconds())
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		// A fresh context: the task's may be cancelled, the lock must still go.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		unlockScript.Run(ctx, s.rdb, []string{key}, owner)
	}
}
