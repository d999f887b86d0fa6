package ledger

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Person numbers. The indexes name a person by a short number rather than by
// their id (48 characters for an Atlassian account): the due and check
// sorted sets ("<workspace>\x00<number>"), the workspace's set of people and
// the email index's values. With real-length ids that is 48 to 56 B less per
// member, 208 B less for an invited newcomer (four members) and 112 B for a
// member (two), for the 56 B the number's way back to the id costs: 861 B and
// 641 B per entry at 1M entries, from 1014 B and 697 B (docs/performance.md,
// section 3).
//
// putScript gives a person their number on their first write, in the same
// script (INCR on {prefix}:n), so two writers for one person get one number.
// The number is the first line of the person's value ("#<n>\n", which
// records() skips: it has no tab), and the way back is a hash per 128
// numbers ({prefix}:n:<n/128>, field n%128, value the person id): small
// enough to stay a listpack (hash-max-listpack-entries, 128 by default),
// where a field and an id cost about 56 B; one hash of every number would
// be a hashtable of about 100 B a person. The script names that hash itself
// (its name depends on the number it allocates): it shares the ledger's hash
// tag, so it is in the same Redis Cluster slot as the keys it declares.
//
// Index members written before the numbers hold the person id. Person ids
// always have a prefix with a colon ("acct:", "dc:") and numbers are only
// digits, so a member says which it is; readers resolve both, and putScript
// replaces the person id with the number whenever it writes the entry.

// numbersPerHash is how many numbers share one hash of the way back.
const numbersPerHash = 128

// numbersKey is the counter of person numbers.
func (s *Store) numbersKey() string { return s.prefix + ":n" }

// numberedPrefix + n/numbersPerHash is the hash of number n's person id.
func (s *Store) numberedPrefix() string { return s.prefix + ":n:" }

// isNumber reports whether an index member's person is a number (else a
// person id of the format before numbers).
func isNumber(who string) bool {
	if who == "" {
		return false
	}
	for i := 0; i < len(who); i++ {
		if who[i] < '0' || who[i] > '9' {
			return false
		}
	}
	return true
}

// numberOf is the person number in a person's value ("" when none yet).
func numberOf(value string) string {
	line, _, ok := strings.Cut(value, "\n")
	if !ok || !strings.HasPrefix(line, "#") || !isNumber(line[1:]) {
		return ""
	}
	return line[1:]
}

// resolve names the people that index members name: a number by its person
// id, a person id (written before numbers) as it is; "" for a number with no
// person id, which only a hand-edited Redis can have. One round trip when
// there are numbers, none otherwise.
func (s *Store) resolve(ctx context.Context, whos []string) ([]string, error) {
	out := make([]string, len(whos))
	cmds := make([]*redis.StringCmd, len(whos))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, who := range whos {
			if !isNumber(who) {
				out[i] = who
				continue
			}
			n, err := strconv.ParseUint(who, 10, 64)
			if err != nil {
				continue // more digits than any counter reaches: nobody
			}
			cmds[i] = p.HGet(ctx, s.numberedPrefix()+strconv.FormatUint(n/numbersPerHash, 10), strconv.FormatUint(n%numbersPerHash, 10))
		}
		return nil
	})
	var present []redis.Cmder
	for _, c := range cmds {
		if c != nil {
			present = append(present, c)
		}
	}
	if err = firstErr(err, present...); err != nil {
		return nil, fmt.Errorf("read person numbers: %w", err)
	}
	for i, c := range cmds {
		if c != nil {
			out[i] = c.Val()
		}
	}
	return out, nil
}
