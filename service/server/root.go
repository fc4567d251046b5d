package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/policy"
)

// rootStatements allow everything: every key operation and every
// administrative one. They are given back to the root at every start.
func rootStatements() []policy.Statement {
	return []policy.Statement{{Effect: policy.EffectAllow,
		Actions: []string{policy.KMSPrefix + "*", policy.AdminPrefix + "*"}, Resources: []string{policy.AnyResource}}}
}

// ensureRoot makes sure the root principal exists with the root's rights.
// Configured credentials are authoritative at every start: a changed secret
// replaces the stored one, and a changed access key ID replaces the root
// principal (the service audits and logs both). Without them, a first start
// generates credentials and writes them once to DataDir/root-credentials
// (mode 0600); a later one keeps the root it finds.
// rootWait bounds how long a start waits on a token or store that answers
// "try again later" while it makes sure of the root principal: replicas
// started at the same instant wait for the one making the internal key,
// and a SoftHSM2 process that read the token file while another rewrote
// it recovers in milliseconds (measured in TestReplicas).
const rootWait = 30 * time.Second

// ensureRootWaiting is EnsureRoot, tried again while it fails with
// DependencyTimeoutException, for up to rootWait.
func (s *Server) ensureRootWaiting(ctx context.Context, id, secret string) (service.RootChange, error) {
	deadline := time.Now().Add(rootWait)
	for pause := 100 * time.Millisecond; ; pause = min(2*pause, 2*time.Second) {
		ch, err := s.svc.EnsureRoot(ctx, id, secret, rootStatements())
		if !errors.Is(err, service.ErrDependency) || time.Now().Add(pause).After(deadline) {
			return ch, err
		}
		s.log.Info("the root principal must wait; trying again", "in", pause, "error", err)
		select {
		case <-ctx.Done():
			return ch, err
		case <-time.After(pause):
		}
	}
}

func (s *Server) ensureRoot(ctx context.Context) error {
	id, secret := s.cfg.RootAccessKeyID, s.cfg.RootSecret
	if (id == "") != (secret == "") {
		return errors.New("server: give both HSMKMS_ROOT_ACCESS_KEY_ID and HSMKMS_ROOT_SECRET_ACCESS_KEY, or neither")
	}
	if id != "" {
		ch, err := s.ensureRootWaiting(ctx, id, secret)
		if err != nil {
			s.logCause("the root principal from the environment", err)
			return fmt.Errorf("server: the root principal from the environment: %w", err)
		}
		if ch.Created {
			s.log.Info("created the root principal from the environment", "access_key_id", id)
		}
		return nil
	}
	first, err := s.svc.NoPrincipals(ctx)
	if err != nil {
		return err
	}
	if !first {
		return s.restoreRoot(ctx)
	}
	id, secret, err = service.NewAccessKey()
	if err != nil {
		return err
	}
	path := filepath.Join(s.cfg.DataDir, RootCredentialsFile)
	body := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", id, secret)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("server: writing root credentials: %w", err)
	}
	if _, err := f.WriteString(body); err != nil {
		f.Close()
		return fmt.Errorf("server: writing root credentials: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("server: writing root credentials: %w", err)
	}
	if _, err := s.ensureRootWaiting(ctx, id, secret); err != nil {
		os.Remove(path)
		return err
	}
	s.RootCredentials = path
	s.log.Info("created the root principal; its credentials are in "+path, "access_key_id", id)
	return nil
}

// restoreRoot gives the existing root principal back the root's rights.
func (s *Server) restoreRoot(ctx context.Context) error {
	id, err := s.svc.RestoreRoot(ctx, rootStatements())
	if err != nil {
		return fmt.Errorf("server: the root principal: %w", err)
	}
	if id == "" {
		s.log.Warn("there is no root principal: set HSMKMS_ROOT_ACCESS_KEY_ID and HSMKMS_ROOT_SECRET_ACCESS_KEY to make one")
	}
	return nil
}

// logCause logs the cause behind a service error, which its message (what
// a client would see) leaves out. Causes are store and token errors: they
// hold no secret.
func (s *Server) logCause(what string, err error) {
	var se *service.Error
	if errors.As(err, &se) && se.Err != nil {
		s.log.Error(what, "cause", se.Err.Error())
	}
}
