package tests

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// File encryption end to end: `hsmkms encrypt` and `hsmkms decrypt` of the
// built binary against a dev server on a SoftHSM2 token.

const (
	// filesMarker is in every plaintext of these tests; no failing command
	// may print it.
	filesMarker = "PLAINTEXT-MARKER-7f3a"
	// The suites encrypt writes, by ID and name.
	suiteSigned       = 0x0578
	suiteUnsigned     = 0x0478
	suiteSignedName   = "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384"
	suiteUnsignedName = "AES_256_GCM_HKDF_SHA512_COMMIT_KEY"
	// frameLen is encrypt's default frame length; a regular frame is its
	// sequence number, IV, content and tag.
	frameLen         = 4096
	regularFrameSize = 4 + 12 + frameLen + 16
	// publicKeyContextKey is the context entry of a signed message's
	// verification key.
	publicKeyContextKey = "aws-crypto-public-key"
)

// filesEnv is a dev server, its root client environment, and a directory
// for the files of one test; its methods take the test or subtest they run
// in.
type filesEnv struct {
	sandboxEnv []string
	env        []string
	dir        string
}

func newFilesEnv(t *testing.T) *filesEnv {
	t.Helper()
	s := newSandbox(t)
	srv := s.startDev(filepath.Join(t.TempDir(), "dev"))
	return &filesEnv{sandboxEnv: s.env, env: srv.clientEnv(), dir: t.TempDir()}
}

// sandbox is the test's sandbox, reporting to t.
func (f *filesEnv) sandbox(t *testing.T) *sandbox { return &sandbox{t: t, env: f.sandboxEnv} }

// exec runs hsmkms with the root credentials, extra environment entries
// and standard input.
func (f *filesEnv) exec(t *testing.T, extraEnv []string, stdin []byte, args ...string) result {
	t.Helper()
	return f.sandbox(t).exec(runOpts{env: append(slices.Clone(f.env), extraEnv...), stdin: string(stdin)}, hsmkmsBin, args...)
}

// run runs hsmkms with the root credentials and extra environment entries.
func (f *filesEnv) run(t *testing.T, extraEnv []string, args ...string) result {
	t.Helper()
	return f.exec(t, extraEnv, nil, args...)
}

// must runs hsmkms with the root credentials and wants exit 0.
func (f *filesEnv) must(t *testing.T, args ...string) result {
	t.Helper()
	r := f.run(t, nil, args...)
	if r.code != 0 {
		t.Fatalf("want exit 0: %v", r)
	}
	return r
}

// key creates a key and returns its ID and ARN.
func (f *filesEnv) key(t *testing.T, description string) (id, arn string) {
	t.Helper()
	k := decode[keyView](t, f.run(t, nil, "--output", "json", "key", "create", "--description", description))
	if k.KeyId == "" || !strings.HasSuffix(k.Arn, ":key/"+k.KeyId) {
		t.Fatalf("key create: %+v", k)
	}
	return k.KeyId, k.Arn
}

// path is name in the test's directory.
func (f *filesEnv) path(name string) string { return filepath.Join(f.dir, name) }

// write writes data to name in the test's directory and returns its path.
func (f *filesEnv) write(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := f.path(name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *filesEnv) read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// encrypt encrypts plain, written to name, into name.enc with the extra
// arguments (--key among them) and returns the message.
func (f *filesEnv) encrypt(t *testing.T, name string, plain []byte, args ...string) []byte {
	t.Helper()
	in, out := f.write(t, name, plain), f.path(name+".enc")
	f.must(t, append([]string{"encrypt", "--in", in, "--out", out}, args...)...)
	return f.read(t, out)
}

// wantDecrypts decrypts the message in path to a file with the extra
// arguments and wants exactly plain in it.
func (f *filesEnv) wantDecrypts(t *testing.T, path string, plain []byte, args ...string) {
	t.Helper()
	out := path + ".dec"
	os.Remove(out)
	r := f.run(t, nil, append([]string{"decrypt", "--in", path, "--out", out}, args...)...)
	if r.code != 0 {
		t.Fatalf("want exit 0: %v", r)
	}
	if r.stdout != "" {
		t.Errorf("decrypt to a file printed on standard output: %v", r)
	}
	if got := f.read(t, out); !bytes.Equal(got, plain) {
		t.Errorf("%s decrypts to %d bytes that differ from the %d bytes of plaintext", path, len(got), len(plain))
	}
	noTempFiles(t, out)
}

// wantFailure checks that r failed with exit code (any nonzero code when
// code is -1), printed nothing on standard output, named every one of
// wants on standard error, showed no plaintext, and left no file at out
// nor any temporary file of it.
func wantFailure(t *testing.T, r result, code int, out string, wants ...string) {
	t.Helper()
	if code == -1 && r.code == 0 || code != -1 && r.code != code {
		t.Errorf("want exit %d: %v", code, r)
	}
	if r.stdout != "" {
		t.Errorf("want nothing on standard output: %v", r)
	}
	for _, w := range wants {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("want %q on standard error: %v", w, r)
		}
	}
	noPlaintext(t, r)
	noOutput(t, out)
}

// noPlaintext fails the test if r printed plaintext.
func noPlaintext(t *testing.T, r result) {
	t.Helper()
	if strings.Contains(r.stdout+r.stderr, filesMarker) {
		t.Errorf("plaintext was printed: %v", r)
	}
}

// noOutput checks that nothing is at path and no temporary file of it
// is left in its directory.
func noOutput(t *testing.T, path string) {
	t.Helper()
	if path == "" {
		return
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("%s exists after a failure (%v)", path, err)
	}
	noTempFiles(t, path)
}

// noTempFiles checks that no temporary file of path (.NAME.hsmkms-*) is
// left beside it.
func noTempFiles(t *testing.T, path string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "."+filepath.Base(path)+".hsmkms-") {
			t.Errorf("a temporary file is left behind: %s", filepath.Join(filepath.Dir(path), e.Name()))
		}
	}
}

// filesPlaintext returns n bytes of numbered lines holding filesMarker, so
// that any slice of a few dozen bytes is recognizable and any reordering
// shows.
func filesPlaintext(n int) []byte {
	var b []byte
	for i := 0; len(b) < n; i++ {
		b = fmt.Appendf(b, "%s line %08d\n", filesMarker, i)
	}
	return b[:n]
}

// suiteOf returns the message format version and suite ID a message starts
// with.
func suiteOf(msg []byte) (byte, uint16) {
	if len(msg) < 3 {
		return 0, 0
	}
	return msg[0], binary.BigEndian.Uint16(msg[1:3])
}

// frameOffset returns where regular frame seq of a framed version 2
// message starts: its sequence number, then an IV that is the sequence
// number padded with zeros.
func frameOffset(t *testing.T, msg []byte, seq uint32) int {
	t.Helper()
	var pat [16]byte
	binary.BigEndian.PutUint32(pat[:4], seq)
	binary.BigEndian.PutUint32(pat[12:], seq)
	i := bytes.Index(msg, pat[:])
	if i < 0 || bytes.Index(msg[i+1:], pat[:]) >= 0 {
		t.Fatalf("frame %d is not found once in the message", seq)
	}
	return i
}

// TestFilesAlgorithms proves that encrypt writes suite 0x0578 (signed:
// its header holds the verification key) by default, under its name, its
// hex ID and the JavaScript SDK's ALG_ name, and 0x0478 (no verification
// key) under its names and from HSMKMS_ENCRYPT_ALGORITHM, all in message format
// version 2, and that each file decrypts to a file byte for byte.
func TestFilesAlgorithms(t *testing.T) {
	f := newFilesEnv(t)
	key, _ := f.key(t, "files algorithms")
	plain := filesPlaintext(3*frameLen + 17)
	for i, tc := range []struct {
		name string
		args []string
		env  []string
		id   uint16
	}{
		{"default", nil, nil, suiteSigned},
		{"signed by name", []string{"--algorithm", suiteSignedName}, nil, suiteSigned},
		{"signed by hex ID", []string{"--algorithm", "0x0578"}, nil, suiteSigned},
		{"signed by JS name", []string{"--algorithm", "ALG_" + suiteSignedName}, nil, suiteSigned},
		{"unsigned by name", []string{"--algorithm", suiteUnsignedName}, nil, suiteUnsigned},
		{"unsigned by hex ID", []string{"--algorithm", "0x0478"}, nil, suiteUnsigned},
		{"unsigned by JS name, lower case", []string{"--algorithm", strings.ToLower("ALG_" + suiteUnsignedName)}, nil, suiteUnsigned},
		{"unsigned from HSMKMS_ENCRYPT_ALGORITHM", nil, []string{"HSMKMS_ENCRYPT_ALGORITHM=" + suiteUnsignedName}, suiteUnsigned},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, out := f.write(t, fmt.Sprintf("alg%d.txt", i), plain), f.path(fmt.Sprintf("alg%d.enc", i))
			r := f.run(t, tc.env, append([]string{"encrypt", "--key", key, "--in", in, "--out", out}, tc.args...)...)
			if r.code != 0 || r.stdout != "" {
				t.Fatalf("want exit 0 and nothing on standard output: %v", r)
			}
			noPlaintext(t, r)
			msg := f.read(t, out)
			if v, id := suiteOf(msg); v != 2 || id != tc.id {
				t.Errorf("the message starts % x: want version 2, suite 0x%04X", msg[:min(3, len(msg))], tc.id)
			}
			if signed := bytes.Contains(msg, []byte(publicKeyContextKey)); signed != (tc.id == suiteSigned) {
				t.Errorf("suite 0x%04X: the header holds a verification key: %v", tc.id, signed)
			}
			if bytes.Contains(msg, []byte(filesMarker)) {
				t.Errorf("the message holds plaintext")
			}
			noTempFiles(t, out)
			f.wantDecrypts(t, out, plain)
		})
	}
}

// TestFilesUsageErrors proves that bad flags of encrypt and decrypt (a
// suite that does not commit to its key or that does not exist, a bad
// commitment policy, missing or too many keys, missing --in or --out) exit
// 2 with a message naming the flag and what it takes, print nothing, show
// no plaintext and write no output file.
func TestFilesUsageErrors(t *testing.T) {
	f := newFilesEnv(t)
	key, _ := f.key(t, "files usage")
	plain := filesPlaintext(2 * frameLen)
	in := f.write(t, "plain.txt", plain)
	msg := f.encrypt(t, "signed.txt", plain, "--key", key)
	signed := f.write(t, "signed.enc", msg)
	out := f.path("out")
	suitesAnd := func(more ...string) []string {
		return append([]string{"--algorithm", suiteSignedName, suiteUnsignedName}, more...)
	}
	enc := func(args ...string) []string { return append([]string{"encrypt", "--in", in, "--out", out}, args...) }
	dec := func(args ...string) []string {
		return append([]string{"decrypt", "--in", signed, "--out", out}, args...)
	}
	var nineKeys []string
	for range 9 {
		nineKeys = append(nineKeys, "--key", key)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		wants []string
		env   []string
	}{
		{"suite without key commitment", enc("--key", key, "--algorithm", "AES_256_GCM_IV12_TAG16"),
			suitesAnd("AES_256_GCM_IV12_TAG16", "does not commit"), nil},
		{"suite without key commitment, hex", enc("--key", key, "--algorithm", "0x0178"),
			suitesAnd("AES_256_GCM_IV12_TAG16_HKDF_SHA256", "does not commit"), nil},
		{"signed suite without key commitment", enc("--key", key, "--algorithm", "ALG_AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384"),
			suitesAnd("does not commit"), nil},
		{"unknown suite", enc("--key", key, "--algorithm", "AES_256_GCM_HKDF_SHA512"),
			suitesAnd(`"AES_256_GCM_HKDF_SHA512"`, "unknown algorithm suite"), nil},
		{"unknown suite ID", enc("--key", key, "--algorithm", "0x0579"), suitesAnd("unknown algorithm suite"), nil},
		{"empty suite", enc("--key", key, "--algorithm", ""), suitesAnd("unknown algorithm suite"), nil},
		{"no key", enc(), []string{"--key"}, nil},
		{"empty key", enc("--key", ""), []string{"--key"}, nil},
		{"nine keys", enc(nineKeys...), []string{"at most 8 --key"}, nil},
		{"encrypt without --out", []string{"encrypt", "--key", key, "--in", in}, []string{"--in and --out"}, nil},
		{"decrypt without --in", []string{"decrypt", "--out", out}, []string{"--in and --out"}, nil},
		{"bad commitment policy", dec("--commitment-policy", "require-decrypt"),
			[]string{"--commitment-policy", `"require-decrypt"`, "require-encrypt-require-decrypt", "require-encrypt-allow-decrypt"}, nil},
		{"commitment policy forbid-encrypt-allow-decrypt", dec("--commitment-policy", "forbid-encrypt-allow-decrypt"),
			[]string{"--commitment-policy", "require-encrypt-allow-decrypt"}, nil},
		{"empty commitment policy", dec("--commitment-policy", ""), []string{"--commitment-policy"}, nil},
		{"suite from HSMKMS_ENCRYPT_ALGORITHM", enc("--key", key), suitesAnd("does not commit"), []string{"HSMKMS_ENCRYPT_ALGORITHM=AES_128_GCM_IV12_TAG16"}},
		{"commitment policy from HSMKMS_DECRYPT_COMMITMENT_POLICY", dec(), []string{"--commitment-policy", `"allow"`},
			[]string{"HSMKMS_DECRYPT_COMMITMENT_POLICY=allow"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantFailure(t, f.run(t, tc.env, tc.args...), 2, out, tc.wants...)
		})
	}
}

// TestFilesSeveralKeys proves that with --key given twice the first key
// makes the data key and the second encrypts it (a principal allowed only
// GenerateDataKey under the first and Encrypt under the second can
// encrypt, and not with the keys the other way round), that the
// header names both keys, and that the file decrypts through either key:
// with the first disabled through the second, with both disabled not at
// all (a clear error, no output file), and again once a key is enabled.
// Encrypting under a disabled key fails and writes no file.
func TestFilesSeveralKeys(t *testing.T) {
	f := newFilesEnv(t)
	keyA, arnA := f.key(t, "files first key")
	keyB, arnB := f.key(t, "files second key")
	f.must(t, "alias", "create", "alias/e2e-files-second", keyB)
	plain := filesPlaintext(2*frameLen + 100)
	in := f.write(t, "plain.txt", plain)
	msg := f.encrypt(t, "two.txt", plain, "--key", keyA, "--key", "alias/e2e-files-second")
	enc := f.write(t, "two.enc", msg)
	if a, b := bytes.Index(msg, []byte(arnA)), bytes.Index(msg, []byte(arnB)); a < 0 || b < 0 || a > b {
		t.Errorf("the header does not name %s then %s (at %d and %d)", arnA, arnB, a, b)
	}

	// A principal that may make data keys under A and encrypt under B only.
	p := decode[struct{ AccessKeyId, SecretAccessKey string }](t, f.run(t, nil, "--output", "json", "principal", "create", "files-two-keys",
		"--allow", "kms:GenerateDataKey="+arnA, "--allow", "kms:Encrypt="+arnB))
	limited := []string{"AWS_ACCESS_KEY_ID=" + p.AccessKeyId, "AWS_SECRET_ACCESS_KEY=" + p.SecretAccessKey}
	byLimited := f.path("limited.enc")
	if r := f.run(t, limited, "encrypt", "--key", arnA, "--key", arnB, "--in", in, "--out", byLimited); r.code != 0 {
		t.Fatalf("GenerateDataKey under the first key and Encrypt under the second: want exit 0: %v", r)
	}
	f.wantDecrypts(t, byLimited, plain)
	swapped := f.path("swapped.enc")
	wantFailure(t, f.run(t, limited, "encrypt", "--key", arnB, "--key", arnA, "--in", in, "--out", swapped), 3, swapped, "AccessDeniedException")

	f.wantDecrypts(t, enc, plain)
	f.must(t, "key", "disable", "--yes", keyA)
	f.wantDecrypts(t, enc, plain)
	out := f.path("two.dec")
	disabledOut := f.path("disabled.enc")
	wantFailure(t, f.run(t, nil, "encrypt", "--key", keyA, "--in", in, "--out", disabledOut), -1, disabledOut, keyA, "DisabledException")
	wantFailure(t, f.run(t, nil, "encrypt", "--key", keyB, "--key", keyA, "--in", in, "--out", disabledOut), -1, disabledOut, keyA, "DisabledException")

	f.must(t, "key", "disable", "--yes", keyB)
	wantFailure(t, f.run(t, nil, "decrypt", "--in", enc, "--out", out), 1, out,
		"decrypting "+enc, "no data key could be decrypted", arnA, arnB, "disabled")
	f.must(t, "key", "enable", keyB)
	f.wantDecrypts(t, enc, plain)
}

// TestFilesStandardOutput proves that decrypt --out - refuses a signed
// message (0x0578) with a message naming --allow-unverified-stream and
// prints nothing, that --allow-unverified-stream (or its variable) prints
// the plaintext, and that an unsigned message (0x0478) streams without
// it; also from standard input, and that encrypt --in - --out - writes a
// message that decrypts.
func TestFilesStandardOutput(t *testing.T) {
	f := newFilesEnv(t)
	key, _ := f.key(t, "files stdout")
	plain := filesPlaintext(3*frameLen + 1)
	signed := f.write(t, "signed.enc", f.encrypt(t, "signed.txt", plain, "--key", key))
	unsigned := f.write(t, "unsigned.enc", f.encrypt(t, "unsigned.txt", plain, "--key", key, "--algorithm", suiteUnsignedName))
	for _, tc := range []struct {
		name  string
		args  []string
		env   []string
		stdin []byte
		ok    bool
	}{
		{"signed", []string{"--in", signed}, nil, nil, false},
		{"signed from standard input", []string{"--in", "-"}, nil, f.read(t, signed), false},
		{"signed, require-encrypt-allow-decrypt", []string{"--in", signed, "--commitment-policy", "require-encrypt-allow-decrypt"}, nil, nil, false},
		{"signed, --allow-unverified-stream", []string{"--in", signed, "--allow-unverified-stream"}, nil, nil, true},
		{"signed, HSMKMS_DECRYPT_ALLOW_UNVERIFIED_STREAM", []string{"--in", signed}, []string{"HSMKMS_DECRYPT_ALLOW_UNVERIFIED_STREAM=true"}, nil, true},
		{"signed from standard input, --allow-unverified-stream", []string{"--in", "-", "--allow-unverified-stream"}, nil, f.read(t, signed), true},
		{"unsigned", []string{"--in", unsigned}, nil, nil, true},
		{"unsigned from standard input", []string{"--in", "-"}, nil, f.read(t, unsigned), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.exec(t, tc.env, tc.stdin, append([]string{"decrypt", "--out", "-"}, tc.args...)...)
			if !tc.ok {
				wantFailure(t, r, 1, "", "--allow-unverified-stream", "signed", "--out FILE")
				return
			}
			if r.code != 0 || r.stdout != string(plain) {
				t.Errorf("want exit 0 and the %d bytes of plaintext on standard output, got %d bytes: %v", len(plain), len(r.stdout), r)
			}
		})
	}

	t.Run("encrypt from standard input to standard output", func(t *testing.T) {
		for _, alg := range []string{suiteSignedName, suiteUnsignedName} {
			r := f.exec(t, nil, plain, "encrypt", "--key", key, "--algorithm", alg, "--in", "-", "--out", "-")
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("want exit 0 and nothing on standard error: %v", r)
			}
			if v, id := suiteOf([]byte(r.stdout)); v != 2 || (id == suiteSigned) != (alg == suiteSignedName) {
				t.Errorf("%s: the message starts with version %d, suite 0x%04X", alg, v, id)
			}
			f.wantDecrypts(t, f.write(t, "stdout.enc", []byte(r.stdout)), plain)
		}
	})

	// A framed unsigned message streams frame by frame, each verified
	// before it is written: a bad third frame stops the output after the
	// second.
	t.Run("unsigned with a bad third frame", func(t *testing.T) {
		msg := f.read(t, unsigned)
		msg[frameOffset(t, msg, 3)+16+100] ^= 0x01
		bad := f.write(t, "bad-frame.enc", msg)
		r := f.run(t, nil, "decrypt", "--in", bad, "--out", "-")
		if r.code != 1 || r.stdout != string(plain[:2*frameLen]) || !strings.Contains(r.stderr, "frame 3 does not verify") {
			t.Errorf("want exit 1, the first two frames' %d bytes of plaintext (got %d) and frame 3 named: %q exited %d\nstderr:\n%s",
				2*frameLen, len(r.stdout), r.args, r.code, r.stderr)
		}
		if strings.Contains(r.stderr, filesMarker) {
			t.Errorf("plaintext on standard error:\n%s", r.stderr)
		}
	})
}

// TestFilesCommitmentPolicy proves that both commitment policies, in
// their SDK spellings, decrypt what encrypt writes.
func TestFilesCommitmentPolicy(t *testing.T) {
	f := newFilesEnv(t)
	key, _ := f.key(t, "files policy")
	plain := filesPlaintext(frameLen + 1)
	for _, alg := range []string{suiteSignedName, suiteUnsignedName} {
		enc := f.write(t, alg+".enc", f.encrypt(t, alg, plain, "--key", key, "--algorithm", alg))
		for _, policy := range []string{"require-encrypt-require-decrypt", "require-encrypt-allow-decrypt", "REQUIRE_ENCRYPT_ALLOW_DECRYPT"} {
			f.wantDecrypts(t, enc, plain, "--commitment-policy", policy)
		}
		f.wantDecrypts(t, enc, plain)
	}
}

// TestFilesTampering proves that a signed (0x0578) and an unsigned
// (0x0478) message with a flipped byte in the signature, in a frame in the
// middle or in the header, with frames swapped, truncated anywhere or with
// a byte appended fail to decrypt with exit 1 and a message naming the
// file and the fault, show no plaintext, and leave neither the output file
// nor a temporary file; an output file that was there is left as it was.
func TestFilesTampering(t *testing.T) {
	f := newFilesEnv(t)
	key, _ := f.key(t, "files tampering")
	plain := filesPlaintext(5*frameLen + 100)
	type tamper struct {
		name   string
		change func(t *testing.T, msg []byte) []byte
		want   string
		signed bool // only for a signed message
	}
	flip := func(at func(t *testing.T, msg []byte) int) func(*testing.T, []byte) []byte {
		return func(t *testing.T, msg []byte) []byte { msg[at(t, msg)] ^= 0x01; return msg }
	}
	tampers := []tamper{
		{"signature", flip(func(_ *testing.T, m []byte) int { return len(m) - 1 }), "the message signature does not verify", true},
		{"signature, its first byte", flip(func(_ *testing.T, m []byte) int {
			for n := 8; n <= 120; n++ { // the footer: length (uint16), then a DER signature
				if i := len(m) - n - 2; binary.BigEndian.Uint16(m[i:]) == uint16(n) && m[i+2] == 0x30 {
					return i + 2
				}
			}
			t.Fatal("no signature footer found")
			return 0
		}), "signature", true},
		{"frame in the middle", flip(func(t *testing.T, m []byte) int { return frameOffset(t, m, 3) + 16 + 2000 }), "frame 3 does not verify", false},
		{"frame tag", flip(func(t *testing.T, m []byte) int { return frameOffset(t, m, 4) - 1 }), "frame 3 does not verify", false},
		{"frame IV", flip(func(t *testing.T, m []byte) int { return frameOffset(t, m, 2) + 10 }), "frame 2 has IV", false},
		{"frames swapped", func(t *testing.T, m []byte) []byte {
			i := frameOffset(t, m, 2)
			two := bytes.Clone(m[i : i+regularFrameSize])
			copy(m[i:], m[i+regularFrameSize:i+2*regularFrameSize])
			copy(m[i+regularFrameSize:], two)
			return m
		}, "frame 2 has sequence number 3", false},
		{"header: suite ID", flip(func(*testing.T, []byte) int { return 2 }), "algorithm suite", false},
		{"header: message ID", flip(func(*testing.T, []byte) int { return 10 }), "key commitment", false},
		{"header: authentication tag", flip(func(t *testing.T, m []byte) int { return frameOffset(t, m, 1) - 1 }),
			"the header authentication tag does not verify", false},
		{"header: key commitment", flip(func(t *testing.T, m []byte) int { return frameOffset(t, m, 1) - 16 - 1 }),
			"key commitment", false},
		{"truncated in the middle", func(_ *testing.T, m []byte) []byte { return m[:len(m)/2] }, "truncated", false},
		{"truncated by one byte", func(_ *testing.T, m []byte) []byte { return m[:len(m)-1] }, "truncated", false},
		{"truncated before the final frame", func(t *testing.T, m []byte) []byte { return m[:frameOffset(t, m, 5)+regularFrameSize] },
			"truncated", false},
		{"truncated in the header", func(_ *testing.T, m []byte) []byte { return m[:40] }, "the input ends inside the header", false},
		{"empty", func(_ *testing.T, m []byte) []byte { return nil }, "the input ends inside the header", false},
		{"a byte appended", func(_ *testing.T, m []byte) []byte { return append(m, 0) }, "data follows the end of the message", false},
	}
	for _, alg := range []string{suiteSignedName, suiteUnsignedName} {
		msg := f.encrypt(t, alg, plain, "--key", key, "--algorithm", alg)
		f.wantDecrypts(t, f.write(t, alg+".enc", msg), plain)
		for i, tc := range tampers {
			if tc.signed && alg != suiteSignedName {
				continue
			}
			t.Run(alg+"/"+tc.name, func(t *testing.T) {
				bad := f.write(t, fmt.Sprintf("bad%d.enc", i), tc.change(t, bytes.Clone(msg)))
				out := f.path(fmt.Sprintf("bad%d.dec", i))
				wantFailure(t, f.run(t, nil, "decrypt", "--in", bad, "--out", out), 1, out, "hsmkms: decrypting "+bad+": ", tc.want)
			})
		}
	}

	t.Run("an output file that was there is left as it was", func(t *testing.T) {
		msg := f.encrypt(t, "kept.txt", plain, "--key", key)
		msg[len(msg)-1] ^= 0x01
		bad := f.write(t, "kept-bad.enc", msg)
		out := f.write(t, "kept.dec", []byte("what was there before"))
		r := f.run(t, nil, "decrypt", "--in", bad, "--out", out, "--force")
		if r.code != 1 || !strings.Contains(r.stderr, "signature does not verify") {
			t.Errorf("want exit 1 and the signature named: %v", r)
		}
		noPlaintext(t, r)
		if got := f.read(t, out); string(got) != "what was there before" {
			t.Errorf("the output file holds %d bytes, not what was there before", len(got))
		}
		noTempFiles(t, out)
	})
}

// TestFilesSizes proves that empty input, one byte, a frame less one byte,
// exactly one frame (4096 bytes), one frame and a byte and three frames
// round-trip in both suites, and that the unsigned message holds exactly
// the frames the format says: one final frame (holding up to a whole
// frame), after a regular frame per further 4096 bytes.
func TestFilesSizes(t *testing.T) {
	f := newFilesEnv(t)
	key, _ := f.key(t, "files sizes")
	sizes := []int{0, 1, frameLen - 1, frameLen, frameLen + 1, 3 * frameLen, 3*frameLen + 1}
	for _, alg := range []string{suiteSignedName, suiteUnsignedName} {
		var emptyLen int
		for _, n := range sizes {
			t.Run(fmt.Sprintf("%s/%d bytes", alg, n), func(t *testing.T) {
				plain := filesPlaintext(n)
				name := fmt.Sprintf("%s-%d", alg, n)
				msg := f.encrypt(t, name, plain, "--key", key, "--algorithm", alg)
				enc := f.write(t, name+".enc", msg)
				f.wantDecrypts(t, enc, plain)
				if alg != suiteUnsignedName {
					return
				}
				// The header is as long in every message of one key and
				// context, so the lengths differ by the frames' bytes.
				if n == 0 {
					emptyLen = len(msg)
				} else if regular := (n - 1) / frameLen; len(msg)-emptyLen != n+regular*(regularFrameSize-frameLen) {
					t.Errorf("%d bytes encrypt to %d bytes, the empty input to %d: want %d regular frames of %d bytes and a final frame of %d",
						n, len(msg), emptyLen, regular, regularFrameSize, n-regular*frameLen)
				}
				r := f.run(t, nil, "decrypt", "--in", enc, "--out", "-")
				if r.code != 0 || r.stdout != string(plain) {
					t.Errorf("want exit 0 and the %d bytes of plaintext on standard output, got %d: %v", n, len(r.stdout), r)
				}
			})
		}
	}
	t.Run("frame length 100", func(t *testing.T) {
		plain := filesPlaintext(1000)
		msg := f.encrypt(t, "frames100", plain, "--key", key, "--frame-length", "100")
		f.wantDecrypts(t, f.write(t, "frames100.enc", msg), plain)
	})
}

// sdkMessage is a kind of message that encrypt does not write and other
// AWS Encryption SDK writers do: format version 1, suites without key
// commitment, non-framed content.
type sdkMessage struct {
	name    string
	version byte
	suite   uint16
	kdf     string // "commit" (HKDF-SHA512 and a commit key), "hkdf-sha256" or "identity"
	keyLen  int
	// frameLength is 0 for non-framed content.
	frameLength int
}

// writeSDKMessage serializes a message of kind m holding plain, with an
// empty encryption context and one encrypted data key (dataKey, which
// KMS encrypted under arn into blob). It follows the AWS Encryption SDK
// specification (data-format/message-header.md, message-body.md,
// message-body-aad.md, framework/algorithm-suites.md) on its own, beside
// cli/esdk.
func writeSDKMessage(t *testing.T, m sdkMessage, dataKey, blob []byte, arn string, plain []byte) []byte {
	t.Helper()
	idLen := 32
	if m.version == 1 {
		idLen = 16
	}
	msgID := make([]byte, idLen)
	rand.Read(msgID)
	suiteID := binary.BigEndian.AppendUint16(nil, m.suite)
	var encKey, commit []byte
	var err error
	switch m.kdf {
	case "commit":
		var prk []byte
		if prk, err = hkdf.Extract(sha512.New, dataKey, msgID); err == nil {
			if encKey, err = hkdf.Expand(sha512.New, prk, string(suiteID)+"DERIVEKEY", m.keyLen); err == nil {
				commit, err = hkdf.Expand(sha512.New, prk, "COMMITKEY", 32)
			}
		}
	case "hkdf-sha256":
		encKey, err = hkdf.Key(sha256.New, dataKey, nil, string(suiteID)+string(msgID), m.keyLen)
	default:
		encKey = dataKey
	}
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(encKey)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}

	b := []byte{m.version}
	if m.version == 1 {
		b = append(b, 0x80) // message type: customer authenticated encrypted data
	}
	b = append(b, suiteID...)
	b = append(b, msgID...)
	b = append(b, 0, 0)                     // an empty encryption context
	b = binary.BigEndian.AppendUint16(b, 1) // one encrypted data key
	for _, field := range [][]byte{[]byte("aws-kms"), []byte(arn), blob} {
		b = binary.BigEndian.AppendUint16(b, uint16(len(field)))
		b = append(b, field...)
	}
	if m.frameLength > 0 {
		b = append(b, 0x02)
	} else {
		b = append(b, 0x01)
	}
	if m.version == 1 {
		b = append(b, 0, 0, 0, 0, 12) // reserved, IV length
	}
	b = binary.BigEndian.AppendUint32(b, uint32(m.frameLength))
	b = append(b, commit...)
	iv := make([]byte, 12)
	if m.version == 1 {
		rand.Read(iv)
	}
	tag := aead.Seal(nil, iv, nil, b)
	if m.version == 1 {
		b = append(b, iv...)
	}
	b = append(b, tag...)

	bodyAAD := func(content string, seq uint32, n int) []byte {
		a := append(slices.Clone(msgID), content...)
		a = binary.BigEndian.AppendUint32(a, seq)
		return binary.BigEndian.AppendUint64(a, uint64(n))
	}
	if m.frameLength == 0 {
		rand.Read(iv)
		b = append(b, iv...)
		b = binary.BigEndian.AppendUint64(b, uint64(len(plain)))
		return aead.Seal(b, iv, plain, bodyAAD("AWSKMSEncryptionClient Single Block", 1, len(plain)))
	}
	for seq, rest := uint32(1), plain; ; seq++ {
		n := min(m.frameLength, len(rest))
		final := len(rest) <= m.frameLength
		content := "AWSKMSEncryptionClient Frame"
		if final {
			content = "AWSKMSEncryptionClient Final Frame"
			b = binary.BigEndian.AppendUint32(b, 0xFFFFFFFF)
		}
		b = binary.BigEndian.AppendUint32(b, seq)
		iv := binary.BigEndian.AppendUint32(make([]byte, 8), seq)
		b = append(b, iv...)
		if final {
			b = binary.BigEndian.AppendUint32(b, uint32(n))
		}
		b = aead.Seal(b, iv, rest[:n], bodyAAD(content, seq, n))
		if final {
			return b
		}
		rest = rest[n:]
	}
}

// TestFilesOtherWriters proves, with messages written here as other AWS
// Encryption SDK writers write them (format version 1 with suites without
// key commitment, framed and not; version 2 non-framed), that decrypt
// refuses the suites without key commitment under the default commitment
// policy and decrypts them under require-encrypt-allow-decrypt; that
// non-framed content is refused on standard output unless
// --allow-unverified-stream, while framed unsigned content streams; and
// that non-framed content whose tag does not verify leaves no output file
// (its plaintext was written to the temporary file before the tag).
func TestFilesOtherWriters(t *testing.T) {
	f := newFilesEnv(t)
	key, _ := f.key(t, "files other writers")
	plain := filesPlaintext(3*frameLen + 5)
	allow := []string{"--commitment-policy", "require-encrypt-allow-decrypt"}
	for i, m := range []sdkMessage{
		{"version 1, 0x0178 (AES_256_GCM_IV12_TAG16_HKDF_SHA256), framed", 1, 0x0178, "hkdf-sha256", 32, frameLen},
		{"version 1, 0x0146 (AES_192_GCM_IV12_TAG16_HKDF_SHA256), frames of 1000 bytes", 1, 0x0146, "hkdf-sha256", 24, 1000},
		{"version 1, 0x0014 (AES_128_GCM_IV12_TAG16), non-framed", 1, 0x0014, "identity", 16, 0},
		{"version 2, 0x0478, non-framed", 2, 0x0478, "commit", 32, 0},
	} {
		t.Run(m.name, func(t *testing.T) {
			dk := decode[struct{ KeyId, Plaintext, CiphertextBlob string }](t,
				f.run(t, nil, "--output", "json", "datakey", "--key", key, "--bytes", fmt.Sprint(m.keyLen)))
			dataKey, err1 := base64.StdEncoding.DecodeString(dk.Plaintext)
			blob, err2 := base64.StdEncoding.DecodeString(dk.CiphertextBlob)
			if err1 != nil || err2 != nil || len(dataKey) != m.keyLen {
				t.Fatalf("datakey: %+v", dk)
			}
			msg := writeSDKMessage(t, m, dataKey, blob, dk.KeyId, plain)
			enc := f.write(t, fmt.Sprintf("other%d.enc", i), msg)
			out := enc + ".dec"

			// Under the default policy: version 1 is refused before any output.
			if m.version == 1 {
				for _, o := range []string{out, "-"} {
					wantFailure(t, f.run(t, nil, "decrypt", "--in", enc, "--out", o), 1, out,
						"decrypting "+enc, fmt.Sprintf("0x%04X", m.suite), "does not commit", "require-encrypt-allow-decrypt")
				}
			} else {
				f.wantDecrypts(t, enc, plain)
			}
			f.wantDecrypts(t, enc, plain, allow...)

			r := f.run(t, nil, append([]string{"decrypt", "--in", enc, "--out", "-"}, allow...)...)
			if m.frameLength == 0 {
				wantFailure(t, r, 1, "", "decrypting "+enc, "not framed", "--allow-unverified-stream")
				r = f.run(t, nil, append([]string{"decrypt", "--in", enc, "--out", "-", "--allow-unverified-stream"}, allow...)...)
			}
			if r.code != 0 || r.stdout != string(plain) {
				t.Errorf("want exit 0 and the %d bytes of plaintext on standard output, got %d: %v", len(plain), len(r.stdout), r)
			}

			msg[len(msg)-1] ^= 0x01 // the last tag
			bad := f.write(t, fmt.Sprintf("other%d-bad.enc", i), msg)
			wantFailure(t, f.run(t, nil, append([]string{"decrypt", "--in", bad, "--out", out + ".bad"}, allow...)...), 1, out+".bad",
				"decrypting "+bad, "does not verify")
		})
	}
}

// TestFilesEncryptionContext proves that decrypt --context wants its pairs
// in the file's encryption context, and that a file whose context differs
// (a pair missing or another value) or was changed in the header fails,
// shows no plaintext and writes no file; the context is in the header in
// the clear.
func TestFilesEncryptionContext(t *testing.T) {
	f := newFilesEnv(t)
	key, _ := f.key(t, "files context")
	plain := filesPlaintext(2*frameLen + 3)
	for _, alg := range []string{suiteSignedName, suiteUnsignedName} {
		msg := f.encrypt(t, alg, plain, "--key", key, "--algorithm", alg, "--context", "team=finance", "--context", "env=prod")
		if !bytes.Contains(msg, []byte("finance")) {
			t.Errorf("%s: the encryption context is not in the header", alg)
		}
		enc := f.write(t, alg+".enc", msg)
		f.wantDecrypts(t, enc, plain)
		f.wantDecrypts(t, enc, plain, "--context", "team=finance")
		f.wantDecrypts(t, enc, plain, "--context", "env=prod", "--context", "team=finance")
		out := f.path(alg + ".out")
		for _, want := range [][]string{{"team=sales"}, {"team=finance", "owner=alice"}} {
			args := []string{"decrypt", "--in", enc, "--out", out}
			for _, kv := range want {
				args = append(args, "--context", kv)
			}
			wantFailure(t, f.run(t, nil, args...), 1, out, "decrypting "+enc, "the encryption context lacks "+want[len(want)-1])
		}
		changed := f.write(t, alg+"-changed.enc", bytes.Replace(msg, []byte("finance"), []byte("financf"), 1))
		wantFailure(t, f.run(t, nil, "decrypt", "--in", changed, "--out", out), 1, out, "decrypting "+changed, "no data key could be decrypted")
	}
}

// TestFilesHelp proves that the help of encrypt and decrypt says what the
// README's Formats section says: the suites written and read, the
// commitment policies, several keys, and where plaintext goes before it is
// verified.
func TestFilesHelp(t *testing.T) {
	s := newSandbox(t)
	for cmd, wants := range map[string][]string{
		"encrypt": {"format version 2", "framed", "0x0578", "0x0478", suiteSignedName, suiteUnsignedName, "ALG_",
			"without key commitment are refused", "up to 8", "GenerateDataKey", "temporary file (mode 0600)"},
		"decrypt": {"format versions 1 and 2", "framed or not", "0x0578, 0x0378, 0x0346, 0x0214",
			"require-encrypt-require-decrypt", "require-encrypt-allow-decrypt", "temporary file (mode 0600)",
			"--allow-unverified-stream", "signed or non-framed message is refused"},
	} {
		r := s.run(nil, cmd, "--help")
		if r.code != 0 {
			t.Fatalf("want exit 0: %v", r)
		}
		help := strings.Join(strings.Fields(r.stdout), " ")
		for _, w := range wants {
			if !strings.Contains(help, w) {
				t.Errorf("hsmkms %s --help does not say %q:\n%s", cmd, w, r.stdout)
			}
		}
	}
}

// TestFilesOutputTargets proves the --out rules: an existing file is
// replaced only with --force; a symbolic link is refused without it and,
// with it, replaced while its target is left alone; a directory is
// refused; /dev/null and a FIFO are written to directly and stay what they
// are, and a signed message is refused there as on standard output, its
// plaintext being out before its signature is checked.
func TestFilesOutputTargets(t *testing.T) {
	f := newFilesEnv(t)
	key, _ := f.key(t, "output targets")
	plain := f.write(t, "plain.txt", []byte("output targets"))
	signed := f.path("signed.enc")
	f.must(t, "encrypt", "--key", key, "--in", plain, "--out", signed)
	unsigned := f.path("unsigned.enc")
	f.must(t, "encrypt", "--key", key, "--in", plain, "--out", unsigned, "--algorithm", suiteUnsignedName)

	existing := f.write(t, "existing.txt", []byte("keep me"))
	r := f.run(t, nil, "decrypt", "--in", signed, "--out", existing)
	if r.code != 2 || !strings.Contains(r.stderr, "--out "+existing+" exists; give --force to replace it") || string(f.read(t, existing)) != "keep me" {
		t.Fatalf("decrypt over an existing file: %v", r)
	}
	f.must(t, "decrypt", "--in", signed, "--out", existing, "--force")
	if string(f.read(t, existing)) != "output targets" {
		t.Fatal("--force did not replace the file")
	}

	target := f.write(t, "target.txt", []byte("the link's target"))
	link := f.path("link.txt")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if r := f.run(t, nil, "decrypt", "--in", signed, "--out", link); r.code != 2 || !strings.Contains(r.stderr, "is a symbolic link") {
		t.Fatalf("decrypt to a symbolic link: %v", r)
	}
	f.must(t, "decrypt", "--in", signed, "--out", link, "--force")
	if st, err := os.Lstat(link); err != nil || !st.Mode().IsRegular() || string(f.read(t, link)) != "output targets" || string(f.read(t, target)) != "the link's target" {
		t.Fatalf("--force on a link: %v %v; the target holds %q", st, err, f.read(t, target))
	}
	if r := f.run(t, nil, "decrypt", "--in", signed, "--out", f.dir); r.code != 2 || !strings.Contains(r.stderr, "is a directory") {
		t.Fatalf("decrypt to a directory: %v", r)
	}

	if r := f.run(t, nil, "decrypt", "--in", signed, "--out", "/dev/null"); r.code != 1 || !strings.Contains(r.stderr, "the message is signed") {
		t.Fatalf("a signed message to /dev/null: %v", r)
	}
	f.must(t, "decrypt", "--in", unsigned, "--out", "/dev/null")
	if st, err := os.Stat("/dev/null"); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("/dev/null is no longer a character device: %v %v", st, err)
	}

	fifo := f.path("fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := os.ReadFile(fifo)
		got <- b
	}()
	f.must(t, "decrypt", "--in", unsigned, "--out", fifo)
	if b := <-got; string(b) != "output targets" {
		t.Fatalf("the FIFO carried %q", b)
	}
	if st, err := os.Lstat(fifo); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("the FIFO was replaced: %v %v", st, err)
	}
}
