package jobs

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
)

// marshalUserEvent is json.Marshal(e), byte for byte, without reflection in
// the usual case (the intake's): strings that need no escaping and a UTC
// arrival time. Anything else goes through encoding/json.
func marshalUserEvent(e UserEvent) ([]byte, error) {
	u := e.User
	y := e.ReceivedAt.Year()
	if e.ReceivedAt.Location() != time.UTC || y < 0 || y > 9999 ||
		!PlainJSON(e.Event) || !PlainJSON(e.DeliveryID) || !PlainJSON(e.RequestID) || !PlainJSON(e.ConfigHash) ||
		!PlainJSON(u.AccountID) || !PlainJSON(u.AccountType) || !PlainJSON(u.Name) || !PlainJSON(u.Key) ||
		!PlainJSON(u.Email) || !PlainJSON(u.DisplayName) {
		return json.Marshal(e)
	}
	b := make([]byte, 0, payloadSize(e))
	b = append(append(append(b, `{"event":"`...), e.Event...), `","delivery_id":"`...)
	b = append(append(b, e.DeliveryID...), '"')
	if e.RequestID != "" {
		b = append(append(append(b, `,"request_id":"`...), e.RequestID...), '"')
	}
	if e.Timestamp != 0 {
		b = strconv.AppendInt(append(b, `,"timestamp":`...), e.Timestamp, 10)
	}
	b = append(e.ReceivedAt.AppendFormat(append(b, `,"received_at":"`...), time.RFC3339Nano), `","user":{`...)
	n := len(b)
	for _, f := range [...]struct{ key, value string }{{"account_id", u.AccountID}, {"account_type", u.AccountType},
		{"name", u.Name}, {"key", u.Key}, {"email", u.Email}, {"display_name", u.DisplayName}} {
		if f.value != "" {
			if len(b) > n {
				b = append(b, ',')
			}
			b = append(append(append(append(append(b, '"'), f.key...), `":"`...), f.value...), '"')
		}
	}
	if u.Active != nil {
		if len(b) > n {
			b = append(b, ',')
		}
		b = strconv.AppendBool(append(b, `"active":`...), *u.Active)
	}
	b = append(b, '}')
	if e.ConfigHash != "" {
		b = append(append(append(b, `,"config_hash":"`...), e.ConfigHash...), '"')
	}
	return append(b, '}'), nil
}

// payloadSize is room for marshalUserEvent's payload, every key and value
// included (one allocation, no growth; TestPayloadFitsItsSize).
func payloadSize(e UserEvent) int {
	u := e.User
	return 320 + len(e.Event) + len(e.DeliveryID) + len(e.RequestID) + len(e.ConfigHash) +
		len(u.AccountID) + len(u.AccountType) + len(u.Name) + len(u.Key) + len(u.Email) + len(u.DisplayName)
}

// PlainJSON reports whether encoding/json writes s as is between quotes:
// printable ASCII other than the quote, the backslash and the characters it
// escapes for HTML (<, >, &).
func PlainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// userEventOptions are the options every user event is queued with, but its task id.
func userEventOptions(o EnqueueOptions) []asynq.Option {
	return []asynq.Option{asynq.Queue(o.Queue), asynq.MaxRetry(o.MaxRetry), asynq.Timeout(o.Timeout), asynq.Retention(o.Retention)}
}
