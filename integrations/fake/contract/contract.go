// Package contract validates requests against the official Atlassian OpenAPI
// specs (the subsets in shared/contracts), so tests fail when a client sends a
// path, parameter or header the real API would not accept.
package contract

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// Validator checks requests for the Bitbucket 2.0, Jira Cloud v3 and
// Organization Admin (/admin/) APIs, and the fake's Admin API answers.
// Requests to other paths (Bitbucket 1.0, Jira Data Center) have no official
// spec and pass through; the fake checks those itself.
type Validator struct {
	bitbucket routers.Router
	jira      routers.Router
	admin     routers.Router
}

const fakeHost = "contract.invalid"

// Load reads the specs from dir.
func Load(dir string) (*Validator, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "bitbucket-cloud-2.0.subset.json"))
	if err != nil {
		return nil, fmt.Errorf("read bitbucket spec: %w", err)
	}
	var doc2 openapi2.T
	if err := json.Unmarshal(raw, &doc2); err != nil {
		return nil, fmt.Errorf("parse bitbucket spec: %w", err)
	}
	bb, err := openapi2conv.ToV3(&doc2)
	if err != nil {
		return nil, fmt.Errorf("convert bitbucket spec: %w", err)
	}
	bb.Servers = openapi3.Servers{{URL: "http://" + fakeHost + "/2.0"}}

	loader := openapi3.NewLoader()
	jira, err := loader.LoadFromFile(filepath.Join(dir, "jira-cloud-platform-v3.subset.json"))
	if err != nil {
		return nil, fmt.Errorf("load jira spec: %w", err)
	}
	jira.Servers = openapi3.Servers{{URL: "http://" + fakeHost}}

	admin, err := openapi3.NewLoader().LoadFromFile(filepath.Join(dir, "atlassian-admin-v2.subset.json"))
	if err != nil {
		return nil, fmt.Errorf("load admin spec: %w", err)
	}
	admin.Servers = openapi3.Servers{{URL: "http://" + fakeHost}}

	v := &Validator{}
	if v.bitbucket, err = gorillamux.NewRouter(bb); err != nil {
		return nil, fmt.Errorf("route bitbucket spec: %w", err)
	}
	if v.jira, err = gorillamux.NewRouter(jira); err != nil {
		return nil, fmt.Errorf("route jira spec: %w", err)
	}
	if v.admin, err = gorillamux.NewRouter(admin); err != nil {
		return nil, fmt.Errorf("route admin spec: %w", err)
	}
	return v, nil
}

// Validate returns an error when r does not conform to its spec.
func (v *Validator) Validate(r *http.Request) error {
	in, err := v.route(r)
	if in == nil || err != nil {
		return err
	}
	return openapi3filter.ValidateRequest(context.Background(), in)
}

// ValidateResponse returns an error when the answer to r (an Admin API
// request) does not conform to the spec: an undocumented status, a body that
// does not match its schema. Other APIs' answers are not checked.
func (v *Validator) ValidateResponse(r *http.Request, status int, header http.Header, body []byte) error {
	if !strings.HasPrefix(r.URL.Path, "/admin/") {
		return nil
	}
	in, err := v.route(r)
	if in == nil || err != nil {
		return err
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true},
	}
	out.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(context.Background(), out)
}

// route finds r's operation; nil when r's API has no spec.
func (v *Validator) route(r *http.Request) (*openapi3filter.RequestValidationInput, error) {
	var router routers.Router
	switch {
	case strings.HasPrefix(r.URL.Path, "/2.0/"):
		router = v.bitbucket
	case strings.HasPrefix(r.URL.Path, "/rest/api/3/"):
		router = v.jira
	case strings.HasPrefix(r.URL.Path, "/admin/"):
		router = v.admin
	default:
		return nil, nil
	}
	req := r.Clone(r.Context())
	req.URL.Scheme, req.URL.Host, req.Host = "http", fakeHost, fakeHost
	route, params, err := router.FindRoute(req)
	if err != nil {
		return nil, fmt.Errorf("no such operation in the official spec: %w", err)
	}
	return &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: requireAuthorization},
	}, nil
}

// requireAuthorization accepts any of the spec's schemes when the matching
// Authorization header form is present.
func requireAuthorization(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	h := in.RequestValidationInput.Request.Header.Get("Authorization")
	switch {
	case h == "":
		return errors.New("no Authorization header")
	case in.SecurityScheme.Type == "http" && strings.EqualFold(in.SecurityScheme.Scheme, "basic") && !strings.HasPrefix(h, "Basic "):
		return errors.New("not Basic auth")
	case in.SecurityScheme.Type == "http" && strings.EqualFold(in.SecurityScheme.Scheme, "bearer") && !strings.HasPrefix(h, "Bearer "):
		return errors.New("not Bearer auth")
	}
	return nil
}

// FindDir locates shared/contracts: $AUTOINVITE_CONTRACTS_DIR, or ../shared/contracts
// beside the repository root (the directory holding go.mod). "" when absent.
func FindDir() string {
	if d := os.Getenv("AUTOINVITE_CONTRACTS_DIR"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			c := filepath.Join(dir, "..", "shared", "contracts")
			if _, err := os.Stat(c); err == nil {
				return c
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
