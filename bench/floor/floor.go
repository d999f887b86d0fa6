// Package floor is a signup's unavoidable Bitbucket work done with the
// product's own client and limiter and nothing else, for the pipeline
// benchmark's floors (in its process, and in bench/calls-worker).
package floor

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/autoinvite/autoinvite/integrations/atlassian"
	"github.com/autoinvite/autoinvite/integrations/bitbucket"
	"github.com/autoinvite/autoinvite/integrations/ratelimit"
)

// SignupOf reads the person out of a Jira webhook body.
func SignupOf(body []byte) (accountID, email string, err error) {
	var hook struct {
		User struct {
			AccountID    string `json:"accountId"`
			EmailAddress string `json:"emailAddress"`
		} `json:"user"`
	}
	err = json.Unmarshal(body, &hook)
	return hook.User.AccountID, hook.User.EmailAddress, err
}

// Member says whether the benchmark's fake has the person as a workspace
// member already: every other account (by its last digit).
func Member(accountID string) bool {
	return accountID != "" && (accountID[len(accountID)-1]-'0')%2 == 0
}

// UnavoidableCalls returns what makes the unavoidable Bitbucket calls of the
// signup in a webhook body, 2 group adds for a member or 1 invitation, through
// the product's client with the product's limiter (keys under prefix) and the
// pipeline's never-reached budgets, against the fake at baseURL (transport
// nil: over HTTP). In a burst a member listing answers who is a member (50
// pages for 10,000 signups): the adds and the invitations are what remain.
func UnavoidableCalls(rdb redis.UniversalClient, prefix, baseURL string, transport http.RoundTripper) func(ctx context.Context, body []byte) error {
	auth := atlassian.Auth{Email: "bot@acme.com", Token: "t"}
	limiter := ratelimit.New(rdb, ratelimit.Options{API: "bitbucket", Credential: ratelimit.CredentialOf(auth.Email, auth.Bearer), Prefix: prefix,
		Budgets: []ratelimit.Budget{
			{Name: "requests", Requests: 100000000, Per: time.Hour},
			{Name: "invitations", Requests: 100000000, Per: time.Hour, Match: func(method, path string) bool {
				return method == http.MethodPut && strings.HasSuffix(path, "/invitations")
			}},
		}})
	bb := bitbucket.New(atlassian.Options{BaseURL: baseURL, Transport: transport, Timeout: 10 * time.Second,
		Auth: auth, Instrument: limiter.Install})
	return func(ctx context.Context, body []byte) error {
		account, email, err := SignupOf(body)
		if err != nil {
			return err
		}
		if !Member(account) {
			_, err = bb.Invite(ctx, "acme", email, "developers")
			return err
		}
		for _, g := range []string{"developers", "readers"} {
			if _, err := bb.AddToGroup(ctx, "acme", g, account); err != nil {
				return err
			}
		}
		return nil
	}
}
