package app

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/autoinvite/autoinvite/config"
	"github.com/autoinvite/autoinvite/metrics"
)

// ReloadResult says what a reload did.
type ReloadResult struct {
	Changed bool   `json:"changed"`
	Hash    string `json:"hash"`
	// NeedsRestart lists changed settings that take effect only after a restart.
	NeedsRestart []string `json:"needs_restart,omitempty"`
}

// Reload reads the config file again. A valid config is swapped in atomically
// for new tasks (queued tasks keep the config they arrived under); an invalid
// one is refused with its errors and the running config stays. Nothing is
// re-sent by a reload.
func (a *App) Reload() (ReloadResult, error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if a.opts.ConfigPath == "" {
		return ReloadResult{}, fmt.Errorf("reload: the service was started without a config file")
	}
	cfg, err := config.LoadFile(a.opts.ConfigPath, a.opts.Env)
	if err == nil {
		var rt *runtime
		if cfg.Hash == a.current.Load().cfg.Hash {
			a.metrics.Reloads.WithLabelValues(metrics.ReloadUnchanged).Inc()
			a.metrics.ReloadSuccess.Set(1)
			// Compared with the startup config: what a restart would still
			// change is reported until the process restarts.
			return ReloadResult{Hash: cfg.Hash, NeedsRestart: a.cfg.NeedsRestart(cfg)}, nil
		}
		if rt, err = a.buildRuntime(cfg); err == nil {
			a.install(rt)
			restart := a.cfg.NeedsRestart(cfg)
			a.metrics.ConfigLoaded(cfg.Hash, a.now())
			a.metrics.Reloads.WithLabelValues(metrics.ReloadSuccess).Inc()
			ev := a.log.Info()
			if len(restart) > 0 {
				ev = a.log.Warn().Strs("needs_restart", restart)
			}
			ev.Str("config", a.opts.ConfigPath).Str("hash", cfg.Hash).Msg("config reloaded: new rules apply to new signups and re-sends")
			return ReloadResult{Changed: true, Hash: cfg.Hash, NeedsRestart: restart}, nil
		}
	}
	a.metrics.ReloadSuccess.Set(0)
	a.metrics.Reloads.WithLabelValues(metrics.ReloadFailure).Inc()
	a.log.Error().Str("config", a.opts.ConfigPath).Str("running_hash", a.current.Load().cfg.Hash).
		Msg("config reload refused, the running config stays:\n" + err.Error())
	a.notifyReloadFailed(err)
	return ReloadResult{Hash: a.current.Load().cfg.Hash}, err
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
	json.NewEncoder(w).Encode(map[string]any{"status": "ok", "changed": res.Changed, "hash": res.Hash, "needs_restart": res.NeedsRestart})
}

// WatchConfig reloads when the config file changes. It watches the directory:
// editors replace the file rather than write it in place, and a Kubernetes
// ConfigMap volume changes no file of that name at all: it swaps the ..data
// symlink the file's own symlink goes through, so what the path resolves to
// is compared at every event in the directory.
func (a *App) WatchConfig(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch config: %w", err)
	}
	path, err := filepath.Abs(a.opts.ConfigPath)
	if err != nil {
		w.Close()
		return fmt.Errorf("watch config: %w", err)
	}
	if err := w.Add(filepath.Dir(path)); err != nil {
		w.Close()
		return fmt.Errorf("watch config: %w", err)
	}
	a.closers = append(a.closers, func() { w.Close() })
	resolved, _ := filepath.EvalSymlinks(path)
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
				now, _ := filepath.EvalSymlinks(path)
				swapped := now != "" && now != resolved
				if swapped {
					resolved = now
				}
				if swapped || (filepath.Clean(ev.Name) == path && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0) {
					debounce = time.After(250 * time.Millisecond)
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
