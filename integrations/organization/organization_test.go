package organization_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/integrations/atlassian"
	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/integrations/organization"
)

// Sixty emails go out as 25 + 25 + 10, each call with the group ids and a notification.
func TestInviteSendsAtMost25EmailsPerCall(t *testing.T) {
	f := fake.New()
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := organization.New(atlassian.Options{BaseURL: srv.URL, Auth: atlassian.Auth{Bearer: "key"}, Timeout: 5 * time.Second}, "org-9")
	var emails []string
	for i := 0; i < 60; i++ {
		emails = append(emails, fmt.Sprintf("p%02d@acme.com", i))
	}
	sent, err := c.Invite(context.Background(), emails, []string{"grp-1", "grp-2"})
	if err != nil || sent != 60 {
		t.Fatalf("Invite = %d, %v", sent, err)
	}
	var sizes []int
	var all []string
	for _, inv := range f.OrgInvites() {
		if inv.OrgID != "org-9" || !slices.Equal(inv.AdditionalGroups, []string{"grp-1", "grp-2"}) || !inv.SendNotification {
			t.Fatalf("call = %+v", inv)
		}
		sizes = append(sizes, len(inv.Emails))
		all = append(all, inv.Emails...)
	}
	slices.Sort(all)
	if !slices.Equal(sizes, []int{25, 25, 10}) || !slices.Equal(all, emails) {
		t.Fatalf("sizes %v, emails %v", sizes, all)
	}
}

// A refused call stops the batch and says how many went out before it.
func TestInviteReportsWhatWasSentBeforeAFailure(t *testing.T) {
	f := fake.New()
	f.InjectFault(fake.Fault{PathPrefix: "/admin/v2/orgs/", Status: 500, Times: 1, Rate: 0.5, Rand: sequence(0.9, 0)})
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := organization.New(atlassian.Options{BaseURL: srv.URL, Auth: atlassian.Auth{Bearer: "key"}, Timeout: 5 * time.Second}, "org-9")
	emails := make([]string, 30)
	for i := range emails {
		emails[i] = fmt.Sprintf("p%02d@acme.com", i)
	}
	sent, err := c.Invite(context.Background(), emails, []string{"grp-1"})
	if sent != 25 || atlassian.StatusOf(err) != 500 || !atlassian.IsTemporary(err) {
		t.Fatalf("Invite = %d, %v; want 25 sent, then a temporary 500", sent, err)
	}
}

// sequence returns the given values in turn: the fault skips the first call
// (0.9 >= rate) and hits the second.
func sequence(values ...float64) func() float64 {
	i := 0
	return func() float64 {
		v := values[min(i, len(values)-1)]
		i++
		return v
	}
}
