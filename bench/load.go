package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autoinvite/autoinvite/intake"
	"github.com/autoinvite/autoinvite/internal/testenv"
)

// webhook is one signed request, prepared before the clock starts.
type webhook struct {
	body       []byte
	signature  string
	deliveryID string
}

func signups(n int, account func(i int) string) []webhook {
	out := make([]webhook, n)
	for i := range out {
		body := testenv.Payload("user_created", map[string]any{
			"accountId": account(i), "accountType": "atlassian", "emailAddress": fmt.Sprintf("p%07d@acme.com", i), "active": true,
		})
		out[i] = webhook{body: body, signature: intake.Sign([]byte(webhookSecret), body), deliveryID: fmt.Sprintf("bench-%07d", i)}
	}
	return out
}

func accountID(i int) string { return fmt.Sprintf("557058:%07d", i) }

// loadResult is what one run of the load generator saw.
type loadResult struct {
	n        int
	errors   int
	elapsed  time.Duration
	p50, p99 time.Duration
}

func (r loadResult) rate() float64 { return float64(r.n) / r.elapsed.Seconds() }

// load sends every webhook to url from senders goroutines over keep-alive
// connections and measures each request's latency.
func load(url string, hooks []webhook, senders int) loadResult {
	tr := &http.Transport{MaxIdleConns: senders, MaxIdleConnsPerHost: senders, MaxConnsPerHost: senders,
		DialContext: (&net.Dialer{}).DialContext}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var errs atomic.Int64
	lat := make([][]time.Duration, senders)
	start := time.Now()
	fanOut(len(hooks), senders, func(s, i int) {
		h := hooks[i]
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(h.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(intake.HeaderSignature, h.signature)
		req.Header.Set(intake.HeaderDeliveryID, h.deliveryID)
		t0 := time.Now()
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		lat[s] = append(lat[s], time.Since(t0))
		if err != nil || resp.StatusCode != http.StatusAccepted {
			errs.Add(1)
		}
	})
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	return loadResult{n: len(hooks), errors: int(errs.Load()), elapsed: elapsed,
		p50: all[len(all)/2], p99: all[len(all)*99/100]}
}

// fanOut calls fn(worker, i) for i in [0, n) from workers goroutines and waits.
func fanOut(n, workers int, fn func(worker, i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				fn(w, i)
			}
		}()
	}
	wg.Wait()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
