// Package faketest starts the fake Atlassian for a test, validating every
// Bitbucket 2.0, Jira and Admin API request against the official specs when
// they are there, and the fake's Admin API answers too.
package faketest

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/autoinvite/autoinvite/integrations/fake"
	"github.com/autoinvite/autoinvite/integrations/fake/contract"
)

// Server is a running fake with its URL.
type Server struct {
	*fake.Fake
	URL string

	mu        sync.Mutex
	responses []string // Admin API answers that break the contract
}

// ResponseViolations returns the fake's Admin API answers that broke the contract.
func (s *Server) ResponseViolations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.responses...)
}

// Start serves a fake for the test. At cleanup it fails the test if any request
// or Admin API answer broke the contract. On CI (CI=true) missing specs are an error.
func Start(t testing.TB, opts ...fake.Option) *Server {
	t.Helper()
	var v *contract.Validator
	if dir := contract.FindDir(); dir != "" {
		var err error
		if v, err = contract.Load(dir); err != nil {
			t.Fatalf("load contracts: %v", err)
		}
		opts = append(opts, fake.WithValidator(v.Validate))
	} else if os.Getenv("CI") == "true" {
		t.Fatal("shared/contracts not found beside the repository: requests cannot be validated")
	}
	s := &Server{Fake: fake.New(opts...)}
	var h http.Handler = s.Fake
	if v != nil {
		h = s.checkAnswers(v)
	}
	srv := httptest.NewServer(h)
	s.URL = srv.URL
	t.Cleanup(func() {
		srv.Close()
		if v := s.Violations(); len(v) > 0 {
			t.Errorf("requests that break the official API contract:\n%v", v)
		}
		if v := s.ResponseViolations(); len(v) > 0 {
			t.Errorf("fake Admin API answers that break the official API contract:\n%v", v)
		}
	})
	return s
}

// checkAnswers serves through the fake and validates its Admin API answers.
// Plain-text answers are not the Admin API handlers' (those always write JSON
// or nothing): they are injected faults, whose body the test chose, or the
// fake's own refusals (no Authorization, a request that broke the contract).
func (s *Server) checkAnswers(v *contract.Validator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/admin/") {
			s.Fake.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		s.Fake.ServeHTTP(rec, r)
		for k, vs := range rec.Header() {
			w.Header()[k] = vs
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())

		if mt, _, _ := mime.ParseMediaType(rec.Header().Get("Content-Type")); mt == "text/plain" {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := v.ValidateResponse(r, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
			s.mu.Lock()
			s.responses = append(s.responses, fmt.Sprintf("%s %s -> %d: %v", r.Method, r.URL.Path, rec.Code, err))
			s.mu.Unlock()
		}
	})
}
