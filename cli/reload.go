package cli

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"sync"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hashicorp/go-hclog"
	"github.com/hsmkms/hsmkms/service/server"
	"golang.org/x/sys/unix"
)

// reloader is what serve does on SIGHUP: it re-reads the config file and
// applies what can change while serving (the log level, the listeners'
// TLS key pairs), loads the key pairs anew from their files (renewed
// certificates), and reopens the audit file (log rotation). Settings that
// take effect only at a start are left as they are, with a warning.
type reloader struct {
	log      hclog.Logger // the server's: SetLevel reaches its sub-loggers
	settings *serveSettings
	trail    *auditTrail
	srv      *server.Server
	// notify tells the service manager (systemd) a state.
	notify func(state string)
}

// reloadingState is what a reload tells systemd first: RELOADING=1 with the
// CLOCK_MONOTONIC time it began, which systemd 253 and later require with it
// (sd_notify(3)) and earlier versions ignore.
func reloadingState() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return daemon.SdNotifyReloading
	}
	return daemon.SdNotifyReloading + "\nMONOTONIC_USEC=" + strconv.FormatInt(ts.Nano()/1000, 10)
}

// tlsPair names the settings of a listener's key pair.
type tlsPair struct{ listener, cert, key string }

// tlsPairs are the listeners' key pairs.
func tlsPairs() []tlsPair {
	return []tlsPair{{"kms", "tls-cert", "tls-key"}, {"xks", "xks-tls-cert", "xks-tls-key"}}
}

// run reloads on each signal from hup until stop, which waits for a
// reload in progress to end.
func (r *reloader) run(hup <-chan os.Signal) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-hup:
				r.reload()
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}

// reload is one SIGHUP. Nothing in it stops the server: a file that is not
// valid and a key pair that does not load are logged, and what was in
// effect stays.
func (r *reloader) reload() {
	r.notify(reloadingState())
	defer r.notify(daemon.SdNotifyReady)
	log := r.log.Named("reload")
	s := r.settings
	var changes map[string]any
	valid := true
	if s.path != "" {
		var err error
		if changes, err = s.reread(); err != nil {
			log.Error("the config file is not valid: nothing in it is applied", "error", err)
			changes, valid = nil, false
		}
	}
	var applied, restart []string
	// The log level first, so that the rest of the reload logs at the
	// new one.
	if lvl, ok := changes["log-level"]; ok {
		r.log.SetLevel(hclog.LevelFromString(lvl.(string)))
		s.current["log-level"] = lvl
		applied = append(applied, "log-level")
	}
	if s.path != "" && valid {
		log.Debug("read the config file", "config", s.path, "changes", slices.Sorted(maps.Keys(changes)))
	}
	for _, p := range tlsPairs() {
		switch done, err := r.reloadPair(p, changes); {
		case err != nil:
			log.Error("keeping the TLS key pair in use", "listener", p.listener, "error", err)
		case done == pairNeedsRestart:
			restart = append(restart, p.cert, p.key)
		case done == pairLoaded:
			for _, k := range []string{p.cert, p.key} {
				if _, changed := changes[k]; changed {
					applied = append(applied, k)
				}
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(changes)) {
		if k == "log-level" || isTLSSetting(k) {
			continue
		}
		restart = append(restart, k)
		log.Warn("the config file changes a setting that takes effect only at a restart: still serving with the one in effect", "key", k)
	}
	if err := r.trail.reopen(); err != nil {
		log.Error("could not reopen the audit log: still writing the old one", "path", r.trail.path, "error", err)
	}
	if !valid {
		log.Info("reloaded the TLS key pairs and the audit log, and nothing from the config file", "config", s.path)
		return
	}
	slices.Sort(applied)
	slices.Sort(restart)
	log.Info("reloaded", "config", s.path, "applied", applied, "need_restart", restart)
}

// pairReload is what reloadPair did.
type pairReload int

const (
	pairNone         pairReload = iota // the listener has no TLS, and the file gives it none
	pairLoaded                         // the key pair was loaded anew
	pairNeedsRestart                   // the file turns TLS on or off
)

// reloadPair loads a listener's key pair anew, from the files the config
// file now names if it changes them. Turning TLS on or off is for a
// restart: that is logged, and nothing changes.
func (r *reloader) reloadPair(p tlsPair, changes map[string]any) (pairReload, error) {
	s := r.settings
	cur := server.TLSFiles{Cert: s.current[p.cert].(string), Key: s.current[p.key].(string)}
	next := cur
	if v, ok := changes[p.cert]; ok {
		next.Cert = v.(string)
	}
	if v, ok := changes[p.key]; ok {
		next.Key = v.(string)
	}
	switch {
	case cur.Cert == "" && next == cur:
		return pairNone, nil
	case cur.Cert == "" || (next.Cert == "" && next.Key == ""):
		r.log.Named("reload").Warn("the config file turns TLS on or off, which takes effect only at a restart: still serving as before",
			"listener", p.listener, "keys", []string{p.cert, p.key})
		return pairNeedsRestart, nil
	case next.Cert == "" || next.Key == "":
		return pairNone, fmt.Errorf("the config file gives one of %s and %s without the other", p.cert, p.key)
	}
	reload := r.srv.ReloadTLS
	if p.listener == "xks" {
		reload = r.srv.ReloadXKSTLS
	}
	if err := reload(next); err != nil {
		return pairNone, err
	}
	s.current[p.cert], s.current[p.key] = next.Cert, next.Key
	return pairLoaded, nil
}

func isTLSSetting(key string) bool {
	for _, p := range tlsPairs() {
		if key == p.cert || key == p.key {
			return true
		}
	}
	return false
}
