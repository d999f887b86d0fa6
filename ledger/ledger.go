// Package ledger records, per workspace and person, what autoinvite decided and
// did: groups granted and waiting, invitations and their expiry, errors. It is
// what makes replays harmless and what the sweep, revocation and CLI read.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
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
	// FirstSentAt is the first send, before any re-send (set when the
	// invitation-sent event is recorded).
	FirstSentAt time.Time `json:"first_sent_at,omitzero"`
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
	Batched map[string]time.Time `json:"batched,omitempty"`
	// Intents are the groups autoinvite is about to add, recorded before the
	// call: a retry that finds the person already there knows it was ours.
	Intents map[string]time.Time `json:"intents,omitempty"`
	// Doubts are adds whose call failed without an answer (a timeout, a 5xx):
	// Bitbucket may still apply them later, even after a retry succeeded.
	Doubts      map[string]time.Time `json:"doubts,omitempty"`
	Invitations []Invitation         `json:"invitations,omitempty"`
	LastError   string               `json:"last_error,omitempty"`
	CreatedAt   time.Time            `json:"created_at"`
	UpdatedAt   time.Time            `json:"updated_at"`
	// Decision fingerprints the decision being carried out: set by a
	// "decided" event, kept by its outcomes, cleared by anything else. The
	// story itself is in the audit stream (Store.History).
	Decision string `json:"decision,omitempty"`

	// unsaved are the events recorded since the last Put: Put appends them to
	// the audit stream in the same transaction.
	unsaved []Event
}

// Record notes an event of the person's story: Put appends it to the audit trail.
func (e *Entry) Record(at time.Time, actor, action, group, detail string) {
	e.unsaved = append(e.unsaved, Event{At: at, Actor: actor, Action: action, Group: group, Detail: detail})
	e.follow(at, action, group, detail)
}

// follow keeps what is derived from the story (the decision in progress,
// first invitation times) as an event is recorded or, for an entry of the
// old format, replayed from its stored history.
func (e *Entry) follow(at time.Time, action, group, detail string) {
	switch action {
	case ActionDecided:
		e.Decision = fingerprint(detail)
	case ActionInvitationSent:
		for i := range e.Invitations {
			inv := &e.Invitations[i]
			if inv.FirstSentAt.IsZero() && (group == "" || inv.Group == group || slices.Contains(strings.Split(group, ","), inv.Group)) {
				inv.FirstSentAt = at
			}
		}
	case ActionGroupAdded, ActionGroupAlreadyGiven, ActionInvitationAccepted:
	default:
		e.Decision = ""
	}
}

// DecidedAlready reports whether the decision described by detail is on
// record and still being carried out (only its outcomes since): a retry
// resumes it and does not record it again.
func (e *Entry) DecidedAlready(detail string) bool {
	return e.Decision != "" && e.Decision == fingerprint(detail)
}

// fingerprint stands for a decision's description in the entry: 64 bits are
// plenty to tell one person's successive decisions apart.
func fingerprint(detail string) string {
	h := fnv.New64a()
	h.Write([]byte(detail))
	return strconv.FormatUint(h.Sum64(), 36)
}

// HasGranted reports whether the person has group, granted by autoinvite or by hand.
func (e *Entry) HasGranted(group string) bool {
	return slices.Contains(e.Granted, group) || slices.Contains(e.HandGiven, group)
}

// Intend records that autoinvite is about to add the person to group.
func (e *Entry) Intend(group string, at time.Time) {
	if e.Intents == nil {
		e.Intents = map[string]time.Time{}
	}
	if _, ok := e.Intents[group]; !ok {
		e.Intents[group] = at
	}
}

// Doubt records that an add to group may still be applied later.
func (e *Entry) Doubt(group string, at time.Time) {
	if e.Doubts == nil {
		e.Doubts = map[string]time.Time{}
	}
	e.Doubts[group] = at
}

// Intended reports whether an add to group was recorded as about to happen.
func (e *Entry) Intended(group string) bool {
	_, ok := e.Intents[group]
	return ok
}

// GrantedByHand records that the person already had group before autoinvite.
func (e *Entry) GrantedByHand(group string) {
	delete(e.Intents, group)
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
	delete(e.Intents, group)
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
	// One Redis Cluster hash tag for every ledger key: an entry, its indexes,
	// its audit records and the person's lock are in one script, which a
	// cluster only allows within one slot.
	return &Store{rdb: rdb, prefix: "{" + prefix + "}", opts: opts}
}

// personValueKey holds every workspace record of a person (see compact.go).
func (s *Store) personValueKey(personID string) string { return s.prefix + ":p:" + personID }

// emailsKey is the hash email -> person number (or person id, as written
// before numbers).
func (s *Store) emailsKey() string              { return s.prefix + ":emails" }
func (s *Store) lockKey(personID string) string { return s.prefix + ":lock:" + personID }

// workspaceKey is the set of a workspace's people: person numbers (or ids,
// as written before numbers).
func (s *Store) workspaceKey(ws string) string { return s.prefix + ":ws:" + ws }
func (s *Store) workspacesKey() string         { return s.prefix + ":workspaces" }

// Keys of the old format, read until Put rewrites the person's entries: an
// entry's JSON, the set of a person's workspaces, an email's person id.
func (s *Store) entryKey(workspace, personID string) string {
	return s.prefix + ":entry:" + workspace + ":" + personID
}
func (s *Store) personKey(personID string) string { return s.prefix + ":person:" + personID }
func (s *Store) emailKey(email string) string     { return s.prefix + ":email:" + strings.ToLower(email) }

// CheckKey is the sorted set of invited people whose membership is due for an
// early-acceptance check (members as DueKey's, score: unix seconds of NextCheckAt).
func (s *Store) CheckKey() string { return s.prefix + ":check" }

// DueKey is the sorted set of pending invitations by expiry (member
// "workspace\x00<person number>", or "workspace\x00<person id>" as written
// before numbers; score unix seconds), so the sweep reads only what is due.
func (s *Store) DueKey() string { return s.prefix + ":due" }

// dueMember is an index member of the format before person numbers.
func dueMember(workspace, personID string) string { return workspace + "\x00" + personID }

// Get returns the entry, or nil when there is none.
func (s *Store) Get(ctx context.Context, workspace, personID string) (*Entry, error) {
	var value, old *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		value = p.Get(ctx, s.personValueKey(personID))
		old = p.Get(ctx, s.entryKey(workspace, personID))
		return nil
	})
	if err = firstErr(err, value, old); err != nil {
		return nil, fmt.Errorf("read ledger %s/%s: %w", workspace, personID, err)
	}
	return entryOf(workspace, personID, records(value.Val()), old.Val())
}

// firstErr is a pipeline's first error other than a missing key.
func firstErr(err error, cmds ...redis.Cmder) error {
	if err == nil {
		return nil
	}
	for _, c := range cmds {
		if e := c.Err(); e != nil && !errors.Is(e, redis.Nil) {
			return e
		}
	}
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

// entryOf decodes a workspace's entry from the person's records, else from
// the old format's JSON (nil when neither has it).
func entryOf(workspace, personID string, recs map[string]string, old string) (*Entry, error) {
	if raw, ok := recs[workspace]; ok {
		return decodeEntry(workspace, personID, []byte(raw))
	}
	if old != "" {
		return decodeLegacy(workspace, personID, []byte(old))
	}
	return nil, nil
}

// Put writes the entry, its indexes and its new audit records atomically,
// under the person's lock that ctx carries (see Lock.Context): it fails with
// ErrNotLocked when ctx carries none and ErrLockLost when the lock is no
// longer the caller's. In dry-run mode only the audit records are written.
func (s *Store) Put(ctx context.Context, e *Entry) error {
	return s.PutLocked(ctx, LockFrom(ctx), e)
}

// PutLocked is Put under an explicit lock.
func (s *Store) PutLocked(ctx context.Context, lock *Lock, e *Entry) error {
	if lock == nil {
		return fmt.Errorf("write ledger %s/%s: %w", e.Workspace, e.PersonID, ErrNotLocked)
	}
	if lock.personID != e.PersonID {
		return fmt.Errorf("write ledger %s/%s under the lock of %s: %w", e.Workspace, e.PersonID, lock.personID, ErrNotLocked)
	}
	if err := lock.Err(); err != nil {
		return fmt.Errorf("write ledger %s/%s: %w", e.Workspace, e.PersonID, err)
	}
	return s.putRelease(ctx, lock, e, false)
}

// PutAndUnlock is Put followed by Unlock, in one round trip: for a task's
// last write. When the write fails the lock stays held, for Unlock.
func (s *Store) PutAndUnlock(ctx context.Context, e *Entry) error {
	lock := LockFrom(ctx)
	if lock == nil || lock.personID != e.PersonID || lock.Err() != nil {
		return s.Put(ctx, e) // the same errors as Put
	}
	err := s.putRelease(ctx, lock, e, true)
	if err == nil {
		lock.releasedByWrite()
	}
	return err
}

// PutUnlocked writes an entry without the person's lock: only for writers
// that cannot race a worker (seeding a ledger in tests and benchmarks).
func (s *Store) PutUnlocked(ctx context.Context, e *Entry) error {
	return s.putRelease(ctx, nil, e, false)
}

// putScript writes an entry, its indexes and its audit records, only while
// KEYS[1] (the person's lock) holds ARGV[1] (ARGV[1] "" = no lock). Returns 0
// when the lock is not the caller's: nothing is written. The workspace's
// record replaces its old one in the person's value (compact.go); the old
// format's entry key, person-set membership and email key go. The indexes
// name the person by their number, given here on their first write
// (numbers.go); members naming them by id, written before numbers, go.
// KEYS: lock, person's value, old entry, old person set, workspace's people,
// workspaces, email index, old email key, due index, check index, audit
// stream, numbers' counter (and the hash ARGV[13] .. n/128 of a new number).
// ARGV: token, dry run ("1"), entry's compact JSON, workspace, person, email
// ("" = none), due score ("" = none), check score ("" = none), index member
// by id (the old format's), audit max length, values per audit record,
// release the lock after ("1"), numbers' hash prefix, then the records' values.
var putScript = redis.NewScript(`
if ARGV[1] ~= "" and redis.call("GET", KEYS[1]) ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[11])
for i = 14, #ARGV, n do
  redis.call("XADD", KEYS[11], "MAXLEN", "~", ARGV[10], "*", unpack(ARGV, i, i + n - 1))
end
if ARGV[12] == "1" and ARGV[1] ~= "" then redis.call("DEL", KEYS[1]) end
if ARGV[2] == "1" then return 1 end
local rec = ARGV[4] .. "\t" .. ARGV[3] .. "\n"
local v = redis.call("GET", KEYS[2]) or ""
local num = string.match(v, "^#(%d+)\n")
if not num then
  local id = redis.call("INCR", KEYS[12])
  num = string.format("%d", id)
  v = "#" .. num .. "\n" .. v
  redis.call("HSET", ARGV[13] .. string.format("%d", math.floor(id / 128)), string.format("%d", id % 128), ARGV[5])
end
local at = string.find("\n" .. v, "\n" .. ARGV[4] .. "\t", 1, true)
if at then
  local stop = string.find(v, "\n", at, true)
  v = string.sub(v, 1, at - 1) .. rec .. string.sub(v, stop + 1)
else
  v = v .. rec
end
redis.call("SET", KEYS[2], v)
redis.call("DEL", KEYS[3])
redis.call("SREM", KEYS[4], ARGV[4])
redis.call("SREM", KEYS[5], ARGV[5])
redis.call("SADD", KEYS[5], num)
redis.call("SADD", KEYS[6], ARGV[4])
if ARGV[6] ~= "" then
  redis.call("HSET", KEYS[7], ARGV[6], num)
  redis.call("DEL", KEYS[8])
end
local member = ARGV[4] .. "\0" .. num
redis.call("ZREM", KEYS[9], ARGV[9])
redis.call("ZREM", KEYS[10], ARGV[9])
if ARGV[7] ~= "" then redis.call("ZADD", KEYS[9], ARGV[7], member) else redis.call("ZREM", KEYS[9], member) end
if ARGV[8] ~= "" then redis.call("ZADD", KEYS[10], ARGV[8], member) else redis.call("ZREM", KEYS[10], member) end
return 1`)

func (s *Store) putRelease(ctx context.Context, lock *Lock, e *Entry, release bool) error {
	if !validWorkspace(e.Workspace) {
		return fmt.Errorf("write ledger %q/%s: a workspace name must be non-empty, without tabs or newlines", e.Workspace, e.PersonID)
	}
	e.normalize()
	raw, err := encodeEntry(e)
	if err != nil {
		return fmt.Errorf("encode ledger %s/%s: %w", e.Workspace, e.PersonID, err)
	}
	records := s.recordsOf(e)
	token, dry, due, check := "", "0", "", ""
	if lock != nil {
		token = lock.token
	}
	if s.opts.DryRun {
		dry = "1"
	}
	if next := e.nextExpiry(); !next.IsZero() {
		due = strconv.FormatInt(next.Unix(), 10)
	}
	if e.AnyPendingInvitation() && e.AccountID != "" && !e.NextCheckAt.IsZero() {
		check = strconv.FormatInt(e.NextCheckAt.Unix(), 10)
	}
	keys := []string{
		s.lockKey(e.PersonID), s.personValueKey(e.PersonID), s.entryKey(e.Workspace, e.PersonID), s.personKey(e.PersonID),
		s.workspaceKey(e.Workspace), s.workspacesKey(), s.emailsKey(), s.emailKey(e.Email), s.DueKey(), s.CheckKey(), s.AuditKey(),
		s.numbersKey(),
	}
	perRecord := len(auditValues(AuditRecord{}))
	args := make([]any, 0, 13+perRecord*len(records))
	args = append(args, token, dry, raw, e.Workspace, e.PersonID, strings.ToLower(e.Email), due, check,
		dueMember(e.Workspace, e.PersonID), s.opts.AuditMaxLen, perRecord, map[bool]string{true: "1"}[release], s.numberedPrefix())
	for _, rec := range records {
		args = append(args, auditValues(rec)...)
	}
	ok, err := putScript.Run(ctx, s.rdb, keys, args...).Int()
	if err != nil {
		return fmt.Errorf("write ledger %s/%s: %w", e.Workspace, e.PersonID, err)
	}
	if ok != 1 {
		lock.markLost()
		return fmt.Errorf("write ledger %s/%s: %w", e.Workspace, e.PersonID, ErrLockLost)
	}
	e.unsaved = nil
	s.observe(records)
	return nil
}

// DryRun reports whether the store only audits.
func (s *Store) DryRun() bool { return s.opts.DryRun }

// Person returns every workspace entry of a person, sorted by workspace.
func (s *Store) Person(ctx context.Context, personID string) ([]*Entry, error) {
	var value *redis.StringCmd
	var oldWorkspaces *redis.StringSliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		value = p.Get(ctx, s.personValueKey(personID))
		oldWorkspaces = p.SMembers(ctx, s.personKey(personID))
		return nil
	})
	if err = firstErr(err, value, oldWorkspaces); err != nil {
		return nil, fmt.Errorf("read ledger person %s: %w", personID, err)
	}
	recs := records(value.Val())
	workspaces := slices.Collect(maps.Keys(recs))
	for _, ws := range oldWorkspaces.Val() {
		if _, ok := recs[ws]; !ok {
			workspaces = append(workspaces, ws)
		}
	}
	slices.Sort(workspaces)
	var out []*Entry
	for _, ws := range workspaces {
		old := ""
		if _, ok := recs[ws]; !ok {
			if old, err = s.rdb.Get(ctx, s.entryKey(ws, personID)).Result(); err != nil && !errors.Is(err, redis.Nil) {
				return nil, fmt.Errorf("read ledger %s/%s: %w", ws, personID, err)
			}
		}
		e, err := entryOf(ws, personID, recs, old)
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
	workspaces, whos := make([]string, 0, len(members)), make([]string, 0, len(members))
	for _, m := range members {
		if ws, who, ok := strings.Cut(m, "\x00"); ok {
			workspaces, whos = append(workspaces, ws), append(whos, who)
		}
	}
	people, err := s.resolve(ctx, whos)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", index, err)
	}
	out := make([]Ref, 0, len(people))
	for i, person := range people {
		if person != "" {
			out = append(out, Ref{Workspace: workspaces[i], PersonID: person})
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
		whos, err := s.rdb.SMembers(ctx, s.workspaceKey(ws)).Result()
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", ws, err)
		}
		people, err := s.resolve(ctx, whos)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", ws, err)
		}
		slices.Sort(people)
		people = slices.Compact(people)
		for _, p := range people {
			if p == "" {
				continue
			}
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
	var id, old *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		id = p.HGet(ctx, s.emailsKey(), strings.ToLower(email))
		old = p.Get(ctx, s.emailKey(email))
		return nil
	})
	if err = firstErr(err, id, old); err != nil {
		return "", fmt.Errorf("read ledger email index: %w", err)
	}
	who := id.Val()
	if who == "" {
		who = old.Val()
	}
	people, err := s.resolve(ctx, []string{who})
	if err != nil {
		return "", fmt.Errorf("read ledger email index: %w", err)
	}
	return people[0], nil
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
