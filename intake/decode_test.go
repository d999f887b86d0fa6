package intake

import (
	"reflect"
	"strings"
	"testing"
)

// decodeCases: bodies and whether decodeFast takes them (the others go to
// encoding/json). Either way Decode must give encoding/json's result.
var decodeCases = []struct {
	body string
	fast bool
}{
	{`{"timestamp":1763800000000,"webhookEvent":"user_created","user":{"accountId":"557058:a","accountType":"atlassian","emailAddress":"a@acme.com","active":true}}`, true},
	{` { "timestamp" : -0 , "webhookEvent" : "user_updated" , "user" : { "name" : "dave" , "key" : "JIRAUSER1" , "emailAddress" : null , "active" : false } } ` + "\n\t\r", true},
	// A real delivery: self, avatarUrls, timeZone… are checked and skipped.
	{`{"timestamp":1,"webhookEvent":"user_created","user":{"self":"https://acme.atlassian.net/rest/api/2/user?accountId=557058:a","accountId":"557058:a",` +
		`"avatarUrls":{"48x48":"https://x/a.png","24x24":"https://x/b.png"},"displayName":"Zoë Ågren","active":true,"timeZone":"Europe/Oslo","locale":"nb_NO",` +
		`"groups":{"size":2,"items":[]},"applicationRoles":{"size":1,"items":[{"key":"jira-software","name":"Jira \"Software\"\u00e9"}]},"x":[1,-2.5e+3,0.1,true,false,null,[],{}]}}`, true},
	{`{"webhookEvent":"user_deleted","user":{}}`, true},
	{`{"webhookEvent":"user_created"}`, true},
	{`{"webhookEvent":"user_created","user":null}`, true},
	{`{"webhookEvent":"jira:issue_created","issue":{"fields":{"summary":"x"}}}`, true},
	{`{}`, true},
	{`{"timestamp":null,"webhookEvent":null,"user":{"accountId":null,"active":null}}`, true},
	{`{"webhookEvent":"user_created","user":{"accountId":"a","emailAddress":"  a@b.c  "}}`, true},
	{`{"webhookEvent":"user_created","user":{"accountId":"a","displayName":"日本語 ✓"}}`, true},

	// encoding/json's: escapes in wanted strings, invalid UTF-8, duplicate or
	// case-folded keys, strings for active, other numbers, malformed documents.
	{`{"webhookEvent":"user_created","user":{"accountId":"a","displayName":"N\u00f6ah"}}`, false},
	{`{"webhookEvent":"user_created","user":{"accountId":"a\/b"}}`, false},
	{"{\"webhookEvent\":\"user_created\",\"user\":{\"accountId\":\"a\",\"displayName\":\"\xff\xfe\"}}", false},
	{`{"webhookEvent":"user_created","user":{"accountId":"a"},"user":{"name":"b"}}`, false},
	{`{"webhookEvent":"user_created","user":{"accountId":"a","accountId":"b"}}`, false},
	{`{"webhookEvent":"user_created","webhookEvent":"user_deleted","user":{"accountId":"a"}}`, false},
	{`{"WebhookEvent":"user_created","user":{"accountId":"a"}}`, false},
	{`{"webhookEvent":"user_created","USER":{"accountId":"a"}}`, false},
	{`{"webhookEvent":"user_created","user":{"ACCOUNTID":"a"}}`, false},
	{`{"webhookEvent":"user_created","user":{"accountId":"a","Active":false}}`, false},
	{"{\"webhoo\u212aEvent\":\"user_created\",\"user\":{\"accountId\":\"a\"}}", false}, // Kelvin sign folds to k
	{`{"webhook\u0045vent":"user_created","user":{"accountId":"a"}}`, false},
	{`{"webhookEvent":"user_created","user":{"accountId":"a","active":"false"}}`, false},
	{`{"webhookEvent":"user_created","user":{"accountId":"a","active":1}}`, false},
	{`{"timestamp":1.0,"webhookEvent":"user_created"}`, false},
	{`{"timestamp":1e3,"webhookEvent":"user_created"}`, false},
	{`{"timestamp":99999999999999999999,"webhookEvent":"user_created"}`, false},
	{`{"timestamp":"1","webhookEvent":"user_created"}`, false},
	{`{"timestamp":01,"webhookEvent":"user_created"}`, false},
	{`{"webhookEvent":5}`, false},
	{`{"webhookEvent":"user_created","user":"noah"}`, false},
	{`{"webhookEvent":"user_created","user":{"accountId":5}}`, false},
	{`{"webhookEvent":"user_created","user":{"accountId":"a"}} x`, false},
	{`{"webhookEvent":"user_created","user":{"accountId":"a"},}`, false},
	{`{"webhookEvent":"user_created","user":{"accountId":"a"}`, false},
	{`{"webhookEvent":"user_created","x":[1,]}`, false},
	{`{"webhookEvent":"user_created","x":"\q"}`, false},
	{`{"webhookEvent":"user_created","x":"\u12"}`, false},
	{"{\"webhookEvent\":\"user_created\",\"x\":\"a\nb\"}", false},
	{"{\"webhookEvent\":\"user_created\",\"user\":{\"accountId\":\"a\",\"emailAddress\":\"a@b.c\t\"}}", false},
	{`{"webhookEvent":"user_created","x":tru}`, false},
	{`{"webhookEvent":"user_created","x":-}`, false},
	{`{"webhookEvent":"user_created","x":1.}`, false},
	{`{"webhookEvent":"user_created","x":1e}`, false},
	{`{"webhookEvent":"user_created","x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, false},
	{"\xef\xbb\xbf{}", false},
	{`[]`, false},
	{`null`, false},
	{``, false},
	{`{"webhookEvent":`, false},
}

func TestDecodeIsEncodingJSON(t *testing.T) {
	for _, tc := range decodeCases {
		if _, fast := decodeFast([]byte(tc.body)); fast != tc.fast {
			t.Errorf("decodeFast(%s) took it: %v, want %v", tc.body, fast, tc.fast)
		}
		checkDecodeIsEncodingJSON(t, []byte(tc.body))
	}
}

func FuzzDecodeIsEncodingJSON(f *testing.F) {
	for _, tc := range decodeCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(checkDecodeIsEncodingJSON)
}

func checkDecodeIsEncodingJSON(t *testing.T, body []byte) {
	got, gotErr := Decode(body)
	want, wantErr := decodeJSON(body)
	if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() || !reflect.DeepEqual(got, want) {
		t.Fatalf("Decode(%q):\n got %+v, %v\nwant %+v, %v", body, got, gotErr, want, wantErr)
	}
}

// The decoded strings do not share the (pooled, reused) body.
func TestDecodeCopiesStrings(t *testing.T) {
	body := []byte(decodeCases[0].body)
	ev, err := Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	for i := range body {
		body[i] = 'x'
	}
	if ev.Event != "user_created" || ev.User.AccountID != "557058:a" || ev.User.Email != "a@acme.com" {
		t.Fatalf("decoded event changed with the body: %+v", ev)
	}
}

func BenchmarkDecode(b *testing.B) {
	body := []byte(`{"timestamp":1763800000000,"webhookEvent":"user_created","user":{"accountId":"557058:1c2d3e4f-noah","accountType":"atlassian","emailAddress":"noah@acme.com","displayName":"Noah Berg","active":true}}`)
	for _, d := range []struct {
		name string
		fn   func([]byte) error
	}{{"fast", func(b []byte) error { _, err := Decode(b); return err }}, {"encoding-json", func(b []byte) error { _, err := decodeJSON(b); return err }}} {
		b.Run(d.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := d.fn(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
