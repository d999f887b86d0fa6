// Command bench measures autoinvite against the physical limits of its parts:
// the same load generator, the same private redis-server and the same machine
// in one run. docs/performance.md explains each measurement and keeps the results.
//
//	go run ./bench                      # everything (make bench)
//	go run ./bench -only intake,sweep   # some of it
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"time"
)

type options struct {
	redisURL string
	signups  int
	ledger   int
	due      int
	requests int
}

type benchmark struct {
	name string
	run  func(ctx context.Context, env *benchEnv) error
}

func main() {
	var o options
	only := flag.String("only", "intake,pipeline,sweep,ledger,economy,budget,bulk,scale", "comma-separated benchmarks to run")
	flag.StringVar(&o.redisURL, "redis-url", "", "use this Redis (it is FLUSHDB'd!) instead of a private redis-server")
	flag.IntVar(&o.requests, "requests", 40000, "intake: webhooks per run")
	flag.IntVar(&o.signups, "signups", 10000, "pipeline: signups")
	flag.IntVar(&o.ledger, "ledger", 1000000, "sweep and ledger: ledger size")
	flag.IntVar(&o.due, "due", 10000, "sweep: invitations due")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}

	all := []benchmark{
		{"intake", benchIntake},
		{"pipeline", benchPipeline},
		{"sweep", benchSweep},
		{"ledger", benchLedger},
		{"economy", benchEconomy},
		{"budget", benchBudget},
		{"bulk", benchBulk},
		{"scale", benchScale},
	}
	want := map[string]bool{}
	for _, n := range strings.Split(*only, ",") {
		want[strings.TrimSpace(n)] = true
	}
	ctx := context.Background()
	env, err := newBenchEnv(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	defer env.close()
	fmt.Printf("# autoinvite benchmarks, %s, %s\n", time.Now().UTC().Format(time.RFC3339), env.machine())
	failed := false
	for _, b := range all {
		if !want[b.name] {
			continue
		}
		start := time.Now()
		fmt.Printf("\n## %s\n\n", b.name)
		if err := b.run(ctx, env); err != nil {
			fmt.Printf("FAILED: %v\n", err)
			failed = true
		}
		fmt.Printf("\n(%s took %s)\n", b.name, time.Since(start).Round(time.Second))
	}
	if failed {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}
