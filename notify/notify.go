// Package notify tells admins what needs them: an invitation given up, a
// revocation held by the breaker, Atlassian refusing the credentials, a
// refused config reload, a permanent failure, and a daily digest.
//
// Nothing is sent in a signup's path. Emit only counts the event in a Redis
// window (one per event kind and workspace) and makes sure a flush task is
// queued for the window's end; the flush turns the window into one message
// (with a count) and queues one delivery task per sink, which Asynq retries.
package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
)

// Task types.
const (
	TypeFlush   = "notify:flush"
	TypeDeliver = "notify:deliver"
	TypeDigest  = "notify:digest"
)

// Outcomes of a delivery (the outcome label of the notifications counter).
const (
	OutcomeSent    = "sent"
	OutcomeFailed  = "failed"  // will be retried
	OutcomeDropped = "dropped" // given up: permanent refusal or retries spent
)

// maxPeople bounds the people one aggregated message names.
const maxPeople = 20

// Queue names the notifications queue for a key prefix: notifications never
// wait behind signups, nor signups behind them.
func Queue(prefix string) string { return prefix + ":notify" }

// Person is whom an event is about.
type Person struct {
	ID        string `json:"id,omitempty"` // the ledger's person id
	Email     string `json:"email,omitempty"`
	AccountID string `json:"account_id,omitempty"`
}

// Label names the person for a reader: the email, else the account id.
func (p Person) Label() string {
	switch {
	case p.Email != "":
		return p.Email
	case p.AccountID != "":
		return p.AccountID
	}
	return p.ID
}

// Event is one thing an admin should know.
type Event struct {
	Event     string    `json:"event"`
	Time      time.Time `json:"time"`
	Workspace string    `json:"workspace,omitempty"`
	Person    *Person   `json:"person,omitempty"`
	Detail    string    `json:"detail,omitempty"`
}

// Message is what a sink sends: one event, or a burst of the same event in
// one workspace (Count > 1), or the digest.
type Message struct {
	Event     string    `json:"event"`
	Time      time.Time `json:"time"` // of the first event
	Workspace string    `json:"workspace,omitempty"`
	Person    *Person   `json:"person,omitempty"` // the first event's
	Detail    string    `json:"detail,omitempty"`
	Link      string    `json:"link,omitempty"` // the person (or workspace) in the ledger view
	Count     int       `json:"count"`
	LastTime  time.Time `json:"last_time,omitzero"`
	// Others are further people of the burst (at most 20).
	Others []Person `json:"others,omitempty"`
	Digest *Digest  `json:"digest,omitempty"`
}

// Digest is the daily summary.
type Digest struct {
	Since      time.Time         `json:"since"`
	Until      time.Time         `json:"until"`
	Workspaces []WorkspaceDigest `json:"workspaces"`
}

// WorkspaceDigest is one workspace's day.
type WorkspaceDigest struct {
	Workspace string     `json:"workspace"`
	Invited   int        `json:"invited"`
	Accepted  int        `json:"accepted"`
	GivenUp   int        `json:"given_up"`
	Pending   []AgeCount `json:"pending_by_age"`
}

// AgeCount is how many pending invitations are in an age bucket.
type AgeCount struct {
	Age   string `json:"age"`
	Count int    `json:"count"`
}

// Options configure a Notifier.
type Options struct {
	Redis  redis.UniversalClient
	Prefix string // redis.key_prefix
	// Enqueue queues a task (asynq.Client.EnqueueContext).
	Enqueue func(context.Context, *asynq.Task, ...asynq.Option) (*asynq.TaskInfo, error)
	// Config returns the notifications config in force (it follows reloads).
	Config func() config.Notifications
	// Env supplies the sinks' secrets.
	Env      func(string) string
	Now      func() time.Time
	Logger   zerolog.Logger
	HTTP     *http.Client
	MaxRetry int
	// Observe counts deliveries by sink kind (webhook, slack, email) and outcome.
	Observe func(sink, outcome string)
	// Digest computes the digest between two times.
	Digest func(ctx context.Context, since, until time.Time) (Digest, error)
}

// Notifier records events and delivers messages.
type Notifier struct{ o Options }

// New returns a Notifier.
func New(o Options) (*Notifier, error) {
	if o.Redis == nil || o.Enqueue == nil || o.Config == nil {
		return nil, errors.New("notify: Redis, Enqueue and Config are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Env == nil {
		o.Env = func(string) string { return "" }
	}
	if o.HTTP == nil {
		o.HTTP = &http.Client{Timeout: 15 * time.Second}
	}
	if o.Observe == nil {
		o.Observe = func(string, string) {}
	}
	if o.MaxRetry <= 0 {
		o.MaxRetry = 12
	}
	return &Notifier{o: o}, nil
}

// Wanted reports whether any configured sink wants event.
func (n *Notifier) Wanted(event string) bool {
	for _, s := range sinkRefs(n.o.Config()) {
		if s.wants(event) {
			return true
		}
	}
	return false
}

func (n *Notifier) key(parts ...string) string {
	return "{" + n.o.Prefix + "}:notify:" + strings.Join(parts, ":")
}

// emitScript counts an event in its window. KEYS: window hash, window's
// people list. ARGV: new window id, the event (JSON), max people, TTL ms.
// Returns the window id in force.
var emitScript = redis.NewScript(`
local n = redis.call("HINCRBY", KEYS[1], "count", 1)
if n == 1 then
  redis.call("HSET", KEYS[1], "id", ARGV[1], "first", ARGV[2])
  redis.call("PEXPIRE", KEYS[1], ARGV[4])
  redis.call("DEL", KEYS[2])
end
redis.call("HSET", KEYS[1], "last", ARGV[2])
if redis.call("LLEN", KEYS[2]) < tonumber(ARGV[3]) then
  redis.call("RPUSH", KEYS[2], ARGV[2])
  redis.call("PEXPIRE", KEYS[2], ARGV[4])
end
return redis.call("HGET", KEYS[1], "id")`)

// flushPayload names a window.
type flushPayload struct {
	Event     string `json:"event"`
	Workspace string `json:"workspace"`
	ID        string `json:"id"`
}

// Emit records an event: it opens or joins the window of its kind and
// workspace and makes sure the window's flush is queued. Events no sink wants
// cost nothing.
func (n *Notifier) Emit(ctx context.Context, ev Event) error {
	if !n.Wanted(ev.Event) {
		return nil
	}
	if ev.Time.IsZero() {
		ev.Time = n.o.Now()
	}
	window := n.o.Config().Window.D()
	if window <= 0 {
		window = config.DefaultNotifyWindow
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode notification %s: %w", ev.Event, err)
	}
	var b [8]byte
	rand.Read(b[:])
	ws := ev.Workspace
	if ws == "" {
		ws = "-"
	}
	ttl := (3*window + time.Hour).Milliseconds()
	id, err := emitScript.Run(ctx, n.o.Redis, []string{n.key("win", ev.Event, ws), n.key("win", ev.Event, ws, "people")},
		hex.EncodeToString(b[:]), raw, maxPeople+1, ttl).Text()
	if err != nil {
		return fmt.Errorf("record notification %s: %w", ev.Event, err)
	}
	// Queued with the window's id: the first event queues it, the others
	// find it there (a lost enqueue is repaired by the next event).
	payload, _ := json.Marshal(flushPayload{Event: ev.Event, Workspace: ws, ID: id})
	opened, err := n.windowOpened(ctx, id, time.Now()) // Asynq schedules by the wall clock
	if err != nil {
		return err
	}
	_, err = n.o.Enqueue(ctx, asynq.NewTask(TypeFlush, payload),
		asynq.TaskID("notify-flush:"+id), asynq.Queue(Queue(n.o.Prefix)), asynq.MaxRetry(n.o.MaxRetry),
		jobs.NotBefore(opened.Add(window)), asynq.Retention(time.Hour))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) && !errors.Is(err, asynq.ErrDuplicateTask) {
		return fmt.Errorf("queue notification %s: %w", ev.Event, err)
	}
	return nil
}

// windowOpened is when the window id was opened, kept so that every event of
// the window schedules the flush for the same instant.
func (n *Notifier) windowOpened(ctx context.Context, id string, at time.Time) (time.Time, error) {
	k := n.key("opened", id)
	if _, err := n.o.Redis.SetNX(ctx, k, at.UnixMilli(), 24*time.Hour).Result(); err != nil {
		return time.Time{}, fmt.Errorf("record notification window: %w", err)
	}
	ms, err := n.o.Redis.Get(ctx, k).Int64()
	if err != nil {
		return time.Time{}, fmt.Errorf("read notification window: %w", err)
	}
	return time.UnixMilli(ms), nil
}

// closeScript moves a window, if it is still the one named, out of the way
// of new events. KEYS: window, people, closed window, closed people. ARGV: id.
var closeScript = redis.NewScript(`
if redis.call("HGET", KEYS[1], "id") ~= ARGV[1] then return 0 end
redis.call("RENAME", KEYS[1], KEYS[3])
redis.call("EXPIRE", KEYS[3], 604800)
if redis.call("EXISTS", KEYS[2]) == 1 then
  redis.call("RENAME", KEYS[2], KEYS[4])
  redis.call("EXPIRE", KEYS[4], 604800)
end
return 1`)

// HandleFlush is the Asynq handler for TypeFlush: the window's end.
func (n *Notifier) HandleFlush(ctx context.Context, t *asynq.Task) error {
	var p flushPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.ID == "" {
		return fmt.Errorf("decode notification flush: %v: %w", err, asynq.SkipRetry)
	}
	win, people := n.key("win", p.Event, p.Workspace), n.key("win", p.Event, p.Workspace, "people")
	closed, closedPeople := n.key("closed", p.ID), n.key("closed", p.ID, "people")
	if err := closeScript.Run(ctx, n.o.Redis, []string{win, people, closed, closedPeople}, p.ID).Err(); err != nil {
		return fmt.Errorf("close notification window %s: %w", p.ID, err)
	}
	// A retry finds the window closed already and carries on from here.
	fields, err := n.o.Redis.HGetAll(ctx, closed).Result()
	if err != nil {
		return fmt.Errorf("read notification window %s: %w", p.ID, err)
	}
	if len(fields) == 0 {
		return nil // delivered already
	}
	samples, err := n.o.Redis.LRange(ctx, closedPeople, 0, -1).Result()
	if err != nil {
		return fmt.Errorf("read notification window %s: %w", p.ID, err)
	}
	msg := n.aggregate(fields, samples)
	if err := n.fanOut(ctx, p.ID, msg); err != nil {
		return err
	}
	if err := n.o.Redis.Del(ctx, closed, closedPeople, n.key("opened", p.ID)).Err(); err != nil {
		n.o.Logger.Warn().Err(err).Msg("notification window not deleted: it expires in a week")
	}
	return nil
}

func (n *Notifier) aggregate(fields map[string]string, samples []string) Message {
	var first, last Event
	json.Unmarshal([]byte(fields["first"]), &first)
	json.Unmarshal([]byte(fields["last"]), &last)
	count := 0
	fmt.Sscan(fields["count"], &count)
	msg := Message{
		Event: first.Event, Time: first.Time, Workspace: first.Workspace, Person: first.Person,
		Detail: first.Detail, Count: max(count, 1),
	}
	if msg.Count > 1 {
		msg.LastTime = last.Time
	}
	seen := map[string]bool{}
	if first.Person != nil {
		seen[first.Person.ID+first.Person.Email] = true
	}
	for _, s := range samples {
		var ev Event
		if json.Unmarshal([]byte(s), &ev) != nil || ev.Person == nil || seen[ev.Person.ID+ev.Person.Email] {
			continue
		}
		seen[ev.Person.ID+ev.Person.Email] = true
		if len(msg.Others) < maxPeople {
			msg.Others = append(msg.Others, *ev.Person)
		}
	}
	msg.Link = n.Link(msg.Workspace, msg.Person)
	return msg
}

// Link is the address of a person (or a workspace, or the whole ledger) in
// the ledger view, under notifications.public_url.
func (n *Notifier) Link(workspace string, p *Person) string {
	base := strings.TrimSuffix(n.o.Config().PublicURL, "/")
	switch {
	case p != nil && p.ID != "":
		q := url.Values{"id": {p.ID}}
		if workspace != "" {
			q.Set("workspace", workspace)
		}
		return base + "/ledger/person?" + q.Encode()
	case workspace != "":
		return base + "/ledger/?" + url.Values{"workspace": {workspace}}.Encode()
	}
	return base + "/ledger/"
}

// deliverPayload is one message for one sink.
type deliverPayload struct {
	Sink    string  `json:"sink"`
	Message Message `json:"message"`
}

// fanOut queues one delivery per sink that wants the message; ids make a
// retried fan-out queue nothing twice.
func (n *Notifier) fanOut(ctx context.Context, id string, msg Message) error {
	for _, s := range sinkRefs(n.o.Config()) {
		if !s.wants(msg.Event) {
			continue
		}
		payload, err := json.Marshal(deliverPayload{Sink: s.id, Message: msg})
		if err != nil {
			return fmt.Errorf("encode notification: %w", err)
		}
		_, err = n.o.Enqueue(ctx, asynq.NewTask(TypeDeliver, payload),
			asynq.TaskID("notify-deliver:"+id+":"+s.id), asynq.Queue(Queue(n.o.Prefix)),
			asynq.MaxRetry(n.o.MaxRetry), asynq.Timeout(time.Minute), asynq.Retention(24*time.Hour))
		if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) && !errors.Is(err, asynq.ErrDuplicateTask) {
			return fmt.Errorf("queue notification for %s: %w", s.id, err)
		}
	}
	return nil
}

// HandleDeliver is the Asynq handler for TypeDeliver: one message to one sink.
func (n *Notifier) HandleDeliver(ctx context.Context, t *asynq.Task) error {
	var p deliverPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("decode notification: %v: %w", err, asynq.SkipRetry)
	}
	sink, err := n.sink(p.Sink)
	if err != nil {
		n.o.Observe(kindOf(p.Sink), OutcomeDropped)
		return fmt.Errorf("notification to %s: %w: %w", p.Sink, err, asynq.SkipRetry)
	}
	log := n.o.Logger.With().Str("sink", p.Sink).Str("event", p.Message.Event).Str("workspace", p.Message.Workspace).Int("count", p.Message.Count).Logger()
	err = sink.Send(ctx, p.Message)
	if err == nil {
		n.o.Observe(sink.Kind(), OutcomeSent)
		log.Info().Msg("notification sent")
		return nil
	}
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, ok := asynq.GetMaxRetry(ctx)
	var perm *permanentError
	if errors.As(err, &perm) || (ok && retried >= maxRetry) {
		n.o.Observe(sink.Kind(), OutcomeDropped)
		log.Error().Err(err).Msg("notification dropped")
		return fmt.Errorf("notification to %s: %w: %w", p.Sink, err, asynq.SkipRetry)
	}
	n.o.Observe(sink.Kind(), OutcomeFailed)
	log.Warn().Err(err).Int("retry", retried).Msg("notification failed: will retry")
	return fmt.Errorf("notification to %s: %w", p.Sink, err)
}

// digestPayload is the period of a digest.
type digestPayload struct {
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
}

// EnqueueDigest queues the digest of the day before tick; any number of
// schedulers may call it for the same tick: one task runs.
func (n *Notifier) EnqueueDigest(ctx context.Context, tick time.Time) error {
	if !n.Wanted(config.EventDigest) {
		return nil
	}
	payload, _ := json.Marshal(digestPayload{Since: tick.Add(-24 * time.Hour), Until: tick})
	_, err := n.o.Enqueue(ctx, asynq.NewTask(TypeDigest, payload),
		asynq.TaskID(fmt.Sprintf("notify-digest:%d", tick.Unix())), asynq.Queue(Queue(n.o.Prefix)),
		asynq.MaxRetry(n.o.MaxRetry), asynq.Retention(48*time.Hour))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) && !errors.Is(err, asynq.ErrDuplicateTask) {
		return fmt.Errorf("queue digest: %w", err)
	}
	return nil
}

// HandleDigest is the Asynq handler for TypeDigest.
func (n *Notifier) HandleDigest(ctx context.Context, t *asynq.Task) error {
	var p digestPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("decode digest: %v: %w", err, asynq.SkipRetry)
	}
	if n.o.Digest == nil {
		return fmt.Errorf("digest: no source: %w", asynq.SkipRetry)
	}
	d, err := n.o.Digest(ctx, p.Since, p.Until)
	if err != nil {
		return fmt.Errorf("compute digest: %w", err)
	}
	msg := Message{Event: config.EventDigest, Time: p.Until, Count: 1, Digest: &d, Link: n.Link("", nil), Detail: digestSummary(d)}
	return n.fanOut(ctx, fmt.Sprintf("digest-%d", p.Until.Unix()), msg)
}

func digestSummary(d Digest) string {
	var invited, accepted, givenUp, pending int
	for _, w := range d.Workspaces {
		invited, accepted, givenUp = invited+w.Invited, accepted+w.Accepted, givenUp+w.GivenUp
		for _, a := range w.Pending {
			pending += a.Count
		}
	}
	return fmt.Sprintf("%d invited, %d accepted, %d given up; %d pending", invited, accepted, givenUp, pending)
}

// FromAudit derives the event an audit record calls for, if any: routine
// records (signups, grants, invitations sent) call for none.
func FromAudit(rec ledger.AuditRecord) (Event, bool) {
	if rec.Outcome == ledger.OutcomeDryRun {
		return Event{}, false
	}
	var kind string
	switch rec.Action {
	case ledger.ActionInvitationExpired:
		kind = config.EventInvitationGivenUp
	case ledger.ActionRevocationHeld:
		kind = config.EventRevocationHeld
	default:
		return Event{}, false
	}
	detail := rec.Detail
	if rec.Group != "" {
		detail = strings.TrimSpace("group " + rec.Group + ": " + detail)
	}
	ev := Event{Event: kind, Time: rec.Time, Workspace: rec.Workspace, Detail: detail}
	if rec.PersonID != "" || rec.Email != "" {
		ev.Person = &Person{ID: rec.PersonID, Email: rec.Email, AccountID: AccountID(rec.PersonID)}
	}
	return ev, true
}

// AccountID is the Atlassian account id in a ledger person id ("" for Data
// Center people).
func AccountID(personID string) string {
	if id, ok := strings.CutPrefix(personID, "acct:"); ok {
		return id
	}
	return ""
}
