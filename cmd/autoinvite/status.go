package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/hibiken/asynq"
)

// status prints what the service has to do and how long the Atlassian
// budget makes it take: the queue, the tasks waiting for a budget (served
// oldest first as it refills), each budget's use in its current window and
// when the last waiting task's turn comes. It only reads Redis.
func (c *cli) status(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	path := configFlag(fs, c.env)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	a, _, err := c.connect(*path)
	if err != nil {
		return c.fail(err)
	}
	defer a.Close()

	info, err := a.Inspector().GetQueueInfo(a.Queue())
	if errors.Is(err, asynq.ErrQueueNotFound) {
		info, err = &asynq.QueueInfo{Queue: a.Queue()}, nil // nothing was ever queued
	}
	if err != nil {
		return c.fail(fmt.Errorf("read queue %s: %w", a.Queue(), err))
	}
	fmt.Fprintf(c.stdout, "Queue %s\n  pending %d, active %d, scheduled %d, waiting to retry %d, archived (failed) %d, completed %d\n",
		info.Queue, info.Pending, info.Active, info.Scheduled, info.Retry, info.Archived, info.Completed)

	budgets, err := a.Backlog().Status(ctx)
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintln(c.stdout)
	if len(budgets) == 0 {
		fmt.Fprintln(c.stdout, "Budgets: no task is waiting for an Atlassian budget.")
		return 0
	}
	fmt.Fprintln(c.stdout, "Budgets (tasks waiting for one run oldest first as it refills)")
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  API\tBUDGET\tUSED IN WINDOW\tWAITING\tOLDEST WAITING SINCE\tETA")
	for _, b := range budgets {
		oldest, eta := "-", "-"
		if b.Waiting > 0 {
			oldest, eta = formatTime(b.Oldest), roundETA(b.ETA)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d of %d per %s\t%d\t%s\t%s\n", b.API, b.Budget, b.Used, b.Requests, shortDuration(b.Per), b.Waiting, oldest, eta)
	}
	tw.Flush()
	return 0
}

// roundETA keeps an estimate to the precision it has.
func roundETA(d time.Duration) string {
	switch {
	case d <= 0:
		return "now"
	case d < time.Minute:
		return shortDuration(d.Round(time.Second))
	default:
		return shortDuration(d.Round(time.Minute))
	}
}

// shortDuration writes 1h, 2h20m, 45s rather than 1h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	for _, suffix := range []string{"m0s", "h0m"} {
		if len(s) > len(suffix) && s[len(s)-len(suffix):] == suffix {
			s = s[:len(s)-len(suffix)+1]
		}
	}
	return s
}
