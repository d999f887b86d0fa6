package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hibiken/asynq"
)

// Batched task types: a TypeBatchItem waits in an Asynq group with the others
// bound for the same call; the server's aggregator turns them into one
// TypeBatch task (AggregateBatch).
const (
	TypeBatchItem = "batch:item"
	TypeBatch     = "batch:run"
)

// Batch kinds.
const (
	// BatchDataCenterAdd adds users to one Bitbucket Data Center group.
	BatchDataCenterAdd = "dc-add"
	// BatchOrgInvite invites (or re-invites) people through the Atlassian
	// organization into one set of groups.
	BatchOrgInvite = "org-invite"
	// BatchOrgAdmin grants groups in a workspace administered in Atlassian
	// Administration: directory members are added, everyone else invited.
	BatchOrgAdmin = "org-admin"
)

// BatchItem is one person waiting for a batched call.
type BatchItem struct {
	Kind      string   `json:"kind"`
	Workspace string   `json:"workspace"`
	Groups    []string `json:"groups"` // Bitbucket group slugs
	PersonID  string   `json:"person_id"`
	// Who is what the call names: a Data Center username or an email.
	Who string `json:"who"`
	// AccountID is the person's Atlassian account id, when known.
	AccountID string `json:"account_id,omitempty"`
	// QueuedAt shows in the dashboard how long the person has been waiting.
	QueuedAt time.Time `json:"queued_at"`
}

// GroupKey is the Asynq group of items that can share one call.
func (it BatchItem) GroupKey() string {
	groups := append([]string(nil), it.Groups...)
	sort.Strings(groups)
	return it.Kind + "|" + it.Workspace + "|" + strings.Join(groups, ",")
}

// Batch is the payload of TypeBatch: items of one group key.
type Batch struct {
	Items []BatchItem `json:"items"`
}

// AggregateBatch is the Asynq GroupAggregator: it joins the items of a group
// into one TypeBatch task.
func AggregateBatch(group string, tasks []*asynq.Task) *asynq.Task {
	var b Batch
	for _, t := range tasks {
		var it BatchItem
		if json.Unmarshal(t.Payload(), &it) == nil {
			b.Items = append(b.Items, it)
		}
	}
	payload, _ := json.Marshal(b)
	return asynq.NewTask(TypeBatch, payload)
}

// DecodeBatch parses a TypeBatch payload.
func DecodeBatch(payload []byte) (Batch, error) {
	var b Batch
	if err := json.Unmarshal(payload, &b); err != nil {
		return b, fmt.Errorf("decode batch: %w", err)
	}
	if len(b.Items) == 0 {
		return b, errors.New("decode batch: no items")
	}
	return b, nil
}

// EnqueueBatchItem puts a person in the group of their call. It sets no task
// id: Asynq frees a grouped task's id only some time after aggregating it, and
// the ledger already keeps a replayed signup from queueing twice (the batch
// handler skips people it has settled).
func (q *Enqueuer) EnqueueBatchItem(ctx context.Context, it BatchItem) error {
	payload, err := json.Marshal(it)
	if err != nil {
		return fmt.Errorf("encode batch item: %w", err)
	}
	_, err = q.client.EnqueueContext(ctx, asynq.NewTask(TypeBatchItem, payload),
		asynq.Group(it.GroupKey()), asynq.Queue(q.opts.Queue), asynq.MaxRetry(q.opts.MaxRetry), asynq.Timeout(q.opts.Timeout))
	if err != nil {
		return fmt.Errorf("queue %s of %s in %s for a batched call: %w", it.Kind, it.PersonID, it.Workspace, err)
	}
	return nil
}
