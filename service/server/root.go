package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/policy"
)

// rootStatements allow everything.
var rootStatements = []policy.Statement{{Effect: policy.EffectAllow, Actions: []string{"kms:*"}, Resources: []string{"*"}}}

// ensureRoot makes sure the root principal exists: from the configured
// credentials, or, on a first start without them, freshly generated and
// written once to DataDir/root-credentials (mode 0600).
func (s *Server) ensureRoot(ctx context.Context) error {
	id, secret := s.cfg.RootAccessKeyID, s.cfg.RootSecret
	if (id == "") != (secret == "") {
		return errors.New("server: give both HSMKMS_ROOT_ACCESS_KEY_ID and HSMKMS_ROOT_SECRET_ACCESS_KEY, or neither")
	}
	if id != "" {
		created, err := s.svc.EnsurePrincipal(ctx, id, secret, "root", rootStatements)
		if created {
			s.log.Info("created the root principal from the environment", "access_key_id", id)
		}
		return err
	}
	first, err := s.svc.NoPrincipals(ctx)
	if err != nil || !first {
		return err
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
	if _, err := s.svc.EnsurePrincipal(ctx, id, secret, "root", rootStatements); err != nil {
		os.Remove(path)
		return err
	}
	s.RootCredentials = path
	s.log.Info("created the root principal; its credentials are in "+path, "access_key_id", id)
	return nil
}
