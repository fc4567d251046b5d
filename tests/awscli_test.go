package tests

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// awsCLI runs the aws CLI against srv as its users run it: its defaults,
// the server's exported credentials, --endpoint-url (aws CLI v1 does not
// read AWS_ENDPOINT_URL_KMS) and JSON output.
type awsCLI struct {
	s   *sandbox
	srv *server
	dir string
	// creds, when set, are another principal's access key ID and secret.
	creds []string
}

func (a awsCLI) run(args ...string) result {
	a.s.t.Helper()
	env := append(a.srv.clientEnv(), "AWS_DEFAULT_REGION="+a.srv.exports["AWS_REGION"])
	if a.creds != nil {
		env = append(env, "AWS_ACCESS_KEY_ID="+a.creds[0], "AWS_SECRET_ACCESS_KEY="+a.creds[1])
	}
	return a.s.exec(runOpts{dir: a.dir, env: env}, "aws",
		append([]string{"kms", "--endpoint-url", a.srv.exports["AWS_ENDPOINT_URL_KMS"], "--output", "json"}, args...)...)
}

// must runs the command and decodes its JSON output into a map.
func (a awsCLI) must(args ...string) map[string]any {
	a.s.t.Helper()
	r := a.run(args...)
	if r.code != 0 {
		a.s.t.Fatalf("aws kms %s: %v", strings.Join(args, " "), r)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		a.s.t.Fatalf("aws kms %s: %v: %s", strings.Join(args, " "), err, r.stdout)
	}
	return out
}

// fails runs the command and wants it to fail naming errType.
func (a awsCLI) fails(errType string, args ...string) {
	a.s.t.Helper()
	r := a.run(args...)
	if r.code == 0 || !strings.Contains(r.stderr, "("+errType+")") {
		a.s.t.Fatalf("aws kms %s: %v; want a %s", strings.Join(args, " "), r, errType)
	}
}

func (a awsCLI) write(name string, b []byte) string {
	a.s.t.Helper()
	p := filepath.Join(a.dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		a.s.t.Fatal(err)
	}
	return p
}

func b64(t *testing.T, v any) []byte {
	t.Helper()
	s, _ := v.(string)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		t.Fatalf("not base64: %v", v)
	}
	return b
}

// TestAWSCLIHMACKeys makes an HMAC key with the aws CLI, computes a MAC and
// verifies it, and sees a tampered message refused as KMSInvalidMacException
// and a key that cannot rotate refused as UnsupportedOperationException.
func TestAWSCLIHMACKeys(t *testing.T) {
	requireTool(t, "aws", "awscli")
	s := newSandbox(t)
	srv := s.startDev(t.TempDir())
	a := awsCLI{s: s, srv: srv, dir: t.TempDir()}

	key := a.must("create-key", "--key-spec", "HMAC_256", "--key-usage", "GENERATE_VERIFY_MAC")
	meta := key["KeyMetadata"].(map[string]any)
	id := meta["KeyId"].(string)
	if algs, _ := meta["MacAlgorithms"].([]any); len(algs) != 1 || algs[0] != "HMAC_SHA_256" {
		t.Fatalf("create-key: %v", meta)
	}
	msg := a.write("msg", []byte("the message to authenticate"))
	out := a.must("generate-mac", "--key-id", id, "--message", "fileb://"+msg, "--mac-algorithm", "HMAC_SHA_256")
	mac := b64(t, out["Mac"])
	if len(mac) != 32 || out["MacAlgorithm"] != "HMAC_SHA_256" {
		t.Fatalf("generate-mac: %v", out)
	}
	macFile := a.write("mac", mac)
	v := a.must("verify-mac", "--key-id", id, "--message", "fileb://"+msg, "--mac", "fileb://"+macFile, "--mac-algorithm", "HMAC_SHA_256")
	if v["MacValid"] != true {
		t.Fatalf("verify-mac: %v", v)
	}
	other := a.write("other", []byte("the message, tampered"))
	a.fails("KMSInvalidMacException", "verify-mac", "--key-id", id, "--message", "fileb://"+other, "--mac", "fileb://"+macFile, "--mac-algorithm", "HMAC_SHA_256")
	a.fails("InvalidKeyUsageException", "generate-mac", "--key-id", id, "--message", "fileb://"+msg, "--mac-algorithm", "HMAC_SHA_512")
	a.fails("UnsupportedOperationException", "enable-key-rotation", "--key-id", id)
	st := a.must("get-key-rotation-status", "--key-id", id)
	if st["KeyRotationEnabled"] != false {
		t.Fatalf("get-key-rotation-status: %v", st)
	}
}

// TestAWSCLIRSAEncryption follows the flow AWS documents for RSA
// encryption keys: create-key RSA_2048 ENCRYPT_DECRYPT, get-public-key,
// encrypt offline with `openssl pkeyutl` (OAEP with SHA-1, its default, and
// with SHA-256), decrypt with the aws CLI; and the other way, encrypt with
// the aws CLI and decrypt with it.
func TestAWSCLIRSAEncryption(t *testing.T) {
	requireTool(t, "aws", "awscli")
	requireTool(t, "openssl", "openssl")
	s := newSandbox(t)
	srv := s.startDev(t.TempDir())
	a := awsCLI{s: s, srv: srv, dir: t.TempDir()}

	key := a.must("create-key", "--key-spec", "RSA_2048", "--key-usage", "ENCRYPT_DECRYPT")
	id := key["KeyMetadata"].(map[string]any)["KeyId"].(string)
	pk := a.must("get-public-key", "--key-id", id)
	if algs, _ := pk["EncryptionAlgorithms"].([]any); len(algs) != 2 || pk["KeyUsage"] != "ENCRYPT_DECRYPT" {
		t.Fatalf("get-public-key: %v", pk)
	}
	pub := a.write("public_key.der", b64(t, pk["PublicKey"]))
	plain := a.write("plaintext", []byte("encrypted offline with openssl"))

	for _, c := range []struct {
		alg  string
		opts []string
	}{
		{"RSAES_OAEP_SHA_1", []string{"-pkeyopt", "rsa_padding_mode:oaep"}},
		{"RSAES_OAEP_SHA_256", []string{"-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt", "rsa_mgf1_md:sha256"}},
	} {
		ct := filepath.Join(a.dir, "ct-"+c.alg)
		r := s.exec(runOpts{dir: a.dir}, "openssl", append([]string{"pkeyutl", "-encrypt", "-pubin", "-keyform", "DER", "-inkey", pub, "-in", plain, "-out", ct}, c.opts...)...)
		if r.code != 0 {
			t.Fatalf("openssl pkeyutl -encrypt: %v", r)
		}
		dec := a.must("decrypt", "--key-id", id, "--ciphertext-blob", "fileb://"+ct, "--encryption-algorithm", c.alg)
		if got := b64(t, dec["Plaintext"]); string(got) != "encrypted offline with openssl" || dec["EncryptionAlgorithm"] != c.alg {
			t.Fatalf("decrypt of openssl's %s ciphertext: %q, %v", c.alg, got, dec)
		}

		enc := a.must("encrypt", "--key-id", id, "--plaintext", "fileb://"+plain, "--encryption-algorithm", c.alg)
		blob := a.write("blob-"+c.alg, b64(t, enc["CiphertextBlob"]))
		dec = a.must("decrypt", "--key-id", id, "--ciphertext-blob", "fileb://"+blob, "--encryption-algorithm", c.alg)
		if got := b64(t, dec["Plaintext"]); !bytes.Equal(got, []byte("encrypted offline with openssl")) {
			t.Fatalf("decrypt of the aws CLI's %s ciphertext: %q", c.alg, got)
		}
	}
	// re-encrypt from the RSA key to a symmetric one and back.
	sym := a.must("create-key")["KeyMetadata"].(map[string]any)["KeyId"].(string)
	re := a.must("re-encrypt", "--ciphertext-blob", "fileb://"+filepath.Join(a.dir, "ct-RSAES_OAEP_SHA_256"), "--source-key-id", id,
		"--source-encryption-algorithm", "RSAES_OAEP_SHA_256", "--destination-key-id", sym)
	if re["SourceEncryptionAlgorithm"] != "RSAES_OAEP_SHA_256" || re["DestinationEncryptionAlgorithm"] != "SYMMETRIC_DEFAULT" {
		t.Fatalf("re-encrypt: %v", re)
	}
	symBlob := a.write("sym-blob", b64(t, re["CiphertextBlob"]))
	back := a.write("back", b64(t, a.must("re-encrypt", "--ciphertext-blob", "fileb://"+symBlob, "--destination-key-id", id,
		"--destination-encryption-algorithm", "RSAES_OAEP_SHA_1")["CiphertextBlob"]))
	if got := b64(t, a.must("decrypt", "--key-id", id, "--ciphertext-blob", "fileb://"+back, "--encryption-algorithm", "RSAES_OAEP_SHA_1")["Plaintext"]); string(got) != "encrypted offline with openssl" {
		t.Fatalf("after two re-encrypts: %q", got)
	}
	a.fails("InvalidKeyUsageException", "encrypt", "--key-id", id, "--plaintext", "fileb://"+plain)
	a.fails("InvalidKeyUsageException", "generate-data-key", "--key-id", id, "--key-spec", "AES_256")
	a.fails("InvalidCiphertextException", "decrypt", "--key-id", id, "--ciphertext-blob", "fileb://"+filepath.Join(a.dir, "ct-RSAES_OAEP_SHA_1"), "--encryption-algorithm", "RSAES_OAEP_SHA_256")
}

// TestAWSCLIGrants gives a principal whose policy allows nothing the use
// of a key with create-grant, sees it encrypt with the grant token and
// decrypt, list-grants show the grant, the retiring principal retire it
// and the principal be denied again; revoke-grant removes another.
func TestAWSCLIGrants(t *testing.T) {
	requireTool(t, "aws", "awscli")
	s := newSandbox(t)
	srv := s.startDev(t.TempDir())
	root := awsCLI{s: s, srv: srv, dir: t.TempDir()}
	p := decode[struct{ AccessKeyId, SecretAccessKey, Arn string }](t, s.run(srv.clientEnv(), "--output", "json", "principal", "create", "grantee", "--allow", "kms:ListKeys=*"))
	if !strings.HasSuffix(p.Arn, ":user/"+p.AccessKeyId) {
		t.Fatalf("principal create: Arn %q", p.Arn)
	}
	app := awsCLI{s: s, srv: srv, dir: root.dir, creds: []string{p.AccessKeyId, p.SecretAccessKey}}
	id := root.must("create-key")["KeyMetadata"].(map[string]any)["KeyId"].(string)
	plain := root.write("plain", []byte("granted"))
	app.fails("AccessDeniedException", "encrypt", "--key-id", id, "--plaintext", "fileb://"+plain)

	g := root.must("create-grant", "--key-id", id, "--grantee-principal", p.Arn, "--retiring-principal", p.Arn,
		"--operations", "Encrypt", "Decrypt", "--constraints", "EncryptionContextSubset={app=billing}")
	token, _ := g["GrantToken"].(string)
	grantID, _ := g["GrantId"].(string)
	if token == "" || len(grantID) != 64 {
		t.Fatalf("create-grant: %v", g)
	}
	enc := app.must("encrypt", "--key-id", id, "--plaintext", "fileb://"+plain, "--encryption-context", "app=billing", "--grant-tokens", token)
	blob := root.write("blob", b64(t, enc["CiphertextBlob"]))
	dec := app.must("decrypt", "--ciphertext-blob", "fileb://"+blob, "--encryption-context", "app=billing")
	if got := b64(t, dec["Plaintext"]); string(got) != "granted" {
		t.Fatalf("decrypt by the grant: %q", got)
	}
	app.fails("AccessDeniedException", "encrypt", "--key-id", id, "--plaintext", "fileb://"+plain, "--encryption-context", "app=other")
	list := root.must("list-grants", "--key-id", id)
	if grants, _ := list["Grants"].([]any); len(grants) != 1 || grants[0].(map[string]any)["GrantId"] != grantID {
		t.Fatalf("list-grants: %v", list)
	}
	if rg := root.must("list-retirable-grants", "--retiring-principal", p.Arn); len(rg["Grants"].([]any)) != 1 {
		t.Fatalf("list-retirable-grants: %v", rg)
	}
	r := app.run("retire-grant", "--grant-token", token)
	if r.code != 0 {
		t.Fatalf("retire-grant by the retiring principal: %v", r)
	}
	app.fails("AccessDeniedException", "decrypt", "--ciphertext-blob", "fileb://"+blob, "--encryption-context", "app=billing")

	g2 := root.must("create-grant", "--key-id", id, "--grantee-principal", p.Arn, "--operations", "GenerateDataKey")
	if r := root.run("revoke-grant", "--key-id", id, "--grant-id", g2["GrantId"].(string)); r.code != 0 {
		t.Fatalf("revoke-grant: %v", r)
	}
	if grants, _ := root.must("list-grants", "--key-id", id)["Grants"].([]any); len(grants) != 0 {
		t.Fatalf("grants left: %v", grants)
	}
	root.fails("NotFoundException", "revoke-grant", "--key-id", id, "--grant-id", g2["GrantId"].(string))
	root.fails("InvalidGrantIdException", "revoke-grant", "--key-id", id, "--grant-id", "not-an-id")
}

// TestAWSCLIImportKeyMaterial follows the flow AWS documents for importing
// key material with the aws CLI and openssl: create-key --origin EXTERNAL,
// get-parameters-for-import, openssl rand and pkeyutl (RSAES_OAEP_SHA_1),
// import-key-material; then openssl enc -id-aes256-wrap-pad for
// RSA_AES_KEY_WRAP_SHA_1. The imported key encrypts, refuses a replayed
// token, goes PendingImport after delete-imported-key-material and comes
// back with the same material only. pkcs11-tool sees the imported object
// sensitive and unextractable, and doctor finds the token consistent.
// RSAES_OAEP_SHA_256 works end to end, or, on a token whose C_UnwrapKey
// takes OAEP with SHA-1 only (SoftHSM2 2.6.1), is refused up front.
func TestAWSCLIImportKeyMaterial(t *testing.T) {
	requireTool(t, "aws", "awscli")
	requireTool(t, "openssl", "openssl")
	requireTool(t, "pkcs11-tool", "opensc")
	s := newSandbox(t)
	devDir := filepath.Join(t.TempDir(), "dev")
	srv := s.startDev(devDir)
	a := awsCLI{s: s, srv: srv, dir: t.TempDir()}
	file := func(name string) string { return filepath.Join(a.dir, name) }
	openssl := func(args ...string) {
		t.Helper()
		if r := s.exec(runOpts{dir: a.dir}, "openssl", args...); r.code != 0 {
			t.Fatalf("openssl %s: %v", strings.Join(args, " "), r)
		}
	}
	params := func(id, alg string) (pub, token string) {
		t.Helper()
		p := a.must("get-parameters-for-import", "--key-id", id, "--wrapping-algorithm", alg, "--wrapping-key-spec", "RSA_2048")
		return a.write("WrappingPublicKey.bin", b64(t, p["PublicKey"])), a.write("ImportToken.bin", b64(t, p["ImportToken"]))
	}

	meta := a.must("create-key", "--origin", "EXTERNAL")["KeyMetadata"].(map[string]any)
	id := meta["KeyId"].(string)
	if meta["KeyState"] != "PendingImport" || meta["Origin"] != "EXTERNAL" {
		t.Fatalf("create-key --origin EXTERNAL: %v", meta)
	}
	pub, token := params(id, "RSAES_OAEP_SHA_1")
	openssl("rand", "-out", file("PlaintextKeyMaterial.bin"), "32")
	openssl("pkeyutl", "-encrypt", "-in", file("PlaintextKeyMaterial.bin"), "-out", file("EncryptedKeyMaterial.bin"),
		"-inkey", pub, "-keyform", "DER", "-pubin", "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha1")
	importArgs := []string{"import-key-material", "--key-id", id, "--encrypted-key-material", "fileb://" + file("EncryptedKeyMaterial.bin"),
		"--import-token", "fileb://" + token, "--expiration-model", "KEY_MATERIAL_DOES_NOT_EXPIRE"}
	if r := a.run(importArgs...); r.code != 0 {
		t.Fatalf("import-key-material: %v", r)
	}
	if m := a.must("describe-key", "--key-id", id)["KeyMetadata"].(map[string]any); m["KeyState"] != "Enabled" || m["ExpirationModel"] != "KEY_MATERIAL_DOES_NOT_EXPIRE" {
		t.Fatalf("after import-key-material: %v", m)
	}
	plain := a.write("plain", []byte("bring your own key"))
	blob := a.write("blob", b64(t, a.must("encrypt", "--key-id", id, "--plaintext", "fileb://"+plain)["CiphertextBlob"]))
	a.fails("InvalidImportTokenException", importArgs...)

	if r := a.run("delete-imported-key-material", "--key-id", id); r.code != 0 {
		t.Fatalf("delete-imported-key-material: %v", r)
	}
	a.fails("KMSInvalidStateException", "decrypt", "--ciphertext-blob", "fileb://"+blob)

	// Other material is refused; the same material, wrapped with
	// RSA_AES_KEY_WRAP_SHA_1 this time, brings the key back.
	pub, token = params(id, "RSA_AES_KEY_WRAP_SHA_1")
	openssl("rand", "-out", file("other.bin"), "32")
	openssl("pkeyutl", "-encrypt", "-in", file("other.bin"), "-out", file("other-wrapped.bin"),
		"-inkey", pub, "-keyform", "DER", "-pubin", "-pkeyopt", "rsa_padding_mode:oaep")
	a.fails("InvalidCiphertextException", "import-key-material", "--key-id", id, "--encrypted-key-material", "fileb://"+file("other-wrapped.bin"),
		"--import-token", "fileb://"+token, "--expiration-model", "KEY_MATERIAL_DOES_NOT_EXPIRE")
	openssl("rand", "-out", file("aes-key.bin"), "32")
	aesKey, err := os.ReadFile(file("aes-key.bin"))
	if err != nil {
		t.Fatal(err)
	}
	openssl("enc", "-id-aes256-wrap-pad", "-K", hex.EncodeToString(aesKey), "-iv", "A65959A6",
		"-in", file("PlaintextKeyMaterial.bin"), "-out", file("key-material-wrapped.bin"))
	openssl("pkeyutl", "-encrypt", "-in", file("aes-key.bin"), "-out", file("aes-key-wrapped.bin"),
		"-inkey", pub, "-keyform", "DER", "-pubin", "-pkeyopt", "rsa_padding_mode:oaep")
	aesWrapped, _ := os.ReadFile(file("aes-key-wrapped.bin"))
	materialWrapped, _ := os.ReadFile(file("key-material-wrapped.bin"))
	a.write("RSAAESWrapped.bin", append(aesWrapped, materialWrapped...))
	if r := a.run("import-key-material", "--key-id", id, "--encrypted-key-material", "fileb://"+file("RSAAESWrapped.bin"),
		"--import-token", "fileb://"+token, "--expiration-model", "KEY_MATERIAL_DOES_NOT_EXPIRE"); r.code != 0 {
		t.Fatalf("import-key-material RSA_AES_KEY_WRAP_SHA_1: %v", r)
	}
	if got := b64(t, a.must("decrypt", "--ciphertext-blob", "fileb://"+blob)["Plaintext"]); string(got) != "bring your own key" {
		t.Fatalf("decrypt after the re-import: %q", got)
	}

	// RSAES_OAEP_SHA_256, the algorithm of AWS's own example.
	id256 := a.must("create-key", "--origin", "EXTERNAL")["KeyMetadata"].(map[string]any)["KeyId"].(string)
	r := a.run("get-parameters-for-import", "--key-id", id256, "--wrapping-algorithm", "RSAES_OAEP_SHA_256", "--wrapping-key-spec", "RSA_2048")
	if r.code != 0 {
		if !strings.Contains(r.stderr, "(UnsupportedOperationException)") || !strings.Contains(r.stderr, "SHA-256") {
			t.Fatalf("get-parameters-for-import RSAES_OAEP_SHA_256: %v", r)
		}
	} else {
		pub, token := params(id256, "RSAES_OAEP_SHA_256")
		openssl("pkeyutl", "-encrypt", "-in", file("PlaintextKeyMaterial.bin"), "-out", file("wrapped256.bin"), "-inkey", pub, "-keyform", "DER", "-pubin",
			"-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt", "rsa_mgf1_md:sha256")
		if r := a.run("import-key-material", "--key-id", id256, "--encrypted-key-material", "fileb://"+file("wrapped256.bin"),
			"--import-token", "fileb://"+token, "--expiration-model", "KEY_MATERIAL_DOES_NOT_EXPIRE"); r.code != 0 {
			t.Fatalf("import-key-material RSAES_OAEP_SHA_256: %v", r)
		}
	}
	srv.Stop()

	out := pkcs11Tool(s, devDir, "--list-objects")
	label := "hsmkms/" + id + "/v1"
	found := false
	for _, o := range parseObjects(out.stdout) {
		if o.attrs["label"] != label {
			continue
		}
		found = true
		access := strings.Split(o.attrs["Access"], ", ")
		// SoftHSM2 records no length for an unwrapped key; an imported key
		// was never "always sensitive" (it came from outside).
		if !strings.HasPrefix(o.heading, "Secret Key Object; AES") || !slices.Contains(access, "sensitive") || slices.Contains(access, "extractable") {
			t.Errorf("the imported key on the token: %q, Access: %s", o.heading, o.attrs["Access"])
		}
	}
	if !found {
		t.Fatalf("no object labelled %s on the token:\n%s", label, out.stdout)
	}
	rep := decode[doctorReport](t, s.run(devTokenEnv(devDir), "--output", "json", "doctor", "--pkcs11-module", softhsmModule(t),
		"--token-label", devLabel, "--data-dir", filepath.Join(devDir, "data")))
	if !rep.OK || len(rep.Inconsistencies) != 0 {
		t.Fatalf("doctor after imports: %+v", rep)
	}
}

// TestAWSCLINewCurves signs with ECC_NIST_P521 and ECC_SECG_P256K1 keys
// through the aws CLI and has openssl verify the signatures with the
// public keys get-public-key returns.
func TestAWSCLINewCurves(t *testing.T) {
	requireTool(t, "aws", "awscli")
	requireTool(t, "openssl", "openssl")
	s := newSandbox(t)
	srv := s.startDev(t.TempDir())
	a := awsCLI{s: s, srv: srv, dir: t.TempDir()}
	msg := a.write("msg", []byte("signed through the aws CLI"))
	for _, c := range []struct{ spec, alg, dgst string }{
		{"ECC_NIST_P521", "ECDSA_SHA_512", "-sha512"},
		{"ECC_SECG_P256K1", "ECDSA_SHA_256", "-sha256"},
	} {
		id := a.must("create-key", "--key-spec", c.spec, "--key-usage", "SIGN_VERIFY")["KeyMetadata"].(map[string]any)["KeyId"].(string)
		sig := a.write("sig-"+c.spec, b64(t, a.must("sign", "--key-id", id, "--message", "fileb://"+msg, "--message-type", "RAW",
			"--signing-algorithm", c.alg)["Signature"]))
		pub := a.write("pub-"+c.spec+".der", b64(t, a.must("get-public-key", "--key-id", id)["PublicKey"]))
		r := s.exec(runOpts{dir: a.dir}, "openssl", "dgst", c.dgst, "-verify", pub, "-keyform", "DER", "-signature", sig, msg)
		if r.code != 0 || !strings.Contains(r.stdout, "Verified OK") {
			t.Fatalf("%s: openssl does not verify the signature: %v", c.spec, r)
		}
		if v := a.must("verify", "--key-id", id, "--message", "fileb://"+msg, "--signature", "fileb://"+sig, "--signing-algorithm", c.alg); v["SignatureValid"] != true {
			t.Fatalf("%s: verify: %v", c.spec, v)
		}
	}
}

// TestAWSCLIKeyPolicy reads a key's policy as users of AWS KMS do, and as
// Terraform's aws_kms_key does after every create: get-key-policy gives AWS
// KMS's default key policy for the account (access is left to principals'
// policies, hsmkms's IAM), list-key-policies names "default", and
// put-key-policy is refused as UnsupportedOperationException.
func TestAWSCLIKeyPolicy(t *testing.T) {
	requireTool(t, "aws", "awscli")
	s := newSandbox(t)
	srv := s.startDev(t.TempDir())
	a := awsCLI{s: s, srv: srv, dir: t.TempDir()}
	id := a.must("create-key")["KeyMetadata"].(map[string]any)["KeyId"].(string)

	out := a.must("get-key-policy", "--key-id", id, "--policy-name", "default")
	var doc struct {
		Statement []struct {
			Effect    string
			Principal map[string]string
			Action    string
		}
	}
	text, _ := out["Policy"].(string)
	if err := json.Unmarshal([]byte(text), &doc); err != nil || len(doc.Statement) != 1 || doc.Statement[0].Effect != "Allow" ||
		doc.Statement[0].Action != "kms:*" || !strings.HasSuffix(doc.Statement[0].Principal["AWS"], ":root") {
		t.Fatalf("get-key-policy: %v (%v)", out, err)
	}
	if names, _ := out["PolicyName"].(string); names != "default" {
		t.Fatalf("get-key-policy names %q", names)
	}
	list := a.must("list-key-policies", "--key-id", id)
	if names, _ := list["PolicyNames"].([]any); len(names) != 1 || names[0] != "default" {
		t.Fatalf("list-key-policies: %v", list)
	}
	a.fails("NotFoundException", "get-key-policy", "--key-id", id, "--policy-name", "other")
	policy := a.write("policy.json", []byte(text))
	a.fails("UnsupportedOperationException", "put-key-policy", "--key-id", id, "--policy-name", "default", "--policy", "file://"+policy)
}
