package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// commandCounts is Redis's INFO commandstats: calls per command since the
// last CONFIG RESETSTAT. Commands a script runs count as well, under their
// own names; the script itself counts once under evalsha.
func (e *benchEnv) commandCounts(ctx context.Context) (map[string]int, error) {
	info, err := e.rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		n, err := strconv.Atoi(calls)
		if err != nil {
			continue
		}
		out[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return out, nil
}

// perSignup formats command counts per signup, most frequent first.
func perSignup(counts map[string]int, n int) string {
	names := make([]string, 0, len(counts))
	for k := range counts {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return counts[names[i]] > counts[names[j]] })
	var b strings.Builder
	for _, k := range names {
		if c := float64(counts[k]) / float64(n); c >= 0.05 {
			fmt.Fprintf(&b, " %s %.2f", k, c)
		}
	}
	return strings.TrimSpace(b.String())
}
