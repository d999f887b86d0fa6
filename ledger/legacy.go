package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// legacyPutScript is the old format's write of an entry and its indexes.
// KEYS: entry, person's workspaces, workspace's people, workspaces, email
// key, due index, check index. ARGV: entry JSON, workspace, person, email
// ("" = none), due score ("" = none), check score ("" = none), index member.
var legacyPutScript = redis.NewScript(`
redis.call("SET", KEYS[1], ARGV[1])
redis.call("SADD", KEYS[2], ARGV[2])
redis.call("SADD", KEYS[3], ARGV[3])
redis.call("SADD", KEYS[4], ARGV[2])
if ARGV[4] ~= "" then redis.call("SET", KEYS[5], ARGV[3]) end
if ARGV[5] ~= "" then redis.call("ZADD", KEYS[6], ARGV[5], ARGV[7]) end
if ARGV[6] ~= "" then redis.call("ZADD", KEYS[7], ARGV[6], ARGV[7]) end
return 1`)

// PutLegacy writes e as the ledger stored entries before the compact format
// (its JSON with history under its own key, a set of the person's
// workspaces, one key per email), with no audit records: for tests and
// benchmarks of reading and migrating old ledgers.
func (s *Store) PutLegacy(ctx context.Context, e *Entry, history []Event) error {
	old := legacyEntry{Entry: *e, History: history}
	old.Decision = "" // the old format had neither
	old.Invitations = make([]Invitation, len(e.Invitations))
	for i, inv := range e.Invitations {
		inv.FirstSentAt = time.Time{}
		old.Invitations[i] = inv
	}
	raw, err := json.Marshal(&old)
	if err != nil {
		return fmt.Errorf("encode ledger %s/%s (old format): %w", e.Workspace, e.PersonID, err)
	}
	due, check := "", ""
	if next := e.nextExpiry(); !next.IsZero() {
		due = strconv.FormatInt(next.Unix(), 10)
	}
	if e.AnyPendingInvitation() && e.AccountID != "" && !e.NextCheckAt.IsZero() {
		check = strconv.FormatInt(e.NextCheckAt.Unix(), 10)
	}
	keys := []string{s.entryKey(e.Workspace, e.PersonID), s.personKey(e.PersonID), s.workspaceKey(e.Workspace),
		s.workspacesKey(), s.emailKey(e.Email), s.DueKey(), s.CheckKey()}
	err = legacyPutScript.Run(ctx, s.rdb, keys, raw, e.Workspace, e.PersonID, strings.ToLower(e.Email), due, check,
		dueMember(e.Workspace, e.PersonID)).Err()
	if err != nil {
		return fmt.Errorf("write ledger %s/%s (old format): %w", e.Workspace, e.PersonID, err)
	}
	return nil
}
