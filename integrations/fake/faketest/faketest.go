// Package faketest starts the fake Atlassian for a test, validating every
// Bitbucket 2.0 and Jira request against the official specs when they are there.
package faketest

import (
	"net/http/httptest"
	"os"
	"testing"

	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/integrations/fake/contract"
)

// Server is a running fake with its URL.
type Server struct {
	*fake.Fake
	URL string
}

// Start serves a fake for the test. At cleanup it fails the test if any request
// broke the contract. On CI (CI=true) missing specs are an error.
func Start(t testing.TB, opts ...fake.Option) *Server {
	t.Helper()
	if dir := contract.FindDir(); dir != "" {
		v, err := contract.Load(dir)
		if err != nil {
			t.Fatalf("load contracts: %v", err)
		}
		opts = append(opts, fake.WithValidator(v.Validate))
	} else if os.Getenv("CI") == "true" {
		t.Fatal("shared/contracts not found beside the repository: requests cannot be validated")
	}
	f := fake.New(opts...)
	srv := httptest.NewServer(f)
	t.Cleanup(func() {
		srv.Close()
		if v := f.Violations(); len(v) > 0 {
			t.Errorf("requests that break the official API contract:\n%v", v)
		}
	})
	return &Server{Fake: f, URL: srv.URL}
}
