// Package transient tells failures that a later try may not have (a 429, a
// timeout, a Redis failover in progress) from those it will have again.
package transient

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/autoinvite/autoinvite/integrations/atlassian"
)

// redisTemporary are the Redis error prefixes of a server that is failing
// over, starting up or briefly out of memory: the same command succeeds later.
var redisTemporary = []string{"READONLY", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "OOM", "BUSY", "NOREPLICAS", "MOVED", "ASK"}

// Is reports whether trying again later may succeed.
func Is(err error) bool {
	if err == nil {
		return false
	}
	if apiErr, ok := atlassian.AsAPIError(err); ok {
		return apiErr.Temporary()
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		for _, p := range redisTemporary {
			if strings.HasPrefix(msg, p+" ") || msg == p {
				return true
			}
		}
		return false
	}
	var netErr net.Error
	switch {
	case errors.As(err, &netErr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrClosed),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return true
	}
	return false
}
