package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/integrations/jira"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
	"github.com/autoinvite/autoinvite/rules"
	"github.com/autoinvite/autoinvite/worker"
)

func (c *cli) backfill(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("backfill", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	path := configFlag(fs, c.env)
	workspace := fs.String("workspace", "", "only this workspace")
	group := fs.String("jira-group", "", "only members of this Jira group (Cloud)")
	dryRun := fs.Bool("dry-run", false, "print the plan for every user; change nothing")
	limit := fs.Int("limit", 0, "stop after this many users (run again to continue)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ad, cfg, err := c.connect(*path)
	if err != nil {
		return c.fail(err)
	}
	defer ad.Close()
	if *workspace != "" {
		if err := choice("workspace", *workspace, workspaceNames(cfg)); err != nil {
			return c.usageError(err)
		}
	}
	// Unlike the other admin actions, a backfill runs here: it lists Jira's
	// users page by page and reports progress as it goes.
	a, err := ad.Backfiller(c.env, c.now)
	if err != nil {
		return c.fail(err)
	}
	defer a.Close()
	if *dryRun {
		return c.backfillPlan(ctx, a.JiraUsers(), ad.Ledger(), a.Rules(), cfg, *group, *workspace, *limit)
	}
	progress := newProgress(c.stdout)
	sum, err := a.Worker().Backfill(ctx, a.JiraUsers(), worker.BackfillOptions{
		Workspace: *workspace, JiraGroup: *group, Limit: *limit, Progress: progress.update,
	})
	progress.done()
	printBackfillSummary(c.stdout, sum)
	if err != nil {
		return c.fail(err)
	}
	return 0
}

// backfillPlan prints, for every user the backfill would handle, what it
// would do, then the summary a real run would start from (no Bitbucket call,
// no ledger write; Jira is only listed). People already in the ledger are
// counted, not listed: the real run skips them too.
func (c *cli) backfillPlan(ctx context.Context, lister *jira.Client, store *ledger.Store, engine *rules.Engine, cfg *config.Config, group, workspace string, limit int) int {
	var sum worker.BackfillSummary
	finished := false // no summary after an error
	defer func() {
		if !finished {
			return
		}
		fmt.Fprintf(c.stdout, "\ndry run, nothing changed: %s listed; %d skipped (inactive, app or customer), %d already in the ledger, %d matched by the rules, %d matched by none\n",
			plural(sum.Seen, "user", "users"), sum.Skipped, sum.AlreadyDone, sum.Matched, sum.Unmatched)
	}()
	for startAt := 0; ; {
		page, err := lister.ListUsers(ctx, group, startAt, 100)
		if err != nil {
			return c.fail(err)
		}
		if page.Total > 0 {
			sum.Total = page.Total
		}
		for _, u := range page.Users {
			if limit > 0 && sum.Seen >= limit {
				finished = true
				return 0
			}
			sum.Seen++
			who := u.Email
			if who == "" {
				who = u.AccountID + u.Name
			}
			person := jobs.User{AccountID: u.AccountID, AccountType: u.AccountType, Name: u.Name, Key: u.Key, Email: u.Email}.PersonID()
			if !u.Active || !rules.Eligible(u.AccountType) || person == "" {
				sum.Skipped++
				fmt.Fprintf(c.stdout, "%s: skipped (inactive, app or customer account)\n", who)
				continue
			}
			known, err := store.Person(ctx, person)
			if err != nil {
				return c.fail(err)
			}
			if len(known) > 0 {
				sum.AlreadyDone++
				continue
			}
			var groups []string
			if group != "" {
				groups = []string{group}
			}
			var lines []string
			for _, d := range engine.Evaluate(rules.Person{AccountType: u.AccountType, Email: u.Email, JiraGroups: groups}) {
				if workspace != "" && d.Workspace != workspace {
					continue
				}
				p := worker.PlanFor(d, u.AccountID, u.Email, false, cfg.Jira.Deployment == config.DeploymentDataCenter, workspaceOf(cfg, d.Workspace))
				desc := fmt.Sprintf("  %s: %s", d.Workspace, strings.Join(d.Groups, ", "))
				if d.Excluded {
					desc = fmt.Sprintf("  %s: excluded", d.Workspace)
				}
				if len(p.IfMember) > 0 {
					desc += fmt.Sprintf(" (member: %d adds; otherwise: invite into %s)", len(p.IfMember)-1, d.Groups[0])
				} else if workspaceOf(cfg, d.Workspace).Bitbucket.DataCenter() {
					desc += fmt.Sprintf(" (%d Data Center group adds)", len(p.Otherwise))
				} else if len(p.Otherwise) > 0 {
					desc += fmt.Sprintf(" (%d invitations)", len(p.Otherwise))
				}
				lines = append(lines, desc)
			}
			if len(lines) == 0 {
				sum.Unmatched++
				fmt.Fprintf(c.stdout, "%s: no rule matches\n", who)
				continue
			}
			sum.Matched++
			fmt.Fprintf(c.stdout, "%s:\n%s\n", who, strings.Join(lines, "\n"))
		}
		if page.Done {
			finished = true
			return 0
		}
		startAt = page.Next
	}
}

// progress shows a bar on a terminal and a line per 100 users otherwise.
type progress struct {
	out      io.Writer
	terminal bool
	start    time.Time
}

func newProgress(out io.Writer) *progress {
	p := &progress{out: out, start: time.Now()}
	if f, ok := out.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

func (p *progress) update(s worker.BackfillSummary) {
	counts := fmt.Sprintf("%s users: %d invited, %d granted, %d already done, %d failed", s.FormatCount(), s.Invited, s.Granted, s.AlreadyDone, s.Failed)
	if !p.terminal {
		if s.Seen%100 == 0 {
			fmt.Fprintln(p.out, "backfill:", counts)
		}
		return
	}
	bar, eta := "", ""
	if s.Total > 0 {
		done := float64(s.Seen+s.Resumed) / float64(s.Total)
		n := int(done * 30)
		bar = "[" + strings.Repeat("#", n) + strings.Repeat(".", 30-n) + "] "
		if s.Seen > 0 {
			left := time.Duration(float64(time.Since(p.start)) / float64(s.Seen) * float64(s.Total-s.Seen-s.Resumed))
			eta = "  ETA " + left.Round(time.Second).String()
		}
	}
	fmt.Fprintf(p.out, "\r%s%s%s\033[K", bar, counts, eta)
}

func (p *progress) done() {
	if p.terminal {
		fmt.Fprintln(p.out) // end the bar's line
	}
}

func printBackfillSummary(out io.Writer, s worker.BackfillSummary) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USERS\tSKIPPED\tALREADY DONE\tMATCHED\tNO MATCH\tINVITED\tGRANTED\tWAITING\tFAILED")
	fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", s.Seen, s.Skipped, s.AlreadyDone, s.Matched, s.Unmatched, s.Invited, s.Granted, s.Waiting, s.Failed)
	tw.Flush()
	if s.Resumed > 0 {
		fmt.Fprintf(out, "(resumed at user %d of an interrupted run)\n", s.Resumed)
	}
}
