package service

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/policy"
	"github.com/hsmkms/hsmkms/service/store"
	"github.com/hsmkms/hsmkms/service/store/bolt"
	"github.com/hsmkms/hsmkms/softhsm"
)

// onToken is a Service on the token labelled label and the bolt store in
// dir, with the token opened alone: the process has one PKCS#11 module, so
// the caller closes it before opening another.
type onToken struct {
	svc *Service
	tok *hsm.Token
	st  store.Store
}

func openOnToken(t *testing.T, label, dir string) *onToken {
	t.Helper()
	tok, err := hsm.Open(t.Context(), hsm.Config{ModulePath: env.ModulePath, TokenLabel: label,
		PIN: hsm.NewPIN(softhsm.TestPIN)})
	if err != nil {
		t.Fatalf("hsm.Open(%q): %v", label, err)
	}
	st, err := bolt.Open(filepath.Join(dir, "hsmkms.db"))
	if err != nil {
		tok.Close()
		t.Fatalf("bolt.Open: %v", err)
	}
	svc, err := New(Config{Store: st, HSM: tok})
	if err != nil {
		st.Close()
		tok.Close()
		t.Fatal(err)
	}
	o := &onToken{svc: svc, tok: tok, st: st}
	t.Cleanup(o.close)
	return o
}

// close is safe to call twice: the Cleanup calls it again.
func (o *onToken) close() {
	o.svc.Close()
	_ = o.st.Close()
	_ = o.tok.Close()
}

// storedSecrets returns the internal key's setting and the principal's
// record as stored, to tell whether anything changed them.
func storedSecrets(t *testing.T, o *onToken, id string) (setting []byte, p store.Principal) {
	t.Helper()
	err := o.st.View(t.Context(), func(tx store.Tx) (err error) {
		if setting, err = tx.Setting(internalKeySetting); err != nil {
			return err
		}
		p, err = tx.Principal(id)
		return err
	})
	if err != nil {
		t.Fatalf("reading the store: %v", err)
	}
	return setting, p
}

// TestInternalKeyOnAnotherToken: a store whose internal key is ready,
// opened on another token (a restore onto the wrong HSM, a wrong
// --token-label), fails with ErrInternalKeyMissing naming the key and the
// token, at start-up (CheckInternalKey) and at the first authentication
// alike, rather than making a new internal key that would leave every
// principal's secret unreadable. Neither the store nor token B is changed:
// back on token A the principal still authenticates.
func TestInternalKeyOnAnotherToken(t *testing.T) {
	tokA := env.AddTestToken(t, "internal-a")
	tokB := env.AddTestToken(t, "internal-b")
	dir := t.TempDir()

	a := openOnToken(t, tokA.Label, dir)
	made, err := a.svc.CreatePrincipal(systemContext(t.Context()), CreatePrincipalInput{Name: "app",
		Statements: []policy.Statement{{Effect: "Allow", Actions: []string{"kms:*"}, Resources: []string{"*"}}}})
	if err != nil {
		t.Fatalf("CreatePrincipal on token A: %v", err)
	}
	rec, err := a.svc.internalKeyRecord(t.Context())
	if err != nil || !rec.Ready {
		t.Fatalf("internal key after CreatePrincipal: %+v, %v; want ready", rec, err)
	}
	settingBefore, principalBefore := storedSecrets(t, a, made.AccessKeyId)
	a.close()

	for _, tc := range []struct {
		name string
		use  func(ctx context.Context, s *Service) error
	}{
		{"start-up check", func(ctx context.Context, s *Service) error { return s.CheckInternalKey(ctx) }},
		{"first authentication", func(ctx context.Context, s *Service) error {
			_, err := s.Credentials(ctx, made.AccessKeyId)
			return err
		}},
		{"new principal", func(ctx context.Context, s *Service) error {
			_, err := s.CreatePrincipal(systemContext(ctx), CreatePrincipalInput{Name: "other"})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := openOnToken(t, tokB.Label, dir)
			defer b.close()
			err := tc.use(t.Context(), b.svc)
			if !errors.Is(err, ErrInternalKeyMissing) {
				t.Fatalf("on token B: %v, want ErrInternalKeyMissing", err)
			}
			if CodeOf(err) != CodeInternal {
				t.Errorf("on token B: code %s, want %s", CodeOf(err), CodeInternal)
			}
			msg := MessageOf(err)
			for _, want := range []string{rec.ID.String(), `"` + tokB.Label + `"`, "another token"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q does not name %q", msg, want)
				}
			}
			if strings.Contains(msg, made.SecretAccessKey) {
				t.Error("the message holds the principal's secret")
			}
			if has, err := b.tok.HasKey(t.Context(), rec.ID); err != nil || has {
				t.Fatalf("token B has the internal key's CKA_ID: %v, %v; want none made", has, err)
			}
			setting, p := storedSecrets(t, b, made.AccessKeyId)
			if !bytes.Equal(setting, settingBefore) || !bytes.Equal(p.SealedSecret, principalBefore.SealedSecret) {
				t.Fatalf("the store changed on token B: setting %s, want %s", setting, settingBefore)
			}
		})
	}

	a = openOnToken(t, tokA.Label, dir)
	creds, err := a.svc.Credentials(t.Context(), made.AccessKeyId)
	if err != nil || creds.Secret != made.SecretAccessKey {
		t.Fatalf("back on token A: Credentials = %v; want the principal's secret", err)
	}
}

// TestInternalKeyMadeUnlessReady: with no record, or one still being made
// (its maker crashed before or after making the object), the internal key
// is made or completed and marked ready; only a ready key is never made
// again. CheckInternalKey passes unless a ready key is missing, and makes
// nothing itself.
func TestInternalKeyMadeUnlessReady(t *testing.T) {
	for _, tc := range []struct {
		name string
		// rec is the stored record, nil for none; object whether the
		// token has its object beforehand.
		rec     *internalKeyRecord
		object  bool
		wantErr error
	}{
		{name: "no record"},
		{name: "claimed, crashed before the object", rec: &internalKeyRecord{Until: time.Now().Add(-time.Second)}},
		{name: "claimed, crashed after the object", rec: &internalKeyRecord{Until: time.Now().Add(-time.Second)}, object: true},
		{name: "ready", rec: &internalKeyRecord{Ready: true}, object: true},
		{name: "ready, object missing", rec: &internalKeyRecord{Ready: true}, wantErr: ErrInternalKeyMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "")
			ctx := t.Context()
			var id hsm.ObjectID
			if tc.rec != nil {
				var err error
				if id, err = hsm.NewObjectID(); err != nil {
					t.Fatal(err)
				}
				rec := *tc.rec
				rec.ID, rec.Owner = id, "dead-replica"
				if err := f.svc.store.Update(ctx, func(tx store.Tx) error { return putInternalKey(tx, rec) }); err != nil {
					t.Fatal(err)
				}
				if tc.object {
					if err := f.tok.CreateMasterKey(ctx, id, internalKeyLabel); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := f.svc.CheckInternalKey(ctx); !errors.Is(err, tc.wantErr) {
				t.Fatalf("CheckInternalKey: %v, want %v", err, tc.wantErr)
			}
			if tc.rec != nil && !tc.rec.Ready {
				if has, _ := f.tok.HasKey(ctx, id); has != tc.object {
					t.Fatalf("CheckInternalKey changed the token: object %v, want %v", has, tc.object)
				}
			}
			got, err := f.svc.internalKey(ctx)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("internalKey: %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil {
				if has, _ := f.tok.HasKey(ctx, id); has {
					t.Fatal("internalKey made a ready internal key again")
				}
				return
			}
			if tc.rec != nil && got.ID != id {
				t.Fatalf("internalKey = %s, want the recorded %s", got.ID, id)
			}
			if has, err := f.tok.HasKey(ctx, got.ID); err != nil || !has {
				t.Fatalf("the internal key %s is not on the token: %v", got.ID, err)
			}
			if rec, err := f.svc.internalKeyRecord(ctx); err != nil || !rec.Ready || rec.ID != got.ID {
				t.Fatalf("record after internalKey: %+v, %v; want %s ready", rec, err, got.ID)
			}
		})
	}
}

// TestDoctorReportsMissingInternalKey: CheckConsistency reports a ready
// internal key the token lacks as missing-internal-key, and nothing about
// it on the token the store was used with.
func TestDoctorReportsMissingInternalKey(t *testing.T) {
	tokA := env.AddTestToken(t, "doctor-a")
	tokB := env.AddTestToken(t, "doctor-b")
	dir := t.TempDir()
	a := openOnToken(t, tokA.Label, dir)
	if _, err := a.svc.CreatePrincipal(systemContext(t.Context()), CreatePrincipalInput{Name: "app"}); err != nil {
		t.Fatalf("CreatePrincipal on token A: %v", err)
	}
	rec, err := a.svc.internalKeyRecord(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	a.close()

	for _, tc := range []struct {
		name, label string
		want        []Inconsistency
	}{
		{"the store's token", tokA.Label, []Inconsistency{}},
		{"another token", tokB.Label, []Inconsistency{{Kind: "missing-internal-key", Object: rec.ID.String(), Label: internalKeyLabel}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := openOnToken(t, tc.label, dir)
			defer o.close()
			got, err := o.svc.CheckConsistency(t.Context())
			if err != nil {
				t.Fatalf("CheckConsistency: %v", err)
			}
			if len(got) != len(tc.want) || (len(got) > 0 && got[0] != tc.want[0]) {
				t.Fatalf("CheckConsistency = %+v, want %+v", got, tc.want)
			}
		})
	}
}
