// Package intake receives Jira user webhooks, verifies them and enqueues one
// task per delivery. It makes no Atlassian call: it answers within milliseconds
// and leaves the work to the worker.
package intake

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
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
	// Secret is the Jira webhook secret; when set, unsigned requests are refused.
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
	o Options
}

// New returns the webhook handler.
func New(o Options) (*Handler, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return &Handler{o: o}, nil
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
		EmailAddress *string     `json:"emailAddress"`
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

// requestLog collects what one request's log line says.
type requestLog struct {
	event, deliveryID, person, taskID string
	cause                             error
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.o.Now()
	requestID := requestIDOf(r)
	w.Header().Set(HeaderRequestID, requestID)
	var rl requestLog
	status, resp := h.handle(r, requestID, &rl)
	resp.RequestID = requestID
	if status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodPost)
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "30")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(resp)

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

// handle does the work and fills rl with the request's identifiers.
func (h *Handler) handle(r *http.Request, requestID string, rl *requestLog) (int, response) {
	if r.Method != http.MethodPost {
		return http.StatusMethodNotAllowed, response{Error: "use POST"}
	}
	if r.ContentLength > h.o.MaxBodyBytes {
		return http.StatusRequestEntityTooLarge, response{Error: fmt.Sprintf("body larger than %d bytes", h.o.MaxBodyBytes)}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.o.MaxBodyBytes+1))
	if err != nil {
		return http.StatusBadRequest, response{Error: "could not read body"}
	}
	if int64(len(body)) > h.o.MaxBodyBytes {
		return http.StatusRequestEntityTooLarge, response{Error: fmt.Sprintf("body larger than %d bytes", h.o.MaxBodyBytes)}
	}
	if len(h.o.Secret) > 0 {
		if err := VerifySignature(h.o.Secret, body, r.Header.Get(HeaderSignature)); err != nil {
			return http.StatusUnauthorized, response{Error: err.Error()}
		}
	}
	ev, err := Decode(body)
	rl.event = ev.Event
	if err != nil {
		return http.StatusBadRequest, response{Error: err.Error()}
	}
	if !jobs.KnownEvent(ev.Event) {
		return http.StatusAccepted, response{Status: OutcomeIgnored}
	}
	if ev.User.PersonID() == "" {
		return http.StatusBadRequest, response{Error: "user has neither accountId (Cloud) nor name/key (Data Center)"}
	}
	deliveryID := r.Header.Get(HeaderDeliveryID)
	if deliveryID == "" || len(deliveryID) > 128 {
		deliveryID = DerivedDeliveryID(ev.Event, ev.User.PersonID(), ev.Timestamp)
	}
	rl.deliveryID, rl.person = deliveryID, ev.User.PersonID()
	ev.DeliveryID, ev.RequestID, ev.ReceivedAt, ev.ConfigHash = deliveryID, requestID, h.o.Now().UTC(), h.o.ConfigHash()
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

// ErrNoUser is returned for a known event without a user.
var ErrNoUser = errors.New("payload has no user")

// Decode parses a Jira user webhook body. Unknown events decode without a
// user; a known event without one is an error.
func Decode(body []byte) (jobs.UserEvent, error) {
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
	if wb.User.Active != nil {
		active := bool(*wb.User.Active)
		ev.User.Active = &active
	}
	if wb.User.EmailAddress != nil {
		ev.User.Email = strings.TrimSpace(*wb.User.EmailAddress)
	}
	return ev, nil
}

// ErrSignature is returned for a missing or wrong signature.
var ErrSignature = errors.New("missing or invalid X-Hub-Signature")

// VerifySignature checks "sha256=<hex HMAC-SHA256(body, secret)>" in constant time.
func VerifySignature(secret, body []byte, header string) error {
	hexSig, ok := strings.CutPrefix(strings.TrimSpace(header), "sha256=")
	if !ok {
		return ErrSignature
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return ErrSignature
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return ErrSignature
	}
	return nil
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
