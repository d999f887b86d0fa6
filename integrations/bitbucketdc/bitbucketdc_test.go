package bitbucketdc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoinvite/autoinvite/integrations/atlassian"
	"github.com/autoinvite/autoinvite/integrations/bitbucketdc"
	"github.com/autoinvite/autoinvite/integrations/fake"
)

func client(t *testing.T, f *fake.Fake) *bitbucketdc.Client {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return bitbucketdc.New(atlassian.Options{BaseURL: srv.URL, Auth: atlassian.Auth{Bearer: "token"}, Timeout: 5 * time.Second})
}

// usersPerCall lists the users of each add-users call the fake received, in order.
func usersPerCall(t *testing.T, f *fake.Fake) []string {
	var out []string
	for _, c := range f.Calls() {
		var body struct {
			Users []string `json:"users"`
		}
		if err := json.Unmarshal([]byte(c.Body), &body); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %d", strings.Join(body.Users, ","), c.Status))
	}
	return out
}

// One unknown user among eight: the refused call is split in halves down to
// that user, and the other seven are added.
func TestAddUsersIsolatesMissingUsersByHalving(t *testing.T) {
	f := fake.New()
	f.AddDataCenterGroups("developers")
	f.AddDataCenterUsers("a", "b", "c", "d", "e", "g", "h")
	missing, err := client(t, f).AddUsers(context.Background(), "developers", []string{"a", "b", "c", "d", "e", "f", "g", "h"})
	if err != nil || !slices.Equal(missing, []string{"f"}) {
		t.Fatalf("missing = %v, %v; want [f]", missing, err)
	}
	want := []string{"a,b,c,d,e,f,g,h 404", "a,b,c,d 204", "e,f,g,h 404", "e,f 404", "e 204", "f 404", "g,h 204"}
	if got := usersPerCall(t, f); !slices.Equal(got, want) {
		t.Fatalf("calls:\n got  %q\n want %q", got, want)
	}
	if got := f.DataCenterGroupMembers("developers"); !slices.Equal(got, []string{"a", "b", "c", "d", "e", "g", "h"}) {
		t.Fatalf("members = %v", got)
	}
}

// More users than one call takes go out in calls of MaxUsersPerCall; an
// unknown group fails the whole batch with a clear error.
func TestAddUsersChunksAndReportsMissingGroup(t *testing.T) {
	f := fake.New()
	f.AddDataCenterGroups("developers")
	var users []string
	for i := 0; i < bitbucketdc.MaxUsersPerCall+7; i++ {
		users = append(users, fmt.Sprintf("u%03d", i))
	}
	f.AddDataCenterUsers(users...)
	c := client(t, f)
	if missing, err := c.AddUsers(context.Background(), "developers", users); err != nil || len(missing) != 0 {
		t.Fatalf("AddUsers = %v, %v", missing, err)
	}
	calls := usersPerCall(t, f)
	want := []string{strings.Join(users[:bitbucketdc.MaxUsersPerCall], ",") + " 204", strings.Join(users[bitbucketdc.MaxUsersPerCall:], ",") + " 204"}
	if !slices.Equal(calls, want) {
		t.Fatalf("calls:\n got  %q\n want %q", calls, want)
	}
	_, err := c.AddUsers(context.Background(), "nope", users[:1])
	if err == nil || !strings.Contains(err.Error(), `Data Center group "nope": the group does not exist`) || atlassian.StatusOf(err) != 404 {
		t.Fatalf("unknown group: %v", err)
	}
}
