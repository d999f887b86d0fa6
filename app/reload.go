package app

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/metrics"
)

// ReloadResult says what a reload did.
type ReloadResult struct {
	Changed bool   `json:"changed"`
	Hash    string `json:"hash"`
	// CredentialsChanged: the Atlassian credentials or the webhook secret
	// (their variables' files) changed, and new calls and deliveries use them.
	CredentialsChanged bool `json:"credentials_changed,omitempty"`
	// NeedsRestart lists changed settings that take effect only after a restart.
	NeedsRestart []string `json:"needs_restart,omitempty"`
}

// Reload reads the config file again, the Atlassian credentials (a token
// rotated in its _FILE) and the webhook secret. A valid config is swapped in atomically for new
// tasks (queued tasks keep the config they arrived under); an invalid one,
// or credentials that cannot be read or are incomplete, are refused with
// their errors and the running config and credentials stay. Nothing is
// re-sent by a reload.
func (a *App) Reload() (ReloadResult, error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if a.opts.ConfigPath == "" {
		return ReloadResult{}, fmt.Errorf("reload: the service was started without a config file")
	}
	cfg, err := config.LoadFile(a.opts.ConfigPath, a.opts.Env)
	restore := func() {}
	webhook := a.webhookSecret
	if err == nil {
		restore, err = a.reloadCredentials()
	}
	if err == nil {
		webhook, err = a.readWebhookSecret()
	}
	if err == nil {
		var rt *runtime
		running := a.current.Load()
		webhookChanged := webhook != a.webhookSecret
		if cfg.Hash == running.cfg.Hash && a.credentialsFingerprint(cfg) == running.credentials {
			a.useWebhookSecret(webhook)
			if webhookChanged {
				a.log.Info().Bool("credentials_changed", true).Msg("the webhook secret changed: deliveries are verified with the new one")
			}
			a.metrics.Reloads.WithLabelValues(metrics.ReloadUnchanged).Inc()
			a.metrics.ReloadSuccess.Set(1)
			// Compared with the startup config: what a restart would still
			// change is reported until the process restarts.
			return ReloadResult{Hash: cfg.Hash, CredentialsChanged: webhookChanged, NeedsRestart: a.cfg.NeedsRestart(cfg)}, nil
		}
		if rt, err = a.buildRuntime(cfg); err == nil {
			a.install(rt)
			a.useWebhookSecret(webhook)
			restart := a.cfg.NeedsRestart(cfg)
			rotated := rt.credentials != running.credentials || webhookChanged
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
		restore()
	}
	a.metrics.ReloadSuccess.Set(0)
	a.metrics.Reloads.WithLabelValues(metrics.ReloadFailure).Inc()
	a.log.Error().Str("config", a.opts.ConfigPath).Str("running_hash", a.current.Load().cfg.Hash).
		Msg("config reload refused, the running config stays:\n" + err.Error())
	a.notifyReloadFailed(err)
	return ReloadResult{Hash: a.current.Load().cfg.Hash}, err
}

// webhookSecretName is the variable of the Jira webhook secret.
const webhookSecretName = "AUTOINVITE_JIRA_WEBHOOK_SECRET"

// readWebhookSecret reads the Jira webhook secret again: one, or several
// lines during a rotation (intake.Options.Secret). One that was not given
// through the environment stays; one given but empty is refused, as it would
// accept unsigned deliveries (running without a secret takes a restart).
func (a *App) readWebhookSecret() (string, error) {
	if a.opts.Env(webhookSecretName) == "" && a.opts.Env(webhookSecretName+"_FILE") == "" {
		return a.webhookSecret, nil
	}
	v, err := config.Secret(a.opts.Env, webhookSecretName)
	if err != nil {
		return "", fmt.Errorf("the webhook secret: %w", err)
	}
	if v == "" {
		return "", fmt.Errorf("the webhook secret (%s or %s_FILE) is empty: deliveries would be accepted unsigned; the running secret stays", webhookSecretName, webhookSecretName)
	}
	if a.webhookSecret == "" {
		a.log.Warn().Msg(webhookSecretName + " is set now: restart to verify webhooks (the service started without a secret)")
		return "", nil
	}
	return v, nil
}

// useWebhookSecret makes secret the one deliveries are verified with.
func (a *App) useWebhookSecret(secret string) {
	if secret == a.webhookSecret || a.hook == nil {
		return
	}
	a.hook.SetSecret([]byte(secret))
	a.webhookSecret = secret
}

// reloadCredentials reads the Jira and Bitbucket credentials again and makes
// them the ones new clients are built with; restore puts the running ones
// back. Credentials that were not given through the environment (an embedded
// app's) and the sandbox's stay as they are.
func (a *App) reloadCredentials() (restore func(), err error) {
	restore = func() {}
	if a.sandbox != nil {
		return restore, nil
	}
	s, err := config.SecretsFromEnv(a.opts.Env)
	if err != nil {
		return restore, fmt.Errorf("the Atlassian credentials: %w", err)
	}
	if !s.HasAtlassianCredentials() {
		return restore, nil
	}
	jiraAuth, bbAuth, err := atlassianAuth(s, a.cfg.Jira.Deployment)
	if err != nil {
		return restore, err
	}
	oldJira, oldBB := a.jiraOpts.Auth, a.bbOpts.Auth
	a.jiraOpts.Auth, a.bbOpts.Auth = jiraAuth, bbAuth
	return func() { a.jiraOpts.Auth, a.bbOpts.Auth = oldJira, oldBB }, nil
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

// WatchConfig reloads when the config file changes, or a file holding an
// Atlassian credential or the webhook secret (a _FILE variable's). It watches their directories:
// editors replace a file rather than write it in place, and a Kubernetes
// ConfigMap or Secret volume changes no file of that name at all: it swaps
// the ..data symlink the file's own symlink goes through, so what each path
// resolves to is compared at every event in the directories.
func (a *App) WatchConfig(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch config: %w", err)
	}
	files, err := a.watchedFiles()
	if err != nil {
		w.Close()
		return fmt.Errorf("watch config: %w", err)
	}
	resolved, dirs := map[string]string{}, map[string]bool{}
	for _, path := range files {
		if dir := filepath.Dir(path); !dirs[dir] {
			if err := w.Add(dir); err != nil {
				w.Close()
				return fmt.Errorf("watch config: %w", err)
			}
			dirs[dir] = true
		}
		resolved[path], _ = filepath.EvalSymlinks(path)
	}
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

// watchedFiles are the config file and the files the Atlassian credentials
// and the webhook secret are read from (their _FILE variables; the workspaces' of the running
// config too), as absolute paths.
func (a *App) watchedFiles() ([]string, error) {
	names := append(config.AtlassianSecretNames(), webhookSecretName)
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

// adminAuth guards the dashboard and the reload endpoint with HTTP basic auth.
type adminAuth struct{ user, password string }

func (g adminAuth) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.user == "" || g.password == "" {
			http.Error(w, "admin endpoints are disabled: set AUTOINVITE_ADMIN_USER and AUTOINVITE_ADMIN_PASSWORD to enable the dashboard and /-/reload", http.StatusForbidden)
			return
		}
		u, p, ok := r.BasicAuth()
		userOK := subtle.ConstantTimeCompare([]byte(u), []byte(g.user)) == 1
		passOK := subtle.ConstantTimeCompare([]byte(p), []byte(g.password)) == 1
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
