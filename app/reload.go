package app

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/integrations/atlassian"
	"github.com/autoinvite/autoinvite/metrics"
)

// ReloadResult says what a reload did.
type ReloadResult struct {
	Changed bool   `json:"changed"`
	Hash    string `json:"hash"`
	// CredentialsChanged: the Atlassian credentials, the webhook secret, the
	// admin credentials or the Redis password (their variables' files)
	// changed, and new calls, deliveries and connections use them.
	CredentialsChanged bool `json:"credentials_changed,omitempty"`
	// NeedsRestart lists changed settings that take effect only after a restart.
	NeedsRestart []string `json:"needs_restart,omitempty"`
}

// Reload reads the config file again, and the secrets a running service can
// change: the Atlassian credentials (a token rotated in its _FILE), the
// webhook secret, the admin credentials and the Redis password. A valid
// config is swapped in atomically for new tasks (queued tasks keep the config
// they arrived under) with the secrets; an invalid one, or secrets that
// cannot be read or are incomplete, are refused with their errors, and the
// running config and secrets stay. Nothing is re-sent by a reload.
func (a *App) Reload() (ReloadResult, error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if a.opts.ConfigPath == "" {
		return ReloadResult{}, fmt.Errorf("reload: the service was started without a config file")
	}
	cfg, err := config.LoadFile(a.opts.ConfigPath, a.opts.Env)
	var next reloadedSecrets
	if err == nil {
		next, err = a.readSecrets()
	}
	if err != nil {
		return a.refuseReload(err)
	}
	running := a.current.Load()
	restore := a.useAtlassianAuth(next)
	othersChanged := next.webhook != a.webhookSecret || next.admin != *a.admin.creds.Load() ||
		next.redisPassword != a.redisPassword()
	credentials := a.credentialsFingerprint(cfg)
	if cfg.Hash == running.cfg.Hash && credentials == running.credentials {
		a.useSecrets(next)
		if othersChanged {
			a.log.Info().Bool("credentials_changed", true).Msg("the webhook secret, the admin credentials or the Redis password changed: they are used from now on")
		}
		a.metrics.Reloads.WithLabelValues(metrics.ReloadUnchanged).Inc()
		a.metrics.ReloadSuccess.Set(1)
		a.tellWatcher()
		// Compared with the startup config: what a restart would still
		// change is reported until the process restarts.
		return ReloadResult{Hash: cfg.Hash, CredentialsChanged: othersChanged, NeedsRestart: a.cfg.NeedsRestart(cfg)}, nil
	}
	rt, err := a.buildRuntime(cfg, credentials)
	if err != nil {
		restore()
		return a.refuseReload(err)
	}
	a.install(rt)
	a.useSecrets(next)
	a.tellWatcher()
	restart := a.cfg.NeedsRestart(cfg)
	rotated := rt.credentials != running.credentials || othersChanged
	a.metrics.ConfigLoaded(cfg.Hash, a.now())
	a.metrics.Reloads.WithLabelValues(metrics.ReloadSuccess).Inc()
	ev := a.log.Info()
	if len(restart) > 0 {
		ev = a.log.Warn().Strs("needs_restart", restart)
	}
	msg := "config reloaded: new rules apply to new signups and re-sends"
	if rotated {
		msg += "; the credentials changed: new calls and deliveries use them"
	}
	ev.Str("config", a.opts.ConfigPath).Str("hash", cfg.Hash).Bool("credentials_changed", rotated).Msg(msg)
	return ReloadResult{Changed: true, Hash: cfg.Hash, CredentialsChanged: rotated, NeedsRestart: restart}, nil
}

// tellWatcher tells the config watcher, if any, that a reload succeeded.
func (a *App) tellWatcher() {
	select {
	case a.reloaded <- struct{}{}:
	default: // already told, or no watcher (nil)
	}
}

// refuseReload records a refused reload: the running config stays.
func (a *App) refuseReload(err error) (ReloadResult, error) {
	a.metrics.ReloadSuccess.Set(0)
	a.metrics.Reloads.WithLabelValues(metrics.ReloadFailure).Inc()
	a.log.Error().Str("config", a.opts.ConfigPath).Str("running_hash", a.current.Load().cfg.Hash).
		Msg("config reload refused, the running config stays:\n" + err.Error())
	a.notifyReloadFailed(err)
	return ReloadResult{Hash: a.current.Load().cfg.Hash}, err
}

// reloadedSecrets are the secrets a reload read, applied with its config or
// not at all. A secret not given through the environment (an embedded app's,
// a test's) is the running one.
type reloadedSecrets struct {
	jiraAuth, bbAuth atlassian.Auth
	webhook          string
	admin            adminCreds
	redisPassword    string
}

// readSecrets reads the secrets a reload applies, each file once. The
// sandbox keeps its Atlassian credentials. A webhook secret given but empty
// is refused: it would accept unsigned deliveries (running without a secret,
// or adding one to a service started without, takes a restart).
func (a *App) readSecrets() (reloadedSecrets, error) {
	next := reloadedSecrets{jiraAuth: a.jiraOpts.Auth, bbAuth: a.bbOpts.Auth, webhook: a.webhookSecret, admin: *a.admin.creds.Load()}
	next.redisPassword = a.redisPassword()
	s, err := config.SecretsFromEnv(a.opts.Env)
	if err != nil {
		return next, fmt.Errorf("the secrets: %w", err)
	}
	given := func(names ...string) bool {
		return slices.ContainsFunc(names, func(n string) bool { return a.opts.Env(n) != "" || a.opts.Env(n+"_FILE") != "" })
	}
	if a.sandbox == nil && s.HasAtlassianCredentials() {
		if next.jiraAuth, next.bbAuth, err = atlassianAuth(s, a.cfg.Jira.Deployment); err != nil {
			return next, err
		}
	}
	if given(config.WebhookSecretEnv) {
		switch {
		case s.WebhookSecret == "":
			return next, fmt.Errorf("the webhook secret (%s or %s_FILE) is empty: deliveries would be accepted unsigned; the running secret stays",
				config.WebhookSecretEnv, config.WebhookSecretEnv)
		case a.webhookSecret == "":
			a.log.Warn().Msg(config.WebhookSecretEnv + " is set now: restart to verify webhooks (the service started without a secret)")
		default:
			next.webhook = s.WebhookSecret
		}
	}
	if given(config.AdminUserEnv, config.AdminPasswordEnv) {
		next.admin = adminCreds{s.AdminUser, s.AdminPassword}
	}
	if a.redisConn != nil && given(config.RedisPasswordEnv) {
		if s.RedisPassword == "" && next.redisPassword != "" {
			return next, fmt.Errorf("the Redis password (%s or %s_FILE) is empty: new connections would not authenticate; the running password stays",
				config.RedisPasswordEnv, config.RedisPasswordEnv)
		}
		next.redisPassword = s.RedisPassword
	}
	return next, nil
}

// useAtlassianAuth makes the Atlassian credentials read the ones new clients
// are built with; restore puts the running ones back.
func (a *App) useAtlassianAuth(next reloadedSecrets) (restore func()) {
	jiraAuth, bbAuth := a.jiraOpts.Auth, a.bbOpts.Auth
	a.jiraOpts.Auth, a.bbOpts.Auth = next.jiraAuth, next.bbAuth
	return func() { a.jiraOpts.Auth, a.bbOpts.Auth = jiraAuth, bbAuth }
}

// useSecrets puts the webhook secret, the admin credentials and the Redis
// password read in force.
func (a *App) useSecrets(next reloadedSecrets) {
	if next.redisPassword != a.redisPassword() {
		a.redisConn.creds.rotate(next.redisPassword)
		// Applied whatever Redis says (the file is the truth, and Redis may
		// learn the password later), but said at once.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := a.redisConn.refused(ctx, next.redisPassword); err != nil {
			a.log.Error().Err(err).Msg("Redis refuses the new password (" + config.RedisPasswordEnv + "): connections opened from now on fail until it accepts it; " +
				"give the Redis user the new password beside the old one first (ACL SETUSER <user> >new)")
		}
	}
	if next.webhook != a.webhookSecret && a.hook != nil {
		a.hook.SetSecret([]byte(next.webhook))
		a.webhookSecret = next.webhook
	}
	a.admin.creds.Store(&next.admin)
}

func (a *App) serveReload(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	res, err := a.Reload()
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]any{"status": "refused", "error": err.Error(), "running_hash": res.Hash})
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"status": "ok", "changed": res.Changed, "hash": res.Hash,
		"credentials_changed": res.CredentialsChanged, "needs_restart": res.NeedsRestart})
}

// WatchConfig reloads when the config file changes, or a file holding a
// secret a reload reads again (a _FILE variable's). It watches their directories:
// editors replace a file rather than write it in place, and a Kubernetes
// ConfigMap or Secret volume changes no file of that name at all: it swaps
// the ..data symlink the file's own symlink goes through, so what each path
// resolves to is compared at every event in the directories.
func (a *App) WatchConfig(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch config: %w", err)
	}
	resolved, dirs := map[string]string{}, map[string]bool{}
	// watch starts watching the files not watched yet (a reload may name new
	// ones: a workspace's token file).
	watch := func() error {
		files, err := a.watchedFiles()
		if err != nil {
			return err
		}
		for _, path := range files {
			if _, ok := resolved[path]; ok {
				continue
			}
			if dir := filepath.Dir(path); !dirs[dir] {
				if err := w.Add(dir); err != nil {
					return err
				}
				dirs[dir] = true
			}
			resolved[path], _ = filepath.EvalSymlinks(path)
		}
		return nil
	}
	if err := watch(); err != nil {
		w.Close()
		return fmt.Errorf("watch config: %w", err)
	}
	reloaded := make(chan struct{}, 1)
	a.reloadMu.Lock()
	a.reloaded = reloaded
	a.reloadMu.Unlock()
	a.closers = append(a.closers, func() { w.Close() })
	go func() {
		var debounce <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				// A save is often several events (truncate, write, rename): settle first.
				// A path that resolves to nothing for now is waited out.
				for path, was := range resolved {
					now, _ := filepath.EvalSymlinks(path)
					swapped := now != "" && now != was
					if swapped {
						resolved[path] = now
					}
					if swapped || (filepath.Clean(ev.Name) == path && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0) {
						debounce = time.After(250 * time.Millisecond)
					}
				}
			case <-debounce:
				a.Reload()
			case <-reloaded:
				if err := watch(); err != nil {
					a.log.Warn().Err(err).Msg("config watcher: a file the reloaded config names is not watched")
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				a.log.Warn().Err(err).Msg("config watcher")
			}
		}
	}()
	return nil
}

// watchedFiles are the config file and the files the secrets a reload reads
// again come from (their _FILE variables; the running config's workspaces'
// too), as absolute paths.
func (a *App) watchedFiles() ([]string, error) {
	names := append(config.AtlassianSecretNames(), config.WebhookSecretEnv, config.AdminUserEnv, config.AdminPasswordEnv, config.RedisPasswordEnv)
	for _, ws := range a.current.Load().cfg.Workspaces {
		names = append(names, ws.Bitbucket.TokenEnv, orgKeyEnv(ws))
	}
	files := []string{a.opts.ConfigPath}
	for _, name := range names {
		if name == "" || a.opts.Env(name) != "" {
			continue
		}
		if path := a.opts.Env(name + "_FILE"); path != "" && !slices.Contains(files, path) {
			files = append(files, path)
		}
	}
	for i, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, err
		}
		files[i] = abs
	}
	return files, nil
}

// adminAuth guards the dashboard and the reload endpoint with HTTP basic
// auth. A reload may swap its credentials.
type adminAuth struct{ creds atomic.Pointer[adminCreds] }

type adminCreds struct{ user, password string }

func newAdminAuth(user, password string) *adminAuth {
	g := &adminAuth{}
	g.creds.Store(&adminCreds{user, password})
	return g
}

func (g *adminAuth) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := g.creds.Load()
		if c.user == "" || c.password == "" {
			http.Error(w, "admin endpoints are disabled: set AUTOINVITE_ADMIN_USER and AUTOINVITE_ADMIN_PASSWORD to enable the dashboard and /-/reload", http.StatusForbidden)
			return
		}
		u, p, ok := r.BasicAuth()
		userOK := subtle.ConstantTimeCompare([]byte(u), []byte(c.user)) == 1
		passOK := subtle.ConstantTimeCompare([]byte(p), []byte(c.password)) == 1
		if !ok || !userOK || !passOK {
			w.Header().Set("WWW-Authenticate", `Basic realm="autoinvite", charset="UTF-8"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ConfigHash returns the hash of the config in force.
func (a *App) ConfigHash() string { return a.current.Load().cfg.Hash }

// redisPassword is the Redis password in force ("" with the embedded Redis).
func (a *App) redisPassword() string {
	if a.redisConn == nil {
		return ""
	}
	return a.redisConn.creds.Password()
}
