// Package intake receives Jira user webhooks, verifies them and enqueues one
// task per delivery. It makes no Atlassian call: it answers within milliseconds
// and leaves the work to the worker.
package intake

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/jobs"
)

// Enqueuer is what the intake needs from the queue.
type Enqueuer interface {
	EnqueueUserEvent(ctx context.Context, e jobs.UserEvent) (taskID string, duplicate bool, err error)
}

// Options configures the webhook handler.
type Options struct {
	// Secret is the Jira webhook secret, or several, one per line (during a
	// rotation: a delivery signed with any of them is accepted); when set,
	// unsigned requests are refused.
	Secret       []byte
	MaxBodyBytes int64
	Enqueuer     Enqueuer
	Logger       zerolog.Logger
	Now          func() time.Time
	// EnqueueTimeout bounds the wait on Redis before answering 503.
	EnqueueTimeout time.Duration
	// ConfigHash returns the hash of the config in force, stamped on each task.
	ConfigHash func() string
	// Observe is told the event, outcome and duration of every request (metrics).
	Observe func(event, outcome string, took time.Duration)
}

// Validate checks the options and fills in defaults.
func (o *Options) Validate() error {
	if o.Enqueuer == nil {
		return errors.New("intake options: Enqueuer is required")
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.EnqueueTimeout <= 0 {
		o.EnqueueTimeout = 3 * time.Second
	}
	if o.ConfigHash == nil {
		o.ConfigHash = func() string { return "" }
	}
	if o.Observe == nil {
		o.Observe = func(string, string, time.Duration) {}
	}
	return nil
}

// Handler serves POST /webhooks/jira.
type Handler struct {
	o    Options
	keys atomic.Pointer[[]*secretKey] // the secrets in force (SetSecret)
}

// secretKey is one webhook secret. Its pool keeps HMAC states keyed with it:
// keying one costs two SHA-256 blocks and five allocations, and a keyed
// state resets to its key.
type secretKey struct{ macs sync.Pool }

// SetSecret replaces the webhook secrets (Options.Secret), for requests that
// arrive from now on: a rotation without a restart. Empty turns verification
// off.
func (h *Handler) SetSecret(secret []byte) {
	var keys []*secretKey
	for _, s := range Secrets(secret) {
		k := &secretKey{}
		k.macs.New = func() any { return &keyedMAC{mac: hmac.New(sha256.New, s)} }
		keys = append(keys, k)
	}
	h.keys.Store(&keys)
}

// Secrets are the webhook secrets a secret setting holds: one per non-empty
// line, trimmed.
func Secrets(secret []byte) [][]byte {
	var out [][]byte
	for line := range bytes.Lines(secret) {
		if line = bytes.TrimSpace(line); len(line) > 0 {
			out = append(out, bytes.Clone(line))
		}
	}
	return out
}

// keyedMAC is a pooled HMAC state with room for its sum (a local array
// handed to hash.Hash.Sum would escape: one allocation per request).
type keyedMAC struct {
	mac hash.Hash
	sum [sha256.Size]byte
}

// New returns the webhook handler.
func New(o Options) (*Handler, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	h := &Handler{o: o}
	h.SetSecret(o.Secret)
	return h, nil
}

// bodies are request body buffers: a body is not needed once verified and
// decoded (the event holds copies of its strings).
var bodies = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// maxPooledBody: larger buffers are left to the garbage collector.
const maxPooledBody = 64 << 10

// readBody reads r into buf, up to limit bytes (more means too large: the
// caller compares the length with its maximum).
func readBody(r io.Reader, buf []byte, limit int64) ([]byte, error) {
	for int64(len(buf)) < limit {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		end := int64(cap(buf))
		if end > limit {
			end = limit
		}
		n, err := r.Read(buf[len(buf):end])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// Headers Jira sends.
const (
	HeaderSignature  = "X-Hub-Signature"
	HeaderDeliveryID = "X-Atlassian-Webhook-Identifier"
	HeaderRetry      = "X-Atlassian-Webhook-Retry"
	HeaderRequestID  = "X-Request-Id"
)

// Outcomes, as answered in the JSON body and logged.
const (
	OutcomeAccepted  = "accepted"
	OutcomeDuplicate = "duplicate"
	OutcomeIgnored   = "ignored"
)

// outcomeOfStatus names a refusal for metrics.
func outcomeOfStatus(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "refused_signature"
	case http.StatusBadRequest:
		return "refused_payload"
	case http.StatusRequestEntityTooLarge:
		return "refused_size"
	case http.StatusMethodNotAllowed:
		return "refused_method"
	case http.StatusServiceUnavailable:
		return "unavailable"
	}
	return "refused"
}

type webhookBody struct {
	Timestamp    int64  `json:"timestamp"`
	WebhookEvent string `json:"webhookEvent"`
	User         *struct {
		AccountID    string      `json:"accountId"`
		AccountType  string      `json:"accountType"`
		Name         string      `json:"name"`
		Key          string      `json:"key"`
		EmailAddress string      `json:"emailAddress"` // null or absent: hidden, ""
		DisplayName  string      `json:"displayName"`
		Active       *activeFlag `json:"active"`
	} `json:"user"`
}

// activeFlag is user.active: a JSON boolean in real deliveries, but the string
// "true"/"false" in Atlassian's documented sample payload, so both are
// accepted (a 400 would lose the signup: Jira does not retry 4xx). Anything
// else is malformed.
type activeFlag bool

func (a *activeFlag) UnmarshalJSON(b []byte) error {
	switch string(b) { // the usual case, without allocating
	case "true":
		*a = true
		return nil
	case "false":
		*a = false
		return nil
	}
	var v string
	if json.Unmarshal(b, &v) == nil {
		switch {
		case strings.EqualFold(v, "true"):
			*a = true
			return nil
		case strings.EqualFold(v, "false"):
			*a = false
			return nil
		}
	}
	// The value is not echoed: the answer must not repeat arbitrary payload.
	return errors.New("user.active must be true or false (a boolean, or the string \"true\" or \"false\")")
}

type response struct {
	Status    string `json:"status,omitempty"`
	Error     string `json:"error,omitempty"`
	TaskID    string `json:"task_id,omitempty"`
	RequestID string `json:"request_id"`
}

// appendJSON appends the answer as json.Encoder writes it (with its newline).
// Strings that need no escaping, the usual case, are copied; any other
// answer goes through encoding/json.
func (r response) appendJSON(b []byte) []byte {
	if !jobs.PlainJSON(r.Status) || !jobs.PlainJSON(r.Error) || !jobs.PlainJSON(r.TaskID) || !jobs.PlainJSON(r.RequestID) {
		j, _ := json.Marshal(r)
		return append(append(b, j...), '\n')
	}
	b = append(b, '{')
	for _, f := range [...]struct{ key, value string }{{`"status":"`, r.Status}, {`"error":"`, r.Error}, {`"task_id":"`, r.TaskID}} {
		if f.value != "" {
			b = append(append(append(b, f.key...), f.value...), '"', ',')
		}
	}
	return append(append(append(b, `"request_id":"`...), r.RequestID...), "\"}\n"...)
}

// requestLog collects what one request's log line says.
type requestLog struct {
	event, deliveryID, person, taskID string
	cause                             error
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.o.Now()
	requestID := requestIDOf(r)
	header := w.Header()
	header[HeaderRequestID] = []string{requestID} // the names are canonical: no Set needed
	var rl requestLog
	status, resp := h.handle(r, start, requestID, &rl)
	resp.RequestID = requestID
	if status == http.StatusMethodNotAllowed {
		header.Set("Allow", http.MethodPost)
	}
	if status == http.StatusServiceUnavailable {
		header.Set("Retry-After", "30")
	}
	header["Content-Type"] = []string{"application/json"}
	w.WriteHeader(status)
	w.Write(resp.appendJSON(make([]byte, 0, 128)))

	took := h.o.Now().Sub(start)
	outcome, event := resp.Status, rl.event
	if status >= 400 {
		outcome = outcomeOfStatus(status)
	}
	if !jobs.KnownEvent(event) {
		event = "other" // bounded label values
	}
	h.o.Observe(event, outcome, took)
	ev := h.o.Logger.Info()
	if status >= 400 {
		ev = h.o.Logger.Warn().Str("error", resp.Error).AnErr("cause", rl.cause)
	}
	if retry := r.Header.Get(HeaderRetry); retry != "" {
		ev.Str("jira_retry", retry)
	}
	ev.Str("request_id", requestID).Str("method", r.Method).Str("remote", r.RemoteAddr).
		Str("event", rl.event).Str("delivery_id", rl.deliveryID).Str("person", rl.person).Str("task_id", rl.taskID).
		Int("status", status).Str("outcome", outcome).Dur("duration_ms", took).Msg("jira webhook")
}

// handle does the work and fills rl with the request's identifiers; the
// request arrived at received.
func (h *Handler) handle(r *http.Request, received time.Time, requestID string, rl *requestLog) (int, response) {
	if r.Method != http.MethodPost {
		return http.StatusMethodNotAllowed, response{Error: "use POST"}
	}
	ev, status, resp := h.read(r)
	rl.event = ev.Event
	if status != 0 {
		return status, resp
	}
	if !jobs.KnownEvent(ev.Event) {
		return http.StatusAccepted, response{Status: OutcomeIgnored}
	}
	person := ev.User.PersonID()
	if person == "" {
		return http.StatusBadRequest, response{Error: "user has neither accountId (Cloud) nor name/key (Data Center)"}
	}
	deliveryID := r.Header.Get(HeaderDeliveryID)
	if deliveryID == "" || len(deliveryID) > 128 {
		deliveryID = DerivedDeliveryID(ev.Event, person, ev.Timestamp)
	}
	rl.deliveryID, rl.person = deliveryID, person
	ev.DeliveryID, ev.RequestID, ev.ReceivedAt, ev.ConfigHash = deliveryID, requestID, received.UTC(), h.o.ConfigHash()
	ctx, cancel := context.WithTimeout(r.Context(), h.o.EnqueueTimeout)
	defer cancel()
	taskID, dup, err := h.o.Enqueuer.EnqueueUserEvent(ctx, ev)
	if err != nil {
		rl.cause = err
		return http.StatusServiceUnavailable, response{Error: "queue unavailable; retry later"}
	}
	rl.taskID = taskID
	if dup {
		return http.StatusAccepted, response{Status: OutcomeDuplicate, TaskID: taskID}
	}
	return http.StatusAccepted, response{Status: OutcomeAccepted, TaskID: taskID}
}

// read reads, verifies and decodes the body; status is 0 when all went well.
func (h *Handler) read(r *http.Request) (ev jobs.UserEvent, status int, resp response) {
	if r.ContentLength > h.o.MaxBodyBytes {
		return ev, http.StatusRequestEntityTooLarge, h.tooLarge()
	}
	buf := bodies.Get().(*[]byte)
	body, err := readBody(r.Body, (*buf)[:0], h.o.MaxBodyBytes+1)
	defer func() {
		if cap(body) <= maxPooledBody {
			*buf = body[:0]
			bodies.Put(buf)
		}
	}()
	if err != nil {
		return ev, http.StatusBadRequest, response{Error: "could not read body"}
	}
	if int64(len(body)) > h.o.MaxBodyBytes {
		return ev, http.StatusRequestEntityTooLarge, h.tooLarge()
	}
	if keys := *h.keys.Load(); len(keys) > 0 {
		err, signature := ErrSignature, r.Header.Get(HeaderSignature)
		for _, key := range keys {
			k := key.macs.Get().(*keyedMAC)
			err = checkMAC(k.mac, body, signature, k.sum[:0])
			key.macs.Put(k)
			if err == nil {
				break
			}
		}
		if err != nil {
			return ev, http.StatusUnauthorized, response{Error: err.Error()}
		}
	}
	ev, err = Decode(body)
	if err != nil {
		return ev, http.StatusBadRequest, response{Error: err.Error()}
	}
	return ev, 0, response{}
}

func (h *Handler) tooLarge() response {
	return response{Error: fmt.Sprintf("body larger than %d bytes", h.o.MaxBodyBytes)}
}

// ErrNoUser is returned for a known event without a user.
var ErrNoUser = errors.New("payload has no user")

// Decode parses a Jira user webhook body. Unknown events decode without a
// user; a known event without one is an error. The usual body is read
// without reflection (decodeFast), any other by encoding/json: the result,
// errors included, is encoding/json's either way.
func Decode(body []byte) (jobs.UserEvent, error) {
	wb, ok := decodeFast(body)
	if !ok {
		return decodeJSON(body)
	}
	ev := jobs.UserEvent{Timestamp: wb.timestamp}
	// One copy of the body's part that holds the strings (the body is a
	// pooled buffer), which they then share.
	lo, hi := len(body), 0
	for _, sp := range wb.user {
		if sp.start >= 0 {
			lo, hi = min(lo, sp.start), max(hi, sp.end)
		}
	}
	if sp := wb.event; sp.start >= 0 {
		lo, hi = min(lo, sp.start), max(hi, sp.end)
	}
	var held string
	if lo < hi {
		held = string(body[lo:hi])
	}
	str := func(sp span) string {
		if sp.start < 0 {
			return ""
		}
		return held[sp.start-lo : sp.end-lo]
	}
	ev.Event = str(wb.event)
	if !jobs.KnownEvent(ev.Event) {
		return ev, nil
	}
	if !wb.hasUser {
		return ev, ErrNoUser
	}
	ev.User = jobs.User{
		AccountID: str(wb.user[fAccountID]), AccountType: str(wb.user[fAccountType]), Name: str(wb.user[fName]),
		Key: str(wb.user[fKey]), DisplayName: str(wb.user[fDisplayName]), Active: wb.active,
		Email: strings.TrimSpace(str(wb.user[fEmail])),
	}
	return ev, nil
}

// decodeJSON is Decode with encoding/json.
func decodeJSON(body []byte) (jobs.UserEvent, error) {
	var wb webhookBody
	if err := json.Unmarshal(body, &wb); err != nil {
		return jobs.UserEvent{}, fmt.Errorf("malformed JSON: %w", err)
	}
	ev := jobs.UserEvent{Event: wb.WebhookEvent, Timestamp: wb.Timestamp}
	if !jobs.KnownEvent(wb.WebhookEvent) {
		return ev, nil
	}
	if wb.User == nil {
		return ev, ErrNoUser
	}
	ev.User = jobs.User{
		AccountID: wb.User.AccountID, AccountType: wb.User.AccountType, Name: wb.User.Name, Key: wb.User.Key,
		DisplayName: wb.User.DisplayName,
	}
	ev.User.Active = (*bool)(wb.User.Active) // decoded for this event alone
	ev.User.Email = strings.TrimSpace(wb.User.EmailAddress)
	return ev, nil
}

// ErrSignature is returned for a missing or wrong signature.
var ErrSignature = errors.New("missing or invalid X-Hub-Signature")

// VerifySignature checks "sha256=<hex HMAC-SHA256(body, secret)>" in constant time.
func VerifySignature(secret, body []byte, header string) error {
	return checkMAC(hmac.New(sha256.New, secret), body, header, nil)
}

// checkMAC is VerifySignature with an HMAC-SHA256 state keyed with the
// secret, in any state: it is reset first. The sum is appended to scratch.
func checkMAC(mac hash.Hash, body []byte, header string, scratch []byte) error {
	hexSig, ok := strings.CutPrefix(strings.TrimSpace(header), "sha256=")
	var got [sha256.Size]byte
	if !ok || len(hexSig) != 2*len(got) { // any other length cannot match
		return ErrSignature
	}
	for i := range got {
		hi, okHi := unhex(hexSig[2*i])
		lo, okLo := unhex(hexSig[2*i+1])
		if !okHi || !okLo {
			return ErrSignature
		}
		got[i] = hi<<4 | lo
	}
	mac.Reset()
	mac.Write(body)
	if !hmac.Equal(got[:], mac.Sum(scratch)) {
		return ErrSignature
	}
	return nil
}

// unhex is one hexadecimal digit's value, in either case, as hex.Decode reads it.
func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Sign returns the X-Hub-Signature value for body (for tests and clients).
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// DerivedDeliveryID is the idempotency key when Jira sends no identifier (Data
// Center): the same event about the same user at the same instant is one delivery.
func DerivedDeliveryID(event, personID string, timestamp int64) string {
	sum := sha256.Sum256([]byte(event + "\x00" + personID + "\x00" + strconv.FormatInt(timestamp, 10)))
	return "derived-" + hex.EncodeToString(sum[:16])
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func requestIDOf(r *http.Request) string {
	if id := r.Header.Get(HeaderRequestID); requestIDPattern.MatchString(id) {
		return id
	}
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
