package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/autoinvite/autoinvite/config"
)

// healthcheck asks the running service whether it is ready (GET /readyz:
// it answers 200 when Redis answers). It is the container's healthcheck:
// the image has no shell, curl or wget, only this binary.
func (c *cli) healthcheck(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	path := configFlag(fs, c.env)
	target := fs.String("url", "", "URL to probe (default: /readyz on the config's listen address, over loopback)")
	timeout := durationFlag(fs, "timeout", 5*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *target == "" {
		*target = "http://" + probeAddr(c.listenAddr(*path)) + "/readyz"
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *target, nil)
	if err != nil {
		return c.fail(fmt.Errorf("healthcheck: %w", err))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return c.fail(fmt.Errorf("healthcheck %s: %w", *target, err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return c.fail(fmt.Errorf("healthcheck %s: %s: %s", *target, resp.Status, strings.TrimSpace(string(body))))
	}
	fmt.Fprintf(c.stdout, "%s: %s\n", *target, strings.TrimSpace(string(body)))
	return 0
}

// listenAddr is the address serve listens on. A config that no longer loads
// (an edit the running service refused to reload) must not make a healthy
// service look unhealthy: then AUTOINVITE_LISTEN or the default applies.
func (c *cli) listenAddr(path string) string {
	cfg, err := config.LoadFile(path, c.env)
	if err == nil {
		return cfg.Listen
	}
	if l := strings.TrimSpace(c.env("AUTOINVITE_LISTEN")); l != "" {
		return l
	}
	return config.Defaults().Listen
}

// probeAddr turns a listen address into one to connect to: a wildcard host
// (":8080", "0.0.0.0:8080", "[::]:8080") becomes loopback.
func probeAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
