package jobs

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

// The payload is what json.Marshal writes, whatever the event.
func TestUserEventPayloadIsWhatEncodingJSONWrites(t *testing.T) {
	yes, no := true, false
	at := time.Date(2026, 11, 28, 3, 4, 5, 123456000, time.UTC)
	for _, e := range []UserEvent{
		{Event: EventUserCreated, DeliveryID: "d-1", RequestID: "0123456789abcdef", Timestamp: 1763800000000, ReceivedAt: at, ConfigHash: "2dd1e5ce594b0d52",
			User: User{AccountID: "557058:noah", AccountType: "atlassian", Email: "noah@acme.com", DisplayName: "Noah Berg", Active: &yes}},
		{Event: EventUserDeleted, DeliveryID: "derived-x", ReceivedAt: at.Truncate(time.Second), User: User{Name: "dave", Key: "JIRAUSER10100", Active: &no}},
		{Event: EventUserUpdated, DeliveryID: "d", ReceivedAt: at, User: User{Active: &yes}},
		{},
		{Event: EventUserCreated, DeliveryID: "d", ReceivedAt: at, User: User{DisplayName: "José <Ops> & \"Co\"", Email: "\tjo@acme.com"}},
		{Event: EventUserCreated, DeliveryID: "d", ReceivedAt: at.In(time.FixedZone("CET", 3600))},
		{Event: EventUserCreated, DeliveryID: "d", ReceivedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Event: EventUserCreated, DeliveryID: "d", ReceivedAt: at, Timestamp: -5, User: User{AccountID: "\xff\u2028"}},
	} {
		checkPayload(t, e)
	}
}

func FuzzUserEventPayload(f *testing.F) {
	f.Add("user_created", "d-1", "r", int64(1763800000000), int64(1764299045123456000), "557058:a", "atlassian", "", "", "a@acme.com", "A", byte(1), "h")
	f.Add("user_deleted", "", "", int64(0), int64(0), "", "", "dave", "JIRAUSER1", "", "<b>é</b>", byte(0), "")
	f.Fuzz(func(t *testing.T, event, delivery, request string, ts, received int64, account, accountType, name, key, email, display string, active byte, hash string) {
		e := UserEvent{Event: event, DeliveryID: delivery, RequestID: request, Timestamp: ts, ReceivedAt: time.Unix(0, received).UTC(), ConfigHash: hash,
			User: User{AccountID: account, AccountType: accountType, Name: name, Key: key, Email: email, DisplayName: display}}
		if active%3 != 2 {
			a := active%3 == 1
			e.User.Active = &a
		}
		checkPayload(t, e)
	})
}

func checkPayload(t *testing.T, e UserEvent) {
	t.Helper()
	want, wantErr := json.Marshal(e)
	got, err := marshalUserEvent(e)
	if string(got) != string(want) || (err == nil) != (wantErr == nil) {
		t.Fatalf("payload of %+v:\n got %s (%v)\nwant %s (%v)", e, got, err, want, wantErr)
	}
}

// The payload of the longest event (every key, the longest numbers and
// time) fits the room marshalUserEvent makes for it.
func TestPayloadFitsItsSize(t *testing.T) {
	no := false
	e := UserEvent{Event: "e", DeliveryID: "d", RequestID: "r", Timestamp: math.MinInt64, ConfigHash: "h",
		ReceivedAt: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		User:       User{AccountID: "a", AccountType: "t", Name: "n", Key: "k", Email: "e", DisplayName: "d", Active: &no}}
	got, err := marshalUserEvent(e)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) > payloadSize(e) {
		t.Fatalf("payload of %d bytes, room for %d: %s", len(got), payloadSize(e), got)
	}
}
