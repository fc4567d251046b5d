package tests

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/policy"
	"github.com/hsmkms/hsmkms/service/store/postgres/pgtest"
	"github.com/hsmkms/hsmkms/softhsm"
)

// devCluster is a cluster of no replicas yet on the token of a dev server
// that ran in devDir, with the dev server's root credentials.
func devCluster(t *testing.T, s *sandbox, devDir string, srv *server) *cluster {
	t.Helper()
	tok, err := softhsm.New(t.Context(), softhsm.Config{Dir: filepath.Join(devDir, "softhsm"), Label: devLabel,
		PIN: devPIN, SOPIN: "unused: the token exists"})
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{t: t, s: s, tok: softhsmToken(tok),
		root: aws.Credentials{AccessKeyID: srv.exports["AWS_ACCESS_KEY_ID"], SecretAccessKey: srv.exports["AWS_SECRET_ACCESS_KEY"]}}
}

// devReplica is the dev server's endpoint as a replica, for its clients.
func devReplica(c *cluster, srv *server) *replica {
	return &replica{c: c, endpoint: srv.exports["HSMKMS_ENDPOINT"]}
}

// fillStore makes keys, rotated versions, an alias and a principal through
// r, and returns ciphertexts made under them.
func fillStore(t *testing.T, r *replica) (made []sealed, alias string, app aws.Credentials) {
	t.Helper()
	ctx := ctxT(t)
	root := r.kms(r.c.root)
	alias = "alias/migrated"
	for i := range 2 {
		out, err := root.CreateKey(ctx, &kms.CreateKeyInput{})
		if err != nil {
			t.Fatal(err)
		}
		id := out.KeyMetadata.KeyId
		for range 3 {
			dk, err := root.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: id, KeySpec: types.DataKeySpecAes256})
			if err != nil {
				t.Fatal(err)
			}
			made = append(made, sealed{dk.CiphertextBlob, dk.Plaintext})
			if i == 0 {
				if _, err := root.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: id}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if i == 1 {
			if _, err := root.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: &alias, TargetKeyId: id}); err != nil {
				t.Fatal(err)
			}
		}
	}
	p, err := r.admin().CreatePrincipal(ctx, service.CreatePrincipalInput{Name: "app",
		Statements: []policy.Statement{{Effect: "Allow", Actions: []string{"kms:Decrypt", "kms:Encrypt"}, Resources: []string{"*"}}}})
	if err != nil {
		t.Fatal(err)
	}
	return made, alias, aws.Credentials{AccessKeyID: p.AccessKeyId, SecretAccessKey: p.SecretAccessKey}
}

// checkServes decrypts every ciphertext through r and uses the alias and
// the principal.
func checkServes(t *testing.T, r *replica, made []sealed, alias string, app aws.Credentials) {
	t.Helper()
	ctx := ctxT(t)
	for i, m := range made {
		out, err := r.kms(r.c.root).Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: m.blob})
		if err != nil || !bytes.Equal(out.Plaintext, m.plain) {
			t.Fatalf("ciphertext %d of %d: %v", i, len(made), err)
		}
	}
	if _, err := r.kms(app).Encrypt(ctx, &kms.EncryptInput{KeyId: &alias, Plaintext: []byte("x")}); err != nil {
		t.Errorf("the principal encrypting under the alias: %v", err)
	}
}

// TestStoreMigrate moves a single-node install (the embedded store) into
// PostgreSQL and serves every ciphertext made before from the PostgreSQL
// store, on the same token.
func TestStoreMigrate(t *testing.T) {
	s := newSandbox(t)
	devDir := t.TempDir()
	srv := s.startDev(devDir)
	c := devCluster(t, s, devDir, srv)
	made, alias, app := fillStore(t, devReplica(c, srv))
	srv.Stop()

	c.pg = pgtest.Start(t)
	db := c.pg.NewDatabase(t)
	url := c.pg.URL(db)
	args := []string{"store", "migrate", "--from", filepath.Join(devDir, "data", "hsmkms.db"), "--to", url,
		"--pkcs11-module", c.tok.ModulePath, "--token-label", devLabel}
	r := s.run(devTokenEnv(devDir), append([]string{"--output", "json"}, args...)...)
	if r.code != 0 {
		t.Fatalf("store migrate: %v", r)
	}
	if !strings.Contains(r.stdout, `"ok": true`) || !strings.Contains(r.stdout, `"keys": 2`) || !strings.Contains(r.stdout, `"versions": 5`) {
		t.Errorf("store migrate reported:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout+r.stderr, c.pg.Password()) {
		t.Error("store migrate printed the database password")
	}
	if again := s.run(devTokenEnv(devDir), args...); again.code != 1 || !strings.Contains(again.stderr, "already holds keys") {
		t.Errorf("a second migrate into the same database: %v", again)
	}

	c.storeURL = c.pg.URLWithoutPassword(db)
	c.pwFile = filepath.Join(t.TempDir(), "pgpassword")
	if err := os.WriteFile(c.pwFile, []byte(c.pg.Password()), 0o600); err != nil {
		t.Fatal(err)
	}
	rep := c.launch(0)
	rep.waitServing()
	checkServes(t, rep, made, alias, app)
}

// TestBackupRestore takes a snapshot of a serving dev server under load,
// restores it into a fresh data directory, and serves every ciphertext
// made under the keys the snapshot holds.
func TestBackupRestore(t *testing.T) {
	s := newSandbox(t)
	devDir := t.TempDir()
	srv := s.startDev(devDir)
	c := devCluster(t, s, devDir, srv)
	dev := devReplica(c, srv)
	made, alias, app := fillStore(t, dev)

	// Load while the snapshot is taken: data keys and rotations.
	ctx := ctxT(t)
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				dk, err := dev.kms(c.root).GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &alias, KeySpec: types.DataKeySpecAes256})
				if err != nil {
					t.Errorf("GenerateDataKey under load: %v", err)
					return
				}
				mu.Lock()
				made = append(made, sealed{dk.CiphertextBlob, dk.Plaintext})
				mu.Unlock()
			}
		}()
	}
	snapshot := filepath.Join(t.TempDir(), "hsmkms.backup")
	r := s.run(srv.clientEnv(), "--output", "json", "backup", "--out", snapshot)
	close(stop)
	wg.Wait()
	if r.code != 0 {
		t.Fatalf("backup: %v", r)
	}
	if !strings.Contains(r.stdout, `"keys": 2`) {
		t.Errorf("backup reported:\n%s", r.stdout)
	}
	if fi, err := os.Stat(snapshot); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the snapshot: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if again := s.run(srv.clientEnv(), "backup", "--out", snapshot); again.code != 2 {
		t.Errorf("backup over an existing file: %v", again)
	}
	srv.Stop()

	data := filepath.Join(t.TempDir(), "data")
	if r := s.run(nil, "restore", "--from", snapshot, "--data-dir", data); r.code != 0 {
		t.Fatalf("restore: %v", r)
	}
	if r := s.run(nil, "restore", "--from", snapshot, "--data-dir", data); r.code != 2 || !strings.Contains(r.stderr, "--replace") {
		t.Errorf("restore over an existing store without --replace: %v", r)
	}
	doctor := s.run(devTokenEnv(devDir), "doctor", "--data-dir", data, "--pkcs11-module", c.tok.ModulePath, "--token-label", devLabel)
	if doctor.code != 0 {
		t.Errorf("doctor after the restore: %v", doctor)
	}
	c.dataDir = data
	rep := c.launch(0)
	rep.waitServing()
	mu.Lock()
	defer mu.Unlock()
	checkServes(t, rep, made, alias, app)

	// The snapshot's seal counts are stale: the key rotates at its next seal.
	kc := rep.kms(c.root)
	if _, err := kc.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: &alias, KeySpec: types.DataKeySpecAes256}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the restored key rotates at its next use", func() bool {
		out, err := kc.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: &alias})
		return err == nil && len(out.Rotations) == 1 && out.Rotations[0].RotationType == types.RotationTypeAutomatic
	})
}
