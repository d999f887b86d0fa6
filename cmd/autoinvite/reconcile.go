package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/reconcile"
)

// reconcile asks the running service for a reconciliation pass now and
// prints its table. Like the other admin actions it is carried out by a
// worker (on the low-priority reconcile queue), with the service's
// credentials; the command needs only Redis.
func (c *cli) reconcile(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	path := configFlag(fs, c.env)
	workspace := fs.String("workspace", "", "only this workspace")
	dryRun := fs.Bool("dry-run", false, "print the differences; change nothing, keep no cursor")
	asJSON := fs.Bool("json", false, "JSON output")
	timeout := timeoutFlag(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	a, cfg, err := c.connect(*path)
	if err != nil {
		return c.fail(err)
	}
	defer a.Close()
	if *workspace != "" {
		if err := choice("workspace", *workspace, workspaceNames(cfg)); err != nil {
			return c.usageError(err)
		}
	}
	rep, err := a.Reconcile(ctx, jobs.ReconcilePass{Workspace: *workspace, DryRun: *dryRun, Actor: c.actor()}, *timeout)
	if *asJSON && (err == nil || rep.Scope != "") {
		if code := c.printJSON(rep); code != 0 || err == nil {
			return code
		}
	} else if err == nil || rep.Scope != "" {
		printReconcile(c.stdout, rep)
	}
	if err != nil {
		return c.fail(err)
	}
	return 0
}

// printReconcile prints the table, the notes and a summary line.
func printReconcile(out io.Writer, rep reconcile.Report) {
	if len(rep.Rows) > 0 {
		reconcile.WriteTable(out, rep.Rows)
		fmt.Fprintln(out)
	}
	for _, n := range rep.Notes {
		fmt.Fprintln(out, "note:", n)
	}
	what := "pass done"
	if rep.DryRun {
		what = "dry run, nothing changed"
	}
	actionable := 0
	for _, r := range rep.Rows {
		if r.Actionable() {
			actionable++
		}
	}
	resumed := ""
	if rep.Resumed {
		resumed = " (resumed an interrupted pass)"
	}
	fmt.Fprintf(out, "%s; workspaces %s: %s examined, %s (%d to act on, %d fixed)%s\n", what, orDash(strings.Join(rep.Workspaces, ", ")),
		plural(rep.Users, "Jira user", "Jira users"), plural(len(rep.Rows), "difference", "differences"), actionable, rep.Fixed(), resumed)
}
