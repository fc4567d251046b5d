package tests

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// xksEnv is a dev server with the XKS proxy API on HTTPS, one external
// key store and one credential of it.
type xksEnv struct {
	s       *sandbox
	srv     *server
	env     []string
	ca      string
	base    string // https://127.0.0.1:PORT
	prefix  string
	cred    xksCredentialFile
	audit   string
	httpc   *http.Client
	keyID   string
	keyPath string // /<prefix>/kms/xks/v1/keys/<keyID>
	// host, when set, is the Host header sdkCall signs and sends instead
	// of base's.
	host string
}

type xksCredentialFile struct {
	URIPath    string `json:"XksProxyUriPath"`
	Credential struct {
		AccessKeyID string `json:"AccessKeyId"`
		Secret      string `json:"RawSecretAccessKey"`
	} `json:"XksProxyAuthenticationCredential"`
}

func newXKSEnv(t *testing.T) *xksEnv {
	t.Helper()
	s := newSandbox(t)
	dir := t.TempDir()
	ca, cert, key := privateCA(t, dir)
	port := freePort(t)
	auditLog := filepath.Join(dir, "audit.log")
	srv := s.startServer("", hsmkmsBin, "serve", "--dev", "--dev-dir", filepath.Join(dir, "dev"),
		"--listen", "127.0.0.1:"+freePort(t), "--audit-log", auditLog,
		"--xks-listen", "127.0.0.1:"+port, "--xks-tls-cert", cert, "--xks-tls-key", key)
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	x := &xksEnv{s: s, srv: srv, env: srv.clientEnv(), ca: ca, base: "https://127.0.0.1:" + port,
		prefix: "example/uri/path/prefix", audit: auditLog,
		httpc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
	s.must(x.env, "xks", "store", "create", x.prefix)
	x.cred = x.addCredential(t)
	x.keyID = createKey(s, x.env, "xks")
	s.must(x.env, "xks", "key", "allow", x.prefix, x.keyID)
	x.keyPath = "/" + x.prefix + "/kms/xks/v1/keys/" + x.keyID
	return x
}

func (x *xksEnv) addCredential(t *testing.T) xksCredentialFile {
	t.Helper()
	r := x.s.must(x.env, "xks", "credential", "add", x.prefix)
	c := parseJSON[xksCredentialFile](t, r)
	if c.URIPath != "/"+x.prefix+"/kms/xks/v1" || len(c.Credential.AccessKeyID) < 20 || len(c.Credential.AccessKeyID) > 30 ||
		len(c.Credential.Secret) < 43 || len(c.Credential.Secret) > 64 {
		t.Fatalf("credential file %+v", c)
	}
	for _, ch := range c.Credential.AccessKeyID {
		if !(ch >= 'A' && ch <= 'Z' || ch >= '2' && ch <= '7') {
			t.Fatalf("access key ID %q is not A-Z 2-7", c.Credential.AccessKeyID)
		}
	}
	if _, err := base64.RawStdEncoding.DecodeString(c.Credential.Secret); err != nil {
		t.Fatalf("secret is not Base64: %v", err)
	}
	return c
}

// xksReply is an XKS response: status and decoded JSON body.
type xksReply struct {
	status int
	body   map[string]any
	raw    string
}

func (r xksReply) str(k string) string { s, _ := r.body[k].(string); return s }

// sdkCall signs a POST with aws-sdk-go-v2's signer as AWS KMS does: over
// host and x-amz-date only, Content-Type added after signing.
func (x *xksEnv) sdkCall(t *testing.T, c xksCredentialFile, path string, body any, at time.Time) xksReply {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, x.base+path, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if x.host != "" {
		req.Host = x.host
	}
	sum := sha256.Sum256(data)
	creds := aws.Credentials{AccessKeyID: c.Credential.AccessKeyID, SecretAccessKey: c.Credential.Secret}
	if err := v4.NewSigner().SignHTTP(t.Context(), creds, req, hex.EncodeToString(sum[:]), "kms-xks-proxy", "eu-west-1", at); err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return x.do(t, req)
}

func (x *xksEnv) do(t *testing.T, req *http.Request) xksReply {
	t.Helper()
	resp, err := x.httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	r := xksReply{status: resp.StatusCode, raw: buf.String()}
	_ = json.Unmarshal(buf.Bytes(), &r.body)
	return r
}

// curlCall sends a POST signed by curl's own SigV4 implementation.
func (x *xksEnv) curlCall(t *testing.T, c xksCredentialFile, path string, body any) xksReply {
	t.Helper()
	curl := requireTool(t, "curl", "curl")
	data, _ := json.Marshal(body)
	cmd := exec.CommandContext(t.Context(), curl, "-sS", "--cacert", x.ca, "--aws-sigv4", "aws:amz:us-east-1:kms-xks-proxy",
		"--user", c.Credential.AccessKeyID+":"+c.Credential.Secret, "-H", "Content-Type: application/json",
		"--data-binary", "@-", "-w", "\n%{http_code}", x.base+path)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl: %v", err)
	}
	s := string(out)
	i := strings.LastIndex(s, "\n")
	r := xksReply{raw: s[:i]}
	var code int
	if _, err := fmt.Sscan(s[i+1:], &code); err != nil {
		t.Fatalf("curl output %q", s)
	}
	r.status = code
	_ = json.Unmarshal([]byte(r.raw), &r.body)
	return r
}

func meta(op string) map[string]any {
	return map[string]any{"awsPrincipalArn": "arn:aws:iam::123456789012:user/Alice",
		"kmsKeyArn":    "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		"kmsOperation": op, "kmsRequestId": "req-" + op + "-" + time.Now().Format("150405.000000000"), "kmsViaService": "ebs"}
}

func b64s(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func wantXKS(t *testing.T, r xksReply, status int, name string) {
	t.Helper()
	if r.status != status || (name != "" && r.str("errorName") != name) {
		t.Fatalf("want %d %s, got %d %s", status, name, r.status, r.raw)
	}
}

// TestXKSProxyAPI drives every XKS operation over HTTPS against the built
// binary with two SigV4 signers that are not hsmkms's (aws-sdk-go-v2's and
// curl's), and the error cases the spec lists.
func TestXKSProxyAPI(t *testing.T) {
	x := newXKSEnv(t)
	now := time.Now
	plain, aad := []byte("a data key of 32 bytes, really!!"), []byte("project=nile,department=marketing")

	// Health, through curl and through the SDK's signer.
	for name, r := range map[string]xksReply{
		"curl": x.curlCall(t, x.cred, "/"+x.prefix+"/kms/xks/v1/health", map[string]any{"requestMetadata": map[string]any{"kmsRequestId": "h1", "kmsOperation": "KmsHealthCheck"}}),
		"sdk":  x.sdkCall(t, x.cred, "/"+x.prefix+"/kms/xks/v1/health", map[string]any{"requestMetadata": map[string]any{"kmsRequestId": "h2", "kmsOperation": "CreateCustomKeyStore"}}, now()),
	} {
		wantXKS(t, r, 200, "")
		fleet, _ := r.body["ekmFleetDetails"].([]any)
		if len(fleet) != 1 || fleet[0].(map[string]any)["healthStatus"] != "ACTIVE" || r.str("xksProxyVendor") == "" {
			t.Fatalf("%s: health %s", name, r.raw)
		}
	}

	// Metadata.
	r := x.curlCall(t, x.cred, x.keyPath+"/metadata", map[string]any{"requestMetadata": meta("DescribeKey")})
	wantXKS(t, r, 200, "")
	if r.str("keySpec") != "AES_256" || r.str("keyStatus") != "ENABLED" || len(r.body["keyUsage"].([]any)) != 2 {
		t.Fatalf("metadata %s", r.raw)
	}

	// Encrypt with AAD and CDIV, through both signers; decrypt each.
	enc := func(c xksCredentialFile, useCurl bool) xksReply {
		body := map[string]any{"requestMetadata": meta("GenerateDataKey"), "plaintext": b64s(plain),
			"additionalAuthenticatedData": b64s(aad), "encryptionAlgorithm": "AES_GCM", "ciphertextDataIntegrityValueAlgorithm": "SHA_256"}
		if useCurl {
			return x.curlCall(t, c, x.keyPath+"/encrypt", body)
		}
		return x.sdkCall(t, c, x.keyPath+"/encrypt", body, now())
	}
	decBody := func(e xksReply, aad []byte) map[string]any {
		return map[string]any{"requestMetadata": meta("Decrypt"), "ciphertext": e.str("ciphertext"), "ciphertextMetadata": e.str("ciphertextMetadata"),
			"encryptionAlgorithm": "AES_GCM", "additionalAuthenticatedData": b64s(aad), "initializationVector": e.str("initializationVector"),
			"authenticationTag": e.str("authenticationTag")}
	}
	for _, useCurl := range []bool{true, false} {
		e := enc(x.cred, useCurl)
		wantXKS(t, e, 200, "")
		parts := [][]byte{aad}
		for _, k := range []string{"ciphertextMetadata", "initializationVector", "ciphertext", "authenticationTag"} {
			b, err := base64.StdEncoding.DecodeString(e.str(k))
			if err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			parts = append(parts, b)
		}
		if len(parts[2]) != 12 || len(parts[3]) != len(plain) || len(parts[4]) != 16 || len(parts[1]) > 20 {
			t.Fatalf("encrypt answer sizes: %s", e.raw)
		}
		cdiv := sha256.Sum256(bytes.Join(parts, nil))
		if e.str("ciphertextDataIntegrityValue") != b64s(cdiv[:]) {
			t.Fatalf("CDIV %s, want %s", e.str("ciphertextDataIntegrityValue"), b64s(cdiv[:]))
		}
		d := x.sdkCall(t, x.cred, x.keyPath+"/decrypt", decBody(e, aad), now())
		wantXKS(t, d, 200, "")
		if d.str("plaintext") != b64s(plain) {
			t.Fatalf("decrypt %s", d.raw)
		}
	}
	e := enc(x.cred, false)

	t.Run("errors", func(t *testing.T) {
		tampered := decBody(e, aad)
		ct, _ := base64.StdEncoding.DecodeString(e.str("ciphertext"))
		ct[0] ^= 1
		tampered["ciphertext"] = b64s(ct)
		badMeta := decBody(e, aad)
		badMeta["ciphertextMetadata"] = b64s([]byte{1, 0, 0, 0, 9})
		other := x.cred
		other.Credential.Secret = strings.Repeat("A", 43)
		for _, tc := range []struct {
			name   string
			reply  func() xksReply
			status int
			error  string
		}{
			{"wrong AAD", func() xksReply { return x.sdkCall(t, x.cred, x.keyPath+"/decrypt", decBody(e, []byte("other")), now()) }, 400, "InvalidCiphertextException"},
			{"tampered ciphertext", func() xksReply { return x.sdkCall(t, x.cred, x.keyPath+"/decrypt", tampered, now()) }, 400, "InvalidCiphertextException"},
			{"metadata of another version", func() xksReply { return x.sdkCall(t, x.cred, x.keyPath+"/decrypt", badMeta, now()) }, 400, "InvalidCiphertextException"},
			{"unknown key", func() xksReply {
				return x.sdkCall(t, x.cred, "/"+x.prefix+"/kms/xks/v1/keys/no-such-key/metadata", map[string]any{"requestMetadata": meta("DescribeKey")}, now())
			}, 404, "KeyNotFoundException"},
			{"bad signature", func() xksReply {
				return x.sdkCall(t, other, x.keyPath+"/metadata", map[string]any{"requestMetadata": meta("DescribeKey")}, now())
			}, 401, "AuthenticationFailedException"},
			{"skew", func() xksReply {
				return x.sdkCall(t, x.cred, x.keyPath+"/metadata", map[string]any{"requestMetadata": meta("DescribeKey")}, now().Add(-6*time.Minute))
			}, 401, "AuthenticationFailedException"},
			{"oversize plaintext", func() xksReply {
				body := map[string]any{"requestMetadata": meta("Encrypt"), "plaintext": b64s(make([]byte, 8193)), "encryptionAlgorithm": "AES_GCM"}
				return x.sdkCall(t, x.cred, x.keyPath+"/encrypt", body, now())
			}, 501, "UnsupportedOperationException"},
			{"missing requestMetadata", func() xksReply {
				return x.sdkCall(t, x.cred, x.keyPath+"/encrypt", map[string]any{"plaintext": b64s(plain), "encryptionAlgorithm": "AES_GCM"}, now())
			}, 400, "ValidationException"},
			{"unknown path", func() xksReply { return x.sdkCall(t, x.cred, "/"+x.prefix+"/kms/xks/v1/keys", map[string]any{}, now()) }, 404, "InvalidUriPathException"},
			{"unknown prefix", func() xksReply {
				return x.sdkCall(t, x.cred, "/other/kms/xks/v1/keys/"+x.keyID+"/metadata", map[string]any{"requestMetadata": meta("DescribeKey")}, now())
			}, 404, "InvalidUriPathException"},
			{"unknown prefix, bad signature", func() xksReply {
				return x.sdkCall(t, other, "/other/kms/xks/v1/keys/"+x.keyID+"/metadata", map[string]any{"requestMetadata": meta("DescribeKey")}, now())
			}, 401, "AuthenticationFailedException"},
			{"GET", func() xksReply {
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, x.base+x.keyPath+"/metadata", nil)
				return x.do(t, req)
			}, 405, ""},
		} {
			t.Run(tc.name, func(t *testing.T) { wantXKS(t, tc.reply(), tc.status, tc.error) })
		}
		// A prefix no store has is told only to a holder of a credential:
		// without one, it answers exactly as a store's own prefix does.
		stranger := x.cred
		stranger.Credential.AccessKeyID = strings.Repeat("A", 26)
		for _, who := range []struct {
			name string
			cred xksCredentialFile
		}{{"wrong secret", other}, {"unknown access key ID", stranger}} {
			body := map[string]any{"requestMetadata": meta("DescribeKey")}
			known := x.sdkCall(t, who.cred, x.keyPath+"/metadata", body, now())
			unknown := x.sdkCall(t, who.cred, "/other/kms/xks/v1/keys/"+x.keyID+"/metadata", body, now())
			if known.status != 401 || unknown.status != known.status || unknown.str("errorMessage") != known.str("errorMessage") {
				t.Errorf("%s: the store's prefix answers %d %s, an unknown one %d %s; want the same 401", who.name, known.status, known.raw, unknown.status, unknown.raw)
			}
		}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, x.base+"/ping", nil)
		if r := x.do(t, req); r.status != 200 {
			t.Fatalf("GET /ping: %d %s", r.status, r.raw)
		}
	})

	t.Run("credentials are per store", func(t *testing.T) {
		x.s.must(x.env, "xks", "store", "create", "other/prefix")
		x.s.must(x.env, "xks", "key", "allow", "other/prefix", x.keyID)
		r := x.sdkCall(t, x.cred, "/other/prefix/kms/xks/v1/keys/"+x.keyID+"/metadata", map[string]any{"requestMetadata": meta("DescribeKey")}, now())
		wantXKS(t, r, 401, "AuthenticationFailedException")
		// Without the secret, one store's access key ID tells another
		// store's prefix from one no store has by nothing: both answer
		// the same 401.
		other := x.cred
		other.Credential.Secret = strings.Repeat("A", 43)
		body := map[string]any{"requestMetadata": meta("DescribeKey")}
		inUse := x.sdkCall(t, other, "/other/prefix/kms/xks/v1/keys/"+x.keyID+"/metadata", body, now())
		unused := x.sdkCall(t, other, "/no/such/prefix/kms/xks/v1/keys/"+x.keyID+"/metadata", body, now())
		if inUse.status != 401 || unused.status != 401 || inUse.str("errorName") != unused.str("errorName") || inUse.str("errorMessage") != unused.str("errorMessage") {
			t.Errorf("another store's prefix answers %d %s, an unused one %d %s; want the same 401", inUse.status, inUse.raw, unused.status, unused.raw)
		}
	})

	t.Run("usage", func(t *testing.T) {
		x.s.must(x.env, "xks", "key", "allow", x.prefix, x.keyID, "--usage", "DECRYPT")
		r := x.sdkCall(t, x.cred, x.keyPath+"/encrypt", map[string]any{"requestMetadata": meta("Encrypt"), "plaintext": b64s(plain), "encryptionAlgorithm": "AES_GCM"}, now())
		wantXKS(t, r, 400, "InvalidKeyUsageException")
		x.s.must(x.env, "xks", "key", "allow", x.prefix, x.keyID)
	})

	t.Run("secondary authorisation", func(t *testing.T) {
		x.s.must(x.env, "xks", "store", "policy", x.prefix, "--allow", "kms:*=arn:aws:iam::999999999999:*")
		body := map[string]any{"requestMetadata": meta("DescribeKey")} // Alice is of account 123456789012
		wantXKS(t, x.sdkCall(t, x.cred, x.keyPath+"/metadata", body, now()), 403, "AccessDeniedException")
		health := map[string]any{"requestMetadata": map[string]any{"kmsRequestId": "h3", "kmsOperation": "KmsHealthCheck"}}
		wantXKS(t, x.sdkCall(t, x.cred, "/"+x.prefix+"/kms/xks/v1/health", health, now()), 200, "")
		x.s.must(x.env, "xks", "store", "policy", x.prefix, "--clear")
		wantXKS(t, x.sdkCall(t, x.cred, x.keyPath+"/metadata", body, now()), 200, "")
	})

	t.Run("disabled key", func(t *testing.T) {
		x.s.must(x.env, "key", "disable", x.keyID, "--yes")
		r := x.sdkCall(t, x.cred, x.keyPath+"/metadata", map[string]any{"requestMetadata": meta("DescribeKey")}, now())
		if r.status != 200 || r.str("keyStatus") != "DISABLED" {
			t.Fatalf("metadata of a disabled key: %s", r.raw)
		}
		wantXKS(t, x.sdkCall(t, x.cred, x.keyPath+"/decrypt", decBody(e, aad), now()), 400, "InvalidStateException")
		x.s.must(x.env, "key", "enable", x.keyID)
	})

	t.Run("rotation", func(t *testing.T) {
		x.s.must(x.env, "key", "rotate", x.keyID)
		d := x.sdkCall(t, x.cred, x.keyPath+"/decrypt", decBody(e, aad), now())
		if d.status != 200 || d.str("plaintext") != b64s(plain) {
			t.Fatalf("a rotated key does not decrypt its old XKS ciphertext: %s", d.raw)
		}
		e2 := enc(x.cred, false)
		if e2.str("ciphertextMetadata") == e.str("ciphertextMetadata") {
			t.Fatalf("the new version's ciphertextMetadata is the old one's: %s", e2.raw)
		}
	})

	t.Run("credential rotation", func(t *testing.T) {
		second := x.addCredential(t)
		body := map[string]any{"requestMetadata": meta("DescribeKey")}
		wantXKS(t, x.sdkCall(t, second, x.keyPath+"/metadata", body, now()), 200, "")
		wantXKS(t, x.sdkCall(t, x.cred, x.keyPath+"/metadata", body, now()), 200, "")
		x.s.must(x.env, "xks", "credential", "remove", x.prefix, x.cred.Credential.AccessKeyID, "--yes")
		wantXKS(t, x.sdkCall(t, x.cred, x.keyPath+"/metadata", body, now()), 401, "AuthenticationFailedException")
		wantXKS(t, x.curlCall(t, second, x.keyPath+"/metadata", body), 200, "")
		x.cred = second
	})

	t.Run("audit", func(t *testing.T) {
		m := meta("Encrypt")
		m["kmsRequestId"] = "audit-me-4112f4d6"
		r := x.sdkCall(t, x.cred, x.keyPath+"/encrypt", map[string]any{"requestMetadata": m, "plaintext": b64s(plain), "encryptionAlgorithm": "AES_GCM"}, now())
		wantXKS(t, r, 200, "")
		waitContains(t, x.audit, "audit-me-4112f4d6")
		log, _ := os.ReadFile(x.audit)
		for _, line := range strings.Split(string(log), "\n") {
			if !strings.Contains(line, "audit-me-4112f4d6") {
				continue
			}
			for _, want := range []string{`"action":"xks:Encrypt"`, `"key_id":"` + x.keyID + `"`, `"kmsOperation":"Encrypt"`, `"outcome":"allowed"`} {
				if !strings.Contains(line, want) {
					t.Errorf("audit record lacks %s: %s", want, line)
				}
			}
		}
		if strings.Contains(string(log), b64s(plain)) || strings.Contains(string(log), x.cred.Credential.Secret) {
			t.Fatal("the audit trail holds a plaintext or a credential secret")
		}
	})
}

// clientCert writes a client key pair with subject CN=cn, signed by a new
// CA of its own, and returns the CA's and the pair's PEM files.
func clientCert(t *testing.T, dir, name, cn string) (ca, cert, key string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(k)
	caKeyDER, _ := x509.MarshalPKCS8PrivateKey(caKey)
	write := func(file, typ string, der []byte) string {
		p := filepath.Join(dir, name+"-"+file)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("ca-key.pem", "PRIVATE KEY", caKeyDER)
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", der), write("key.pem", "PRIVATE KEY", keyDER)
}

// TestXKSMutualTLS proves that with --xks-client-ca and
// --xks-client-subject only a client certificate chained to that CA with
// that subject completes the handshake.
func TestXKSMutualTLS(t *testing.T) {
	s := newSandbox(t)
	dir := t.TempDir()
	ca, cert, key := privateCA(t, dir)
	const subject = "cks.kms.eu-west-1.amazonaws.com"
	kmsCA, kmsCert, kmsKey := clientCert(t, dir, "kms", subject)
	_, otherCert, otherKey := clientCert(t, dir, "other", subject) // right name, wrong CA
	// Wrong name, right CA: a second leaf of kms's CA.
	wrongName := signedBy(t, dir, kmsCA, "cks.kms.us-east-1.amazonaws.com")
	port := freePort(t)
	s.startServer("", hsmkmsBin, "serve", "--dev", "--dev-dir", filepath.Join(dir, "dev"), "--listen", "127.0.0.1:"+freePort(t),
		"--xks-listen", "127.0.0.1:"+port, "--xks-tls-cert", cert, "--xks-tls-key", key,
		"--xks-client-ca", kmsCA, "--xks-client-subject", subject)
	pemCA, _ := os.ReadFile(ca)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemCA)
	ping := func(certs ...tls.Certificate) error {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
		resp, err := c.Get("https://127.0.0.1:" + port + "/ping")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	load := func(cert, key string) tls.Certificate {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if err := ping(load(kmsCert, kmsKey)); err != nil {
		t.Fatalf("AWS KMS's certificate: %v", err)
	}
	for name, certs := range map[string][]tls.Certificate{
		"no certificate": nil,
		"another CA":     {load(otherCert, otherKey)},
		"another name":   {load(wrongName[0], wrongName[1])},
	} {
		if err := ping(certs...); err == nil {
			t.Errorf("%s: the handshake completed", name)
		}
	}
}

// signedBy writes a client key pair with subject CN=cn signed by the CA
// whose PEM file is caPath (its key beside it, as clientCert writes it).
func signedBy(t *testing.T, dir, caPath, cn string) [2]string {
	t.Helper()
	caCert, err := tls.LoadX509KeyPair(caPath, strings.TrimSuffix(caPath, "ca.pem")+"ca-key.pem")
	if err != nil {
		t.Fatal(err)
	}
	parent, _ := x509.ParseCertificate(caCert.Certificate[0])
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &k.PublicKey, caCert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(k)
	certPath, keyPath := filepath.Join(dir, "wrong-name-cert.pem"), filepath.Join(dir, "wrong-name-key.pem")
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	return [2]string{certPath, keyPath}
}

// TestBenchXKS runs `hsmkms bench --xks` for Encrypt and Decrypt: it loads
// the XKS listener without errors and leaves no external key store, and
// its key scheduled for deletion.
func TestBenchXKS(t *testing.T) {
	s := newSandbox(t)
	xksPort := freePort(t)
	srv := s.startServer("", hsmkmsBin, "serve", "--dev", "--dev-dir", filepath.Join(t.TempDir(), "dev"),
		"--listen", "127.0.0.1:"+freePort(t), "--xks-listen", "127.0.0.1:"+xksPort)
	env := srv.clientEnv()
	for _, op := range []string{"Encrypt", "Decrypt"} {
		res := decode[struct {
			Requests int `json:"requests"`
			Errors   int `json:"errors"`
		}](t, s.run(env, "--output", "json", "bench", "--xks", "http://127.0.0.1:"+xksPort, "--op", op,
			"--concurrency", "2", "--duration", "300ms"))
		if res.Requests == 0 || res.Errors != 0 {
			t.Fatalf("bench --xks --op %s: %+v", op, res)
		}
	}
	if stores := decode[[]map[string]any](t, s.run(env, "--output", "json", "xks", "store", "list")); len(stores) != 0 {
		t.Fatalf("bench left external key stores: %v", stores)
	}
	for _, k := range decode[[]keyView](t, s.run(env, "--output", "json", "key", "list")) {
		if d := describeKey(s, env, k.KeyId); d.KeyState != "PendingDeletion" {
			t.Errorf("the run's key %s is %s, want PendingDeletion", k.KeyId, d.KeyState)
		}
	}
	r := s.run(env, "bench", "--xks", "http://127.0.0.1:"+xksPort, "--op", "GenerateDataKey")
	if r.code != 2 || !strings.Contains(r.stderr, "Encrypt or Decrypt") {
		t.Fatalf("bench --xks --op GenerateDataKey: %v", r)
	}
}
