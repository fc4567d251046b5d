package esdk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/server"
	"github.com/hsmkms/hsmkms/softhsm"
)

// The root credentials of the interop test's private server.
const (
	interopAccessKey = "AKIAESDKINTEROPTEST"
	interopSecret    = "esdk-interop-secret-0123456789"
	interopRegion    = "us-east-1"
)

// interopScript encrypts or decrypts one file with the AWS Encryption SDK
// for JavaScript, a KMS keyring on hsmkms, the REQUIRE_ENCRYPT_REQUIRE_DECRYPT
// commitment policy and (to encrypt) suite 0x0478 with 4096-byte frames. It
// prints the message header it saw as JSON.
const interopScript = `'use strict'
const fs = require('fs')
const { KmsKeyringNode, buildClient, CommitmentPolicy, AlgorithmSuiteIdentifier } = require('@aws-crypto/client-node')
const { KMS } = require('@aws-sdk/client-kms')

const [mode, input, output] = process.argv.slice(2)
const env = process.env
const clientProvider = () => new KMS({
  endpoint: env.HSMKMS_ENDPOINT,
  region: env.HSMKMS_REGION,
  credentials: { accessKeyId: env.HSMKMS_TEST_ACCESS_KEY_ID, secretAccessKey: env.HSMKMS_TEST_SECRET_ACCESS_KEY },
})
const keyring = new KmsKeyringNode({ generatorKeyId: env.HSMKMS_KEY_ARN, clientProvider })
const { encrypt, decrypt } = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)

async function main () {
  const data = fs.readFileSync(input)
  let out, header
  if (mode === 'encrypt') {
    const r = await encrypt(keyring, data, {
      encryptionContext: JSON.parse(env.HSMKMS_CONTEXT),
      suiteId: AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY,
      frameLength: 4096,
    })
    out = r.result
    header = r.messageHeader
  } else {
    const r = await decrypt(keyring, data)
    out = r.plaintext
    header = r.messageHeader
  }
  fs.writeFileSync(output, out)
  console.log(JSON.stringify({
    version: header.version,
    suiteId: header.suiteId,
    frameLength: header.frameLength,
    encryptionContext: header.encryptionContext,
    edks: header.encryptedDataKeys.map(e => ({ providerId: e.providerId, providerInfo: e.providerInfo })),
  }))
}
main().catch(e => { console.error(e); process.exit(1) })
`

// nodeHeader is what interopScript prints.
type nodeHeader struct {
	Version           int               `json:"version"`
	SuiteID           int               `json:"suiteId"`
	FrameLength       int               `json:"frameLength"`
	EncryptionContext map[string]string `json:"encryptionContext"`
	EDKs              []struct {
		ProviderID   string `json:"providerId"`
		ProviderInfo string `json:"providerInfo"`
	} `json:"edks"`
}

// startServer starts an hsmkms server in-process on a private SoftHSM2
// token and returns its endpoint.
func startServer(t *testing.T) string {
	t.Helper()
	tok := softhsm.NewTest(t, "esdk-interop")
	srv, err := server.Start(t.Context(), server.Config{
		Listen: "127.0.0.1:0", DataDir: t.TempDir(),
		ModulePath: tok.ModulePath, TokenLabel: tok.Label, PIN: hsm.NewPIN(softhsm.TestPIN),
		Region: interopRegion, Account: "111122223333",
		RootAccessKeyID: interopAccessKey, RootSecret: interopSecret,
	})
	if err != nil {
		t.Fatalf("server.Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return srv.Endpoint()
}

// installNodeSDK installs the AWS Encryption SDK for JavaScript and the
// AWS SDK's KMS client into a fresh directory of this test run, writes
// interopScript there, and returns the directory.
func installNodeSDK(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the interoperability test needs Node.js and npm: %s is not on PATH; run `make deps`", tool)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "package.json"), []byte(`{"private": true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--loglevel=error",
		"@aws-crypto/client-node@5", "@aws-sdk/client-kms@3")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "interop.js"), []byte(interopScript), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestInteropJavaScript proves that messages made here decrypt with the
// AWS Encryption SDK for JavaScript against an hsmkms server, and that its
// messages (suite 0x0478, 4096-byte frames) decrypt here.
func TestInteropJavaScript(t *testing.T) {
	endpoint := startServer(t)
	client := kms.New(kms.Options{
		Region:       interopRegion,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(interopAccessKey, interopSecret, ""),
	})
	created, err := client.CreateKey(t.Context(), &kms.CreateKeyInput{Description: aws.String("esdk interop")})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	arn := aws.ToString(created.KeyMetadata.Arn)
	if _, err := client.CreateAlias(t.Context(), &kms.CreateAliasInput{AliasName: aws.String("alias/esdk-interop"), TargetKeyId: created.KeyMetadata.KeyId}); err != nil {
		t.Fatalf("CreateAlias: %v", err)
	}
	sdk := SDKKMS{Client: client}
	dir := installNodeSDK(t)

	node := func(t *testing.T, mode, in, out string, encCtx map[string]string) nodeHeader {
		t.Helper()
		ec, _ := json.Marshal(encCtx)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "node", "interop.js", mode, in, out)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HSMKMS_ENDPOINT="+endpoint, "HSMKMS_REGION="+interopRegion,
			"HSMKMS_TEST_ACCESS_KEY_ID="+interopAccessKey, "HSMKMS_TEST_SECRET_ACCESS_KEY="+interopSecret,
			"HSMKMS_KEY_ARN="+arn, "HSMKMS_CONTEXT="+string(ec), "AWS_EC2_METADATA_DISABLED=true")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("node %s: %v\n%s", mode, err, stderr.String())
		}
		var h nodeHeader
		if err := json.Unmarshal(stdout.Bytes(), &h); err != nil {
			t.Fatalf("node %s printed %q: %v", mode, stdout.String(), err)
		}
		return h
	}
	checkNodeHeader := func(t *testing.T, h nodeHeader, encCtx map[string]string) {
		t.Helper()
		if h.Version != 2 || h.SuiteID != int(SuiteUnsigned.ID) || !maps.Equal(h.EncryptionContext, encCtx) ||
			len(h.EDKs) != 1 || h.EDKs[0].ProviderID != ProviderID || h.EDKs[0].ProviderInfo != arn {
			t.Fatalf("the JavaScript SDK saw header %+v; want version 2, suite 0x0478, context %v, one aws-kms key %s", h, encCtx, arn)
		}
	}

	// Keys whose UTF-8 byte order ("Purpose" < "app" < "naïve") differs
	// from the JavaScript SDK's localeCompare order.
	mixed := map[string]string{"Purpose": "interop", "app": "hsmkms", "naïve": "✓ ünïcode"}
	for _, tc := range []struct {
		name   string
		goEnc  bool // Go encrypts and JavaScript decrypts, or the other way round
		size   int
		frame  int
		encCtx map[string]string
	}{
		{"go to js empty", true, 0, 4096, nil},
		{"go to js exact frame", true, 4096, 4096, map[string]string{"purpose": "interop"}},
		{"go to js many frames", true, 100_000, 4096, mixed},
		{"go to js odd frame length", true, 10_001, 1000, mixed},
		{"js to go empty", false, 0, 4096, nil},
		{"js to go exact frame", false, 4096, 4096, map[string]string{"purpose": "interop"}},
		{"js to go many frames", false, 100_000, 4096, mixed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plain := pattern(tc.size)
			work := t.TempDir()
			plainFile, msgFile, outFile := filepath.Join(work, "plain"), filepath.Join(work, "msg"), filepath.Join(work, "out")
			wantCtx := tc.encCtx
			if wantCtx == nil {
				wantCtx = map[string]string{}
			}
			if tc.goEnc {
				var msg bytes.Buffer
				h, err := Encrypt(t.Context(), sdk, "alias/esdk-interop", tc.encCtx, bytes.NewReader(plain), &msg, WithFrameLength(tc.frame), WithSuite(SuiteUnsigned))
				if err != nil {
					t.Fatalf("Encrypt: %v", err)
				}
				if h.KeyARN != arn || h.EncryptedDataKeys[0].ProviderInfo != arn {
					t.Fatalf("Encrypt used key %q, want the alias's ARN %s", h.KeyARN, arn)
				}
				if err := os.WriteFile(msgFile, msg.Bytes(), 0o600); err != nil {
					t.Fatal(err)
				}
				checkNodeHeader(t, node(t, "decrypt", msgFile, outFile, nil), wantCtx)
				got, err := os.ReadFile(outFile)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, plain) {
					t.Fatalf("the JavaScript SDK decrypted %d bytes, want the %d bytes encrypted", len(got), len(plain))
				}
				return
			}
			if err := os.WriteFile(plainFile, plain, 0o600); err != nil {
				t.Fatal(err)
			}
			checkNodeHeader(t, node(t, "encrypt", plainFile, msgFile, wantCtx), wantCtx)
			msg, err := os.ReadFile(msgFile)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(msg, []byte{0x02, 0x04, 0x78}) {
				t.Fatalf("the JavaScript SDK wrote a message starting %x, not version 2 suite 0x0478", msg[:min(3, len(msg))])
			}
			var out bytes.Buffer
			h, err := Decrypt(t.Context(), sdk, bytes.NewReader(msg), &out)
			if err != nil {
				t.Fatalf("Decrypt: %v", err)
			}
			if !bytes.Equal(out.Bytes(), plain) {
				t.Fatalf("decrypted %d bytes, want the %d bytes the JavaScript SDK encrypted", out.Len(), len(plain))
			}
			if h.KeyARN != arn || h.FrameLength != 4096 || !maps.Equal(h.EncryptionContext, wantCtx) {
				t.Fatalf("header %+v; want key %s, frame length 4096, context %v", h, arn, wantCtx)
			}
		})
	}

	// The server refuses a data key under the wrong context, whichever
	// side wrote the message.
	t.Run("wrong context refused by KMS", func(t *testing.T) {
		var msg bytes.Buffer
		if _, err := Encrypt(t.Context(), sdk, arn, map[string]string{"purpose": "a"}, bytes.NewReader(plain1k), &msg, WithSuite(SuiteUnsigned)); err != nil {
			t.Fatal(err)
		}
		blob := msg.Bytes()
		o := offsetsOf(blob)
		if _, err := sdk.Decrypt(t.Context(), blob[o.edk:o.contentType], arn, map[string]string{"purpose": "b"}); err == nil {
			t.Fatal("KMS decrypted the data key under another encryption context")
		}
		if _, err := sdk.Decrypt(t.Context(), blob[o.edk:o.contentType], "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-4000-8000-000000000009", map[string]string{"purpose": "a"}); err == nil {
			t.Fatal(fmt.Sprintf("KMS decrypted the data key naming another key than %s", arn))
		}
	})
}

var plain1k = pattern(1024)
