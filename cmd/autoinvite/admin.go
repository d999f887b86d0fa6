package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/user"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/autoinvite/autoinvite/app"
	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/jobs"
	"github.com/autoinvite/autoinvite/ledger"
	"github.com/autoinvite/autoinvite/rules"
	"github.com/autoinvite/autoinvite/worker"
)

const timeLayout = "2006-01-02 15:04"

// parseInterspersed parses flags that may come after positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// connect loads the config and connects an admin command to the service's
// Redis (the embedded one is refused). It needs no Atlassian credentials:
// actions are carried out by the service's workers (app.Admin.Do).
func (c *cli) connect(path string) (*app.Admin, *config.Config, error) {
	cfg, err := config.LoadFile(path, c.env)
	if err != nil {
		return nil, nil, err
	}
	secrets, err := config.SecretsFromEnv(c.env)
	if err != nil {
		return nil, nil, err
	}
	log := zerolog.New(c.stderr).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	a, err := app.NewAdmin(cfg, secrets, log, app.WithEmbeddedRedis(embeddedRedisAddr(c.env)))
	if err != nil {
		return nil, nil, err
	}
	return a, cfg, nil
}

// defaultActionTimeout is how long an action waits for a worker to take it.
const defaultActionTimeout = 30 * time.Second

func timeoutFlag(fs *flag.FlagSet) *time.Duration {
	return durationFlag(fs, "timeout", defaultActionTimeout, "how long to wait for the service's workers to take the action")
}

func (c *cli) actor() string {
	if a := c.env("AUTOINVITE_ACTOR"); a != "" {
		return "cli:" + a
	}
	if u, err := user.Current(); err == nil {
		return "cli:" + u.Username
	}
	return "cli"
}

func (c *cli) fail(err error) int {
	fmt.Fprintln(c.stderr, "error:", err)
	return 1
}

func (c *cli) invites(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(c.stderr, "usage: autoinvite invites list|show|resend|cancel …")
		return 2
	}
	// Checked first: `invites lst` must not be taken for a person.
	if err := choice("invites command", args[0], []string{"list", "show", "resend", "cancel"}); err != nil {
		return c.usageError(err)
	}
	fs := flag.NewFlagSet("invites "+args[0], flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	path := configFlag(fs, c.env)
	workspace := fs.String("workspace", "", "only this workspace")
	status := fs.String("status", "", "only this status (list)")
	email := fs.String("email", "", "only this email (list)")
	asJSON := fs.Bool("json", false, "JSON output (list, show)")
	timeout := timeoutFlag(fs)
	positional, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return 2
	}
	if *status != "" {
		if err := choice("status", *status, statusNames()); err != nil {
			return c.usageError(err)
		}
	}
	a, cfg, err := c.connect(*path)
	if err != nil {
		return c.fail(err)
	}
	defer a.Close()
	store := a.Ledger()
	// A workspace the config does not name is refused unless the ledger still
	// has entries there (a workspace removed from the config).
	unknownWorkspace := func(entries []*ledger.Entry) bool {
		return *workspace != "" && cfg.Workspace(*workspace) == nil &&
			!slices.ContainsFunc(entries, func(e *ledger.Entry) bool { return e.Workspace == *workspace })
	}

	if args[0] == "list" {
		if len(positional) > 0 {
			return c.usageError(fmt.Errorf("invites list takes no person (got %q): filter with --email, --workspace or --status", positional[0]))
		}
		entries, err := store.List(ctx, *workspace)
		if err != nil {
			return c.fail(err)
		}
		if unknownWorkspace(entries) {
			return c.usageError(choice("workspace", *workspace, workspaceNames(cfg)))
		}
		entries = slices.DeleteFunc(entries, func(e *ledger.Entry) bool {
			return (*status != "" && string(e.Status) != *status) || (*email != "" && !strings.EqualFold(e.Email, *email))
		})
		if *asJSON {
			stories, err := store.Stories(ctx)
			if err != nil {
				return c.fail(err)
			}
			shown := make([]shownEntry, len(entries))
			for i, e := range entries {
				shown[i] = shownEntry{Entry: e, History: stories[ledger.Ref{Workspace: e.Workspace, PersonID: e.PersonID}]}
			}
			return c.printJSON(shown)
		}
		printList(c.stdout, entries)
		return 0
	}

	if len(positional) != 1 {
		fmt.Fprintf(c.stderr, "usage: autoinvite invites %s EMAIL|ACCOUNT\n", args[0])
		return 2
	}
	entries, err := findPerson(ctx, store, positional[0])
	if err != nil {
		return c.fail(err)
	}
	if unknownWorkspace(entries) {
		return c.usageError(choice("workspace", *workspace, workspaceNames(cfg)))
	}
	if len(entries) == 0 {
		return c.fail(fmt.Errorf("%s is not in the ledger", positional[0]))
	}
	if *workspace != "" {
		in := make([]string, len(entries))
		for i, e := range entries {
			in[i] = e.Workspace
		}
		entries = slices.DeleteFunc(entries, func(e *ledger.Entry) bool { return e.Workspace != *workspace })
		if len(entries) == 0 {
			return c.fail(fmt.Errorf("%s has no entry in workspace %s (only in %s)", positional[0], *workspace, strings.Join(in, ", ")))
		}
	}
	if args[0] == "show" {
		shown := make([]shownEntry, len(entries))
		for i, e := range entries {
			shown[i].Entry = e
			if shown[i].History, err = store.History(ctx, e.Workspace, e.PersonID, showHistory); err != nil {
				return c.fail(err)
			}
		}
		if *asJSON {
			return c.printJSON(shown)
		}
		printShow(c.stdout, shown)
		return 0
	}
	return c.act(ctx, a, args[0], entries, *timeout)
}

// act has the service's workers re-send or cancel each entry's invitations,
// one task per workspace, and prints what they did.
func (c *cli) act(ctx context.Context, a *app.Admin, action string, entries []*ledger.Entry, timeout time.Duration) int {
	code := 0
	for _, e := range entries {
		res, err := a.Do(ctx, jobs.AdminAction{Action: action, Workspace: e.Workspace, PersonID: e.PersonID, Actor: c.actor()}, timeout)
		if err != nil {
			return c.fail(err) // the service is unreachable: the next entry would wait as long
		}
		if res.Error != "" {
			fmt.Fprintf(c.stderr, "%s %s in %s: %s\n", action, personLabel(e), e.Workspace, res.Error)
			code = 1
			continue
		}
		verb := map[string]string{"resend": "re-sent", "cancel": "cancelled"}[action]
		if res.Count > 0 {
			fmt.Fprintf(c.stdout, "%s: %s %d invitation(s) in %s\n", personLabel(e), verb, res.Count, e.Workspace)
			continue
		}
		// Nothing done is not an error (both are idempotent), but say why.
		now, err := a.Ledger().Get(ctx, e.Workspace, e.PersonID)
		if err != nil || now == nil {
			now = e
		}
		// Without the story (unreadable), the reason comes without who and when.
		story, _ := a.Ledger().History(ctx, e.Workspace, e.PersonID, showHistory)
		fmt.Fprintf(c.stdout, "%s: nothing %s in %s: %s\n", personLabel(e), verb, e.Workspace, nothingDone(action, now, story, c.now()))
	}
	return code
}

// nothingDone says why a resend or cancel changed nothing for e.
func nothingDone(action string, e *ledger.Entry, story []ledger.Event, now time.Time) string {
	var pending, accepted, cancelled int
	var lastSent time.Time
	for _, inv := range e.Invitations {
		switch inv.State {
		case ledger.InvitationPending:
			pending++
			if inv.SentAt.After(lastSent) {
				lastSent = inv.SentAt
			}
		case ledger.InvitationAccepted:
			accepted++
		case ledger.InvitationCancelled:
			cancelled++
		}
	}
	switch {
	case pending > 0 && action == jobs.AdminResend && now.Sub(lastSent) < time.Minute:
		return fmt.Sprintf("the invitation was sent less than a minute ago (%s), and is not sent again so that nobody gets it twice; try again from %s",
			formatTime(lastSent), formatTime(lastSent.Add(time.Minute)))
	case pending > 0:
		return "the invitation is pending and was not due; see `autoinvite invites show` and the service log"
	case cancelled > 0:
		why := "its invitations were cancelled"
		if h := lastEvent(story, ledger.ActionInvitationsCancelled); h != nil {
			why += fmt.Sprintf(" (%s by %s)", formatTime(h.At), h.Actor)
		}
		if action == jobs.AdminResend {
			why += ": a cancelled invitation is not re-sent; a new signup or a reactivation in Jira starts over"
		}
		return why
	case accepted > 0:
		return "the invitation was accepted: they joined the workspace (status " + string(e.Status) + ")"
	case len(e.Invitations) == 0:
		return "there is no invitation (status " + string(e.Status) + ")"
	}
	return "no pending invitation (status " + string(e.Status) + ")"
}

// lastEvent is the newest event of an action in a story, or nil.
func lastEvent(story []ledger.Event, action string) *ledger.Event {
	for i := len(story) - 1; i >= 0; i-- {
		if story[i].Action == action {
			return &story[i]
		}
	}
	return nil
}

// showHistory is how many events of a person's story `invites show` reads.
const showHistory = 100

// shownEntry is an entry with its story (from the audit stream), as `invites
// show` and `invites list --json` print it.
type shownEntry struct {
	*ledger.Entry
	History []ledger.Event `json:"history,omitempty"`
}

// findPerson resolves an email, an Atlassian account id, a Data Center user
// key, or a ledger person id ("acct:…", "dc:…").
func findPerson(ctx context.Context, store *ledger.Store, who string) ([]*ledger.Entry, error) {
	var candidates []string
	switch {
	case strings.Contains(who, "@"):
		id, err := store.PersonByEmail(ctx, who)
		if err != nil {
			return nil, err
		}
		candidates = []string{id}
	case strings.HasPrefix(who, "acct:"), strings.HasPrefix(who, "dc:"):
		candidates = []string{who}
	default:
		candidates = []string{"acct:" + who, "dc:" + who}
	}
	for _, id := range candidates {
		if id == "" {
			continue
		}
		entries, err := store.Person(ctx, id)
		if err != nil || len(entries) > 0 {
			return entries, err
		}
	}
	return nil, nil
}

func personLabel(e *ledger.Entry) string {
	if e.Email != "" {
		return e.Email
	}
	return e.PersonID
}

func (c *cli) printJSON(v any) int {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return c.fail(err)
	}
	return 0
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func joinOrDash(items []string) string { return orDash(strings.Join(items, ",")) }

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(timeLayout)
}

// latestInvitation is the invitation to show in a one-line summary.
func latestInvitation(e *ledger.Entry) *ledger.Invitation {
	var latest *ledger.Invitation
	for i := range e.Invitations {
		inv := &e.Invitations[i]
		if latest == nil || inv.SentAt.After(latest.SentAt) {
			latest = inv
		}
	}
	return latest
}

func printList(out io.Writer, entries []*ledger.Entry) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PERSON\tWORKSPACE\tSTATUS\tGRANTED\tWAITING\tSENT\tEXPIRES\tRESENDS\tLAST ERROR")
	for _, e := range entries {
		sent, expires, resends := "-", "-", "-"
		if inv := latestInvitation(e); inv != nil {
			sent, expires, resends = formatTime(inv.SentAt), formatTime(inv.ExpiresAt), fmt.Sprint(inv.Resends)
		}
		lastErr := e.LastError
		if len(lastErr) > 60 {
			lastErr = lastErr[:57] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", personLabel(e), e.Workspace, e.Status,
			joinOrDash(e.Granted), joinOrDash(e.Waiting), sent, expires, resends, orDash(lastErr))
	}
	tw.Flush()
}

func printShow(out io.Writer, entries []shownEntry) {
	first := entries[0]
	fmt.Fprintf(out, "person   %s\n", first.PersonID)
	fmt.Fprintf(out, "email    %s\n", orDash(first.Email))
	fmt.Fprintf(out, "name     %s\n", orDash(first.DisplayName))
	for _, e := range entries {
		fmt.Fprintf(out, "\nworkspace %s: %s\n", e.Workspace, e.Status)
		fmt.Fprintf(out, "  granted      %s\n", withRules(e.Entry, e.Granted))
		fmt.Fprintf(out, "  waiting      %s\n", withRules(e.Entry, e.Waiting))
		if len(e.HandGiven) > 0 {
			fmt.Fprintf(out, "  by hand      %s (never revoked)\n", strings.Join(e.HandGiven, ", "))
		}
		if len(e.HeldRemovals) > 0 {
			fmt.Fprintf(out, "  held         %s (removal waits for `autoinvite revocations resume`)\n", strings.Join(e.HeldRemovals, ", "))
		}
		fmt.Fprintf(out, "  last error   %s\n", orDash(e.LastError))
		if len(e.Invitations) > 0 {
			fmt.Fprintln(out, "  invitations")
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			for _, inv := range e.Invitations {
				fmt.Fprintf(tw, "    %s\t%s\tsent %s\texpires %s\tre-sends %d\n", inv.Group, inv.State, formatTime(inv.SentAt), formatTime(inv.ExpiresAt), inv.Resends)
			}
			tw.Flush()
		}
		fmt.Fprintln(out, "  history")
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		for _, h := range e.History {
			fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%s\n", formatTime(h.At), h.Actor, h.Action, orDash(h.Group), h.Detail)
		}
		tw.Flush()
	}
}

// withRules formats groups with the rules that gave them: "developers (engineers)".
func withRules(e *ledger.Entry, groups []string) string {
	if len(groups) == 0 {
		return "-"
	}
	parts := make([]string, len(groups))
	for i, g := range groups {
		parts[i] = g
		if names := e.RulesByGroup[g]; len(names) > 0 {
			parts[i] += " (" + strings.Join(names, ", ") + ")"
		}
	}
	return strings.Join(parts, ", ")
}

func (c *cli) plan(args []string) int {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	path := configFlag(fs, c.env)
	email := fs.String("email", "", "the person's email address")
	groups := fs.String("jira-groups", "", "comma-separated Jira groups the person is in")
	accountType := fs.String("account-type", "atlassian", "Jira Cloud account type: atlassian, app or customer")
	accountID := fs.String("account-id", "", "Atlassian account id (Cloud): plans the membership check")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *email == "" {
		fmt.Fprintln(c.stderr, "plan: --email is required")
		return 2
	}
	cfg, err := config.LoadFile(*path, c.env)
	if err != nil {
		return c.fail(err)
	}
	engine, err := rules.New(cfg)
	if err != nil {
		return c.fail(err)
	}
	var jiraGroups []string
	if *groups != "" {
		jiraGroups = strings.Split(*groups, ",")
	}
	out := c.stdout
	fmt.Fprintf(out, "plan for %s (account type %s, Jira groups: %s)\n", *email, *accountType, joinOrDash(jiraGroups))
	if !rules.Eligible(*accountType) {
		fmt.Fprintln(out, "\nnothing: app and customer accounts never get Bitbucket access")
		return 0
	}
	decisions := engine.Evaluate(rules.Person{AccountType: *accountType, Email: *email, JiraGroups: jiraGroups})
	if len(decisions) == 0 {
		fmt.Fprintln(out, "\nnothing: no rule matches")
		return 0
	}
	lookup := engine.NeedsJiraGroups() && *groups == ""
	if lookup {
		fmt.Fprintln(out, "note: the rules look at Jira groups; pass --jira-groups to plan with them (the worker asks Jira)")
	}
	for _, d := range decisions {
		fmt.Fprintf(out, "\nworkspace %s\n", d.Workspace)
		if d.Excluded {
			fmt.Fprintln(out, "  excluded: nothing is granted")
			continue
		}
		for _, g := range d.Groups {
			fmt.Fprintf(out, "  %-14s <- %s\n", g, strings.Join(d.RulesByGroup[g], ", "))
		}
		p := worker.PlanFor(d, *accountID, *email, lookup, cfg.Jira.Deployment == config.DeploymentDataCenter, workspaceOf(cfg, d.Workspace))
		printCalls(out, "first", p.Lookup)
		ws := workspaceOf(cfg, d.Workspace)
		atlassian := ws.Administration == config.AdministrationAtlassian && ws.Organization != nil
		if atlassian {
			fmt.Fprintln(out, "  administered in Atlassian Administration: through the Organization Admin API")
			printCalls(out, "if in the organization's directory", p.IfMember)
		} else {
			printCalls(out, "if already a workspace member", p.IfMember)
		}
		label := "otherwise"
		if atlassian {
			label = "otherwise (one invitation with every group)"
		} else if ws.Bitbucket.DataCenter() {
			label = "Bitbucket Data Center"
		} else if *accountID == "" {
			label = "invitations (no account id: one per group)"
		}
		printCalls(out, label, p.Otherwise)
		if len(p.Waiting) > 0 {
			fmt.Fprintf(out, "  waiting until they join: %s\n", strings.Join(p.Waiting, ", "))
		}
	}
	return 0
}

// workspaceOf is the config of a workspace in cfg (Cloud when unknown).
func workspaceOf(cfg *config.Config, workspace string) config.Workspace {
	if ws := cfg.Workspace(workspace); ws != nil {
		return *ws
	}
	return config.Workspace{Workspace: workspace, Bitbucket: config.Target{Deployment: config.BitbucketCloud}}
}

func printCalls(out io.Writer, label string, calls []string) {
	if len(calls) == 0 {
		return
	}
	fmt.Fprintf(out, "  %s:\n", label)
	for _, call := range calls {
		fmt.Fprintf(out, "    %s\n", call)
	}
}

func (c *cli) sweep(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("sweep", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	path := configFlag(fs, c.env)
	once := fs.Bool("once", false, "run one sweep now and exit")
	timeout := timeoutFlag(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if !*once {
		fmt.Fprintln(c.stderr, "sweep: only --once is supported here; `serve` runs the scheduled sweep")
		return 2
	}
	a, _, err := c.connect(*path)
	if err != nil {
		return c.fail(err)
	}
	defer a.Close()
	// Run by a worker of the service (worker.SweepOnce) rather than queued as
	// the scheduled sweep task, which only queues follow-ups: the admin sees
	// what this sweep did, and the ledger records them as the actor.
	res, err := a.Do(ctx, jobs.AdminAction{Action: jobs.AdminSweep, Actor: c.actor()}, *timeout)
	if err != nil {
		return c.fail(err)
	}
	sum := func(o worker.Outcome) int { return res.Sweep[string(o)] }
	fmt.Fprintf(c.stdout, "sweep: %d re-sent, %d accepted, %d expired for good, %d checked (not joined yet), %d busy\n",
		sum(worker.OutcomeResent), sum(worker.OutcomeAccepted), sum(worker.OutcomeExpired), sum(worker.OutcomeChecked), sum(worker.OutcomeBusy))
	if res.Error != "" {
		return c.fail(errors.New(res.Error))
	}
	return 0
}

func (c *cli) revocations(ctx context.Context, args []string) int {
	if len(args) == 0 || (args[0] != "status" && args[0] != "resume") {
		fmt.Fprintln(c.stderr, "usage: autoinvite revocations status|resume --workspace W")
		return 2
	}
	fs := flag.NewFlagSet("revocations", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	path := configFlag(fs, c.env)
	workspace := fs.String("workspace", "", "the workspace")
	timeout := timeoutFlag(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *workspace == "" {
		fmt.Fprintln(c.stderr, "revocations: --workspace is required")
		return 2
	}
	a, cfg, err := c.connect(*path)
	if err != nil {
		return c.fail(err)
	}
	defer a.Close()
	tripped, since, held, err := a.Ledger().Breaker(ctx, *workspace)
	if err != nil {
		return c.fail(err)
	}
	// A workspace removed from the config may still have held removals.
	if cfg.Workspace(*workspace) == nil && !tripped && held == 0 {
		return c.usageError(choice("workspace", *workspace, workspaceNames(cfg)))
	}
	if args[0] == "resume" {
		res, err := a.Do(ctx, jobs.AdminAction{Action: jobs.AdminResumeRevocations, Workspace: *workspace, Actor: c.actor()}, *timeout)
		if err != nil {
			return c.fail(err)
		}
		fmt.Fprintf(c.stdout, "%s: removals resumed; %d held removal(s) applied\n", *workspace, res.Count)
		if res.Error != "" {
			return c.fail(errors.New(res.Error))
		}
		return 0
	}
	if tripped {
		fmt.Fprintf(c.stdout, "%s: removals PAUSED since %s; %d person(s) held. Resume with: autoinvite revocations resume --workspace %s\n", *workspace, formatTime(since), held, *workspace)
	} else if held > 0 {
		// A resume whose removals failed keeps those people held.
		fmt.Fprintf(c.stdout, "%s: removals flowing; %d person(s) still held (a removal failed): autoinvite revocations resume --workspace %s\n", *workspace, held, *workspace)
	} else {
		fmt.Fprintf(c.stdout, "%s: removals flowing\n", *workspace)
	}
	return 0
}

func (c *cli) audit(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	path := configFlag(fs, c.env)
	since := durationFlag(fs, "since", 24*time.Hour, "how far back to start")
	email := fs.String("email", "", "only records about this email")
	follow := fs.Bool("follow", false, "keep printing new records until interrupted")
	asJSON := fs.Bool("json", false, "one JSON object per line")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	a, _, err := c.connect(*path)
	if err != nil {
		return c.fail(err)
	}
	defer a.Close()
	store := a.Ledger()
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	if !*asJSON {
		fmt.Fprintln(tw, "TIME\tACTOR\tWORKSPACE\tPERSON\tACTION\tGROUP\tRULES\tOUTCOME\tDETAIL")
	}
	print := func(recs []ledger.AuditRecord) {
		for _, r := range recs {
			if *email != "" && !strings.EqualFold(r.Email, *email) {
				continue
			}
			if *asJSON {
				enc := json.NewEncoder(c.stdout)
				enc.SetEscapeHTML(false)
				enc.Encode(r)
				continue
			}
			who := r.Email
			if who == "" {
				who = r.PersonID
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Time.UTC().Format("2006-01-02 15:04:05"), r.Actor,
				orDash(r.Workspace), orDash(who), r.Action, orDash(r.Group), joinOrDash(r.Rules), r.Outcome, r.Detail)
		}
		tw.Flush()
	}
	last := ""
	for {
		recs, err := store.ReadAudit(ctx, c.now().Add(-*since), last, 1000)
		if err != nil {
			return c.fail(err)
		}
		print(recs)
		if len(recs) < 1000 {
			if len(recs) > 0 {
				last = recs[len(recs)-1].ID
			}
			break
		}
		last = recs[len(recs)-1].ID
	}
	if !*follow {
		return 0
	}
	if last == "" {
		last = "$"
	}
	for ctx.Err() == nil {
		recs, err := store.WaitAudit(ctx, last, 5*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return 0
			}
			return c.fail(err)
		}
		if len(recs) > 0 {
			print(recs)
			last = recs[len(recs)-1].ID
		}
	}
	return 0
}
