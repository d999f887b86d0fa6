package reconcile

import (
	"bytes"
	"testing"

	"github.com/autoinvite/autoinvite/ledger"
)

func kinds(rows []Row) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.Group+":"+r.Kind+":"+r.Action)
	}
	return out
}

func TestCompare(t *testing.T) {
	listed := map[string]bool{"dev": true, "read": true}
	granted := &ledger.Entry{Status: ledger.StatusGranted, Granted: []string{"dev", "read"}}
	invited := &ledger.Entry{Status: ledger.StatusInvited, Waiting: []string{"read"}, Invitations: []ledger.Invitation{{Group: "dev", State: ledger.InvitationPending}}}
	for _, c := range []struct {
		name string
		in   Person
		want []string
	}{
		{"missed signup", Person{Active: true, Decided: true, Desired: []string{"dev"}, Listed: listed}, []string{"dev:missing:grant"}},
		{"in sync", Person{Active: true, Decided: true, Desired: []string{"dev", "read"}, Actual: listed, Listed: listed, Entry: granted}, nil},
		{"invitation on its way", Person{Active: true, Decided: true, Desired: []string{"dev", "read"}, Listed: listed, Entry: invited}, nil},
		{"group joined", Person{Active: true, Decided: true, Desired: []string{"dev", "read", "ops"}, Actual: listed, Listed: listed, Entry: granted}, []string{"ops:missing:grant"}},
		{"hand removal", Person{Active: true, Decided: true, Desired: []string{"dev", "read"}, Actual: map[string]bool{"read": true}, Listed: listed, Entry: granted}, []string{"dev:removed-by-hand:report"}},
		{"hand removal, regrant", Person{Active: true, Decided: true, Desired: []string{"dev", "read"}, Actual: map[string]bool{"read": true}, Listed: listed, Entry: granted, Regrant: true}, []string{"dev:removed-by-hand:regrant"}},
		{"rule dropped", Person{Active: true, Decided: true, Desired: []string{"read"}, Actual: listed, Listed: listed, Entry: granted}, []string{"dev:no-longer-covered:report"}},
		{"deactivated", Person{Entry: granted}, []string{"dev:deactivated:revoke", "read:deactivated:revoke"}},
		{"deactivated, invited", Person{Entry: invited}, []string{"dev:deactivated:revoke"}},
		{"deactivated, held", Person{Entry: &ledger.Entry{Status: ledger.StatusRevocationHeld, HeldRemovals: []string{"dev"}}}, []string{"dev:held:report"}},
		{"deactivated, revoked", Person{Entry: &ledger.Entry{Status: ledger.StatusRevoked}}, nil},
		{"hidden email, no entry", Person{Active: true, Desired: []string{"read"}}, []string{":missing:grant"}},
		{"waiting for email", Person{Active: true, Decided: true, Desired: []string{"read"}, Listed: listed, Entry: &ledger.Entry{Status: ledger.StatusWaitingForEmail, Waiting: []string{"read"}}}, nil},
		{"given up", Person{Active: true, Decided: true, Desired: []string{"read"}, Listed: listed, Entry: &ledger.Entry{Status: ledger.StatusExpired}}, []string{"read:held:report"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := kinds(Compare(c.in))
			if len(got) != len(c.want) {
				t.Fatalf("got %q, want %q", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Fatalf("got %q, want %q", got, c.want)
				}
			}
		})
	}
}

func TestWriteTableSorted(t *testing.T) {
	rows := []Row{
		{Person: "b@x.org", Workspace: "acme", Group: "dev", Action: ActGrant, Outcome: "granted", Why: "w"},
		{Person: "a@x.org", Workspace: "acme", Action: ActReport, Why: "v"},
	}
	Sort(rows)
	var b bytes.Buffer
	WriteTable(&b, rows)
	want := "PERSON   WORKSPACE  GROUP  ACTION   WHY\na@x.org  acme       -      report   v\nb@x.org  acme       dev    granted  w\n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}
