package redistest

import (
	"context"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// WaitQueueIdle waits until queue has nothing pending, running, scheduled,
// retrying or waiting in a batch, and reports whether it got there in time.
// Tasks being aggregated sit in an aggregation set, counted nowhere in Asynq's
// queue info, until their batch task is enqueued; the two reads are not
// atomic, so idle must hold for a moment to count.
func WaitQueueIdle(rdb redis.UniversalClient, queue string, limit time.Duration) (last *asynq.QueueInfo, idle bool) {
	ins := asynq.NewInspectorFromRedisClient(rdb)
	deadline := time.Now().Add(limit)
	var idleSince time.Time
	for time.Now().Before(deadline) {
		info, err := ins.GetQueueInfo(queue)
		sets, _ := rdb.ZCard(context.Background(), "asynq:{"+queue+"}:aggregation_sets").Result()
		switch {
		case err != nil || info.Pending+info.Active+info.Scheduled+info.Retry+info.Aggregating+int(sets) > 0:
			idleSince, last = time.Time{}, info
		case idleSince.IsZero():
			idleSince = time.Now()
		case time.Since(idleSince) >= 60*time.Millisecond:
			return info, true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return last, false
}
