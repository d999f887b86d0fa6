package app

import (
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
	make  func() redis.UniversalClient
	creds *redisCredentials
}

// MakeRedisClient implements asynq.RedisConnOpt.
func (c redisConnection) MakeRedisClient() any { return c.make() }

// redisClients connects go-redis (ledger, limiter, Asynq) to one node by URL,
// a Sentinel-managed master, or a Cluster, and returns how to make more
// clients of it. The Sentinels' own password needs a restart to change.
func redisClients(r config.Redis, s config.Secrets) (redis.UniversalClient, redisConnection, error) {
	var conn redisConnection
	switch {
	case r.Sentinel != nil:
		st := r.Sentinel
		conn.creds = newRedisCredentials("", s.RedisPassword)
		conn.make = func() redis.UniversalClient {
			return redis.NewFailoverClient(&redis.FailoverOptions{
				MasterName: st.MasterName, SentinelAddrs: st.Addrs, DB: st.DB, CredentialsProvider: conn.creds.provide,
				SentinelPassword: s.RedisSentinelPassword, TLSConfig: tlsConfig(st.TLS),
			})
		}
	case r.Cluster != nil:
		cl := r.Cluster
		conn.creds = newRedisCredentials("", s.RedisPassword)
		conn.make = func() redis.UniversalClient {
			return redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs, CredentialsProvider: conn.creds.provide, TLSConfig: tlsConfig(cl.TLS)})
		}
	default:
		opts, err := redis.ParseURL(r.URL)
		if err != nil {
			return nil, conn, fmt.Errorf("redis.url: %w", err)
		}
		password := opts.Password
		if s.RedisPassword != "" {
			password = s.RedisPassword
		}
		conn.creds = newRedisCredentials(opts.Username, password)
		opts.Username, opts.Password, opts.CredentialsProvider = "", "", conn.creds.provide
		conn.make = func() redis.UniversalClient {
			o := *opts
			return redis.NewClient(&o)
		}
	}
	return conn.make(), conn, nil
}

func tlsConfig(on bool) *tls.Config {
	if !on {
		return nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12}
}
