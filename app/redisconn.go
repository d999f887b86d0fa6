package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/autoinvite/autoinvite/config"
)

// redisCredentials are what new Redis connections authenticate with. A
// reload may rotate the password: connections already open stay
// authenticated (Redis does not drop them when a password changes), new ones
// (pool growth, a reconnect, a failover) use the new one.
type redisCredentials struct {
	user     string
	password atomic.Pointer[string]
}

func newRedisCredentials(user, password string) *redisCredentials {
	c := &redisCredentials{user: user}
	c.password.Store(&password)
	return c
}

func (c *redisCredentials) provide() (string, string) { return c.user, *c.password.Load() }

// Password is the password in force.
func (c *redisCredentials) Password() string { return *c.password.Load() }

// rotate puts a new password in force for new connections.
func (c *redisCredentials) rotate(password string) { c.password.Store(&password) }

// redisConnection makes go-redis clients of the configured Redis that share
// one set of credentials. It is the dashboard's asynq.RedisConnOpt, so the
// dashboard's own clients follow a rotation too.
type redisConnection struct {
	creds *redisCredentials
	// client makes a client authenticating with what provide returns.
	client func(provide func() (string, string)) redis.UniversalClient
}

// MakeRedisClient implements asynq.RedisConnOpt.
func (c *redisConnection) MakeRedisClient() any { return c.client(c.creds.provide) }

// refused returns Redis's refusal of password (WRONGPASS, NOAUTH), asked on
// a connection of its own; nil when Redis takes it or cannot tell.
func (c *redisConnection) refused(ctx context.Context, password string) error {
	rdb := c.client(func() (string, string) { return c.creds.user, password })
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); refusedCredentials(err) {
		return err
	}
	return nil
}

// redisClients connects go-redis (ledger, limiter, Asynq) to one node by URL,
// a Sentinel-managed master, or a Cluster, and returns how to make more
// clients of it. The Sentinels' own password needs a restart to change.
func redisClients(r config.Redis, s config.Secrets) (redis.UniversalClient, *redisConnection, error) {
	conn := &redisConnection{creds: newRedisCredentials("", s.RedisPassword)}
	switch {
	case r.Sentinel != nil:
		st := r.Sentinel
		conn.client = func(provide func() (string, string)) redis.UniversalClient {
			return redis.NewFailoverClient(&redis.FailoverOptions{
				MasterName: st.MasterName, SentinelAddrs: st.Addrs, DB: st.DB, CredentialsProvider: provide,
				SentinelPassword: s.RedisSentinelPassword, TLSConfig: tlsConfig(st.TLS),
			})
		}
	case r.Cluster != nil:
		cl := r.Cluster
		conn.client = func(provide func() (string, string)) redis.UniversalClient {
			return redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs, CredentialsProvider: provide, TLSConfig: tlsConfig(cl.TLS)})
		}
	default:
		opts, err := redis.ParseURL(r.URL)
		if err != nil {
			return nil, nil, fmt.Errorf("redis.url: %w", err)
		}
		password := opts.Password
		if s.RedisPassword != "" {
			password = s.RedisPassword
		}
		conn.creds = newRedisCredentials(opts.Username, password)
		opts.Username, opts.Password = "", ""
		conn.client = func(provide func() (string, string)) redis.UniversalClient {
			o := *opts
			o.CredentialsProvider = provide
			return redis.NewClient(&o)
		}
	}
	return conn.client(conn.creds.provide), conn, nil
}

func tlsConfig(on bool) *tls.Config {
	if !on {
		return nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12}
}
