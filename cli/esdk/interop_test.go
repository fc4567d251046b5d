package esdk

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
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

// interopScript runs jobs with the AWS Encryption SDK for JavaScript and a
// KMS keyring on hsmkms: `node interop.js JOBS.json RESULTS.json`. A job
// is {mode: "encrypt" | "decrypt", input, output, env}; it is set by the
// environment variables below, the job's env over the process's, and what
// a variable leaves out is the SDK's default, as its users run it. For
// each job the results hold the message header the SDK wrote or read
// (version, suiteId, contentType, frameLength, encryptionContext, and the
// providerId and providerInfo of each encrypted data key), or its error.
//
//	HSMKMS_ENDPOINT, HSMKMS_REGION, HSMKMS_TEST_ACCESS_KEY_ID,
//	HSMKMS_TEST_SECRET_ACCESS_KEY   the server and its credentials
//	HSMKMS_GENERATOR_KEY_ID         the keyring's generatorKeyId
//	HSMKMS_KEY_IDS                  its keyIds, a JSON array (default none)
//	HSMKMS_COMMITMENT_POLICY        the client's commitment policy (default
//	                                REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
//	HSMKMS_SUITE                    the suite to encrypt with, as 0x0478
//	                                (default: the policy's, 0x0578 for
//	                                REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
//	HSMKMS_FRAME_LENGTH             the frame length to encrypt with
//	                                (default 4096)
//	HSMKMS_CONTEXT                  the encryption context to encrypt with,
//	                                as JSON (default none)
const interopScript = `'use strict'
const fs = require('fs')
const { KmsKeyringNode, buildClient, CommitmentPolicy, AlgorithmSuiteIdentifier } = require('@aws-crypto/client-node')
const { KMS } = require('@aws-sdk/client-kms')

async function run (job) {
  const env = { ...process.env, ...job.env }
  const kms = new KMS({
    endpoint: env.HSMKMS_ENDPOINT,
    region: env.HSMKMS_REGION,
    credentials: { accessKeyId: env.HSMKMS_TEST_ACCESS_KEY_ID, secretAccessKey: env.HSMKMS_TEST_SECRET_ACCESS_KEY },
  })
  const keyring = new KmsKeyringNode({
    generatorKeyId: env.HSMKMS_GENERATOR_KEY_ID || undefined,
    keyIds: JSON.parse(env.HSMKMS_KEY_IDS || '[]'),
    clientProvider: () => kms,
  })
  const policy = env.HSMKMS_COMMITMENT_POLICY || 'REQUIRE_ENCRYPT_REQUIRE_DECRYPT'
  if (CommitmentPolicy[policy] !== policy) throw new Error('unknown commitment policy ' + policy)
  const { encrypt, decrypt } = buildClient(CommitmentPolicy[policy])
  const data = fs.readFileSync(job.input)
  let out, header
  if (job.mode === 'encrypt') {
    const options = { encryptionContext: JSON.parse(env.HSMKMS_CONTEXT || '{}') }
    if (env.HSMKMS_SUITE) {
      const id = Number(env.HSMKMS_SUITE)
      if (typeof AlgorithmSuiteIdentifier[id] !== 'string') throw new Error('unknown suite ' + env.HSMKMS_SUITE)
      options.suiteId = id
    }
    if (env.HSMKMS_FRAME_LENGTH) options.frameLength = Number(env.HSMKMS_FRAME_LENGTH)
    const r = await encrypt(keyring, data, options)
    out = r.result
    header = r.messageHeader
  } else if (job.mode === 'decrypt') {
    const r = await decrypt(keyring, data)
    out = r.plaintext
    header = r.messageHeader
  } else {
    throw new Error('unknown mode ' + job.mode)
  }
  fs.writeFileSync(job.output, out)
  return {
    version: header.version,
    suiteId: header.suiteId,
    contentType: header.contentType,
    frameLength: header.frameLength,
    encryptionContext: header.encryptionContext,
    edks: header.encryptedDataKeys.map(e => ({ providerId: e.providerId, providerInfo: e.providerInfo })),
  }
}

async function main () {
  const [jobsFile, resultsFile] = process.argv.slice(2)
  const results = []
  for (const job of JSON.parse(fs.readFileSync(jobsFile, 'utf8'))) {
    const start = Date.now()
    try {
      results.push({ header: await run(job), ms: Date.now() - start })
    } catch (e) {
      results.push({ error: String((e && e.stack) || e), ms: Date.now() - start })
    }
  }
  fs.writeFileSync(resultsFile, JSON.stringify(results))
}
main().catch(e => { console.error(e); process.exit(1) })
`

// nodeJob is one job of interopScript.
type nodeJob struct {
	Name   string            `json:"name"` // the test case's, for messages
	Mode   string            `json:"mode"` // "encrypt" or "decrypt"
	Input  string            `json:"input"`
	Output string            `json:"output"`
	Env    map[string]string `json:"env"`
}

// nodeResult is interopScript's result of one job: a header or an error.
type nodeResult struct {
	Header *nodeHeader `json:"header"`
	Error  string      `json:"error"`
	MS     int         `json:"ms"` // how long the job took
}

// nodeHeader is the message header the JavaScript SDK wrote or read.
type nodeHeader struct {
	Version           int               `json:"version"`
	SuiteID           int               `json:"suiteId"`
	ContentType       int               `json:"contentType"`
	FrameLength       int               `json:"frameLength"`
	EncryptionContext map[string]string `json:"encryptionContext"`
	EDKs              []struct {
		ProviderID   string `json:"providerId"`
		ProviderInfo string `json:"providerInfo"`
	} `json:"edks"`
}

// nodeBatch gathers jobs for one run of interopScript, so that each node
// process (half a second to start) serves many messages.
type nodeBatch struct {
	dir     string
	jobs    []nodeJob
	results []nodeResult
}

// add writes input to a file of its own and queues a job on it; it
// returns the job's index.
func (b *nodeBatch) add(t *testing.T, name, mode string, input []byte, env map[string]string) int {
	t.Helper()
	i := len(b.jobs)
	in := filepath.Join(b.dir, fmt.Sprintf("job%03d.in", i))
	if err := os.WriteFile(in, input, 0o600); err != nil {
		t.Fatal(err)
	}
	b.jobs = append(b.jobs, nodeJob{Name: name, Mode: mode, Input: in, Output: filepath.Join(b.dir, fmt.Sprintf("job%03d.out", i)), Env: env})
	return i
}

// run runs interopScript on the jobs queued, with the server's address
// and credentials in its environment: in one node process a CPU (at most
// four), each given about the same work (the 200 KB messages of 1-byte
// frames take seconds each).
func (b *nodeBatch) run(t *testing.T, nodeDir, endpoint string) {
	t.Helper()
	// A job costs about the size of the message it reads or writes, a frame
	// being 32 bytes more than its content, and some fixed work.
	cost := func(j nodeJob) int64 {
		fi, err := os.Stat(j.Input)
		if err != nil {
			t.Fatal(err)
		}
		n := fi.Size()
		if j.Mode == "encrypt" {
			frame, err := strconv.Atoi(cmp.Or(j.Env["HSMKMS_FRAME_LENGTH"], "4096"))
			if err != nil {
				t.Fatal(err)
			}
			n += n / int64(frame) * 32
		}
		return n + 64<<10
	}
	order := make([]int, len(b.jobs))
	costs := make([]int64, len(b.jobs))
	for i, j := range b.jobs {
		order[i], costs[i] = i, cost(j)
	}
	slices.SortStableFunc(order, func(x, y int) int { return cmp.Compare(costs[y], costs[x]) })
	shards := make([][]int, max(1, min(runtime.NumCPU(), 4)))
	loads := make([]int64, len(shards))
	for _, i := range order {
		s := slices.Index(loads, slices.Min(loads))
		shards[s] = append(shards[s], i)
		loads[s] += costs[i]
	}

	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		// The jobs' settings come from them alone, not from the caller's shell.
		return strings.HasPrefix(kv, "HSMKMS_")
	})
	env = append(env, "HSMKMS_ENDPOINT="+endpoint, "HSMKMS_REGION="+interopRegion,
		"HSMKMS_TEST_ACCESS_KEY_ID="+interopAccessKey, "HSMKMS_TEST_SECRET_ACCESS_KEY="+interopSecret,
		"AWS_EC2_METADATA_DISABLED=true")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	b.results = make([]nodeResult, len(b.jobs))
	errs := make([]error, len(shards))
	start := time.Now()
	var wg sync.WaitGroup
	for s, shard := range shards {
		wg.Go(func() { errs[s] = b.runShard(ctx, nodeDir, env, s, shard) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	t.Logf("the JavaScript SDK ran %d jobs in %d node processes in %v", len(b.jobs), len(shards), time.Since(start).Round(time.Millisecond))
	for i, r := range b.results {
		if r.MS >= 1000 {
			t.Logf("job %q (%s) took %d ms", b.jobs[i].Name, b.jobs[i].Mode, r.MS)
		}
	}
}

// runShard runs the jobs of indices shard in one node process, the
// shard-th, and puts their results in b.results.
func (b *nodeBatch) runShard(ctx context.Context, nodeDir string, env []string, shard int, indices []int) error {
	jobs := make([]nodeJob, len(indices))
	for k, i := range indices {
		jobs[k] = b.jobs[i]
	}
	jobsFile := filepath.Join(b.dir, fmt.Sprintf("jobs%d.json", shard))
	resultsFile := filepath.Join(b.dir, fmt.Sprintf("results%d.json", shard))
	js, err := json.Marshal(jobs)
	if err != nil {
		return err
	}
	if err := os.WriteFile(jobsFile, js, 0o600); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "node", "interop.js", jobsFile, resultsFile)
	cmd.Dir, cmd.Env = nodeDir, env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("node interop.js (%d jobs): %v\n%s", len(jobs), err, out)
	}
	out, err := os.ReadFile(resultsFile)
	if err != nil {
		return err
	}
	var results []nodeResult
	if err := json.Unmarshal(out, &results); err != nil || len(results) != len(jobs) {
		return fmt.Errorf("node interop.js wrote %d results for %d jobs (%v): %.500s", len(results), len(jobs), err, out)
	}
	for k, i := range indices {
		b.results[i] = results[k]
	}
	return nil
}

// result returns the header the JavaScript SDK saw in job i and what it
// wrote, failing t if the job failed.
func (b *nodeBatch) result(t *testing.T, i int) (nodeHeader, []byte) {
	t.Helper()
	if i < 0 || i >= len(b.results) {
		t.Fatal("no JavaScript result: the job was not queued (see its prepare subtest)")
	}
	j, r := b.jobs[i], b.results[i]
	if r.Header == nil {
		t.Fatalf("the JavaScript SDK failed to %s %q (%v): %s", j.Mode, j.Name, j.Env, r.Error)
	}
	out, err := os.ReadFile(j.Output)
	if err != nil {
		t.Fatal(err)
	}
	return *r.Header, out
}

// jsEnv is a job's settings: the keyring's keys, generator first, and
// pairs of variable and value.
func jsEnv(keys []string, kv ...string) map[string]string {
	ids, _ := json.Marshal(keys[1:])
	env := map[string]string{"HSMKMS_GENERATOR_KEY_ID": keys[0], "HSMKMS_KEY_IDS": string(ids)}
	for i := 0; i+1 < len(kv); i += 2 {
		env[kv[i]] = kv[i+1]
	}
	return env
}

// checkNodeHeader checks the header the JavaScript SDK saw: s's version
// and ID, the content type and frame length (0: non-framed), the context
// (with the signing key for a signed suite) and the keys, in order.
func checkNodeHeader(t *testing.T, h nodeHeader, s Suite, frameLength int, encCtx map[string]string, keys []string) {
	t.Helper()
	contentType := contentFramed
	if frameLength == 0 {
		contentType = contentUnframed
	}
	if h.Version != int(s.Version) || h.SuiteID != int(s.ID) || h.ContentType != int(contentType) || h.FrameLength != frameLength {
		t.Errorf("the JavaScript SDK saw version %d, suite 0x%04X, content type %d, frame length %d; want %d, 0x%04X, %d, %d",
			h.Version, h.SuiteID, h.ContentType, h.FrameLength, s.Version, s.ID, contentType, frameLength)
	}
	checkContext(t, "the JavaScript SDK's", h.EncryptionContext, s, encCtx)
	var got []string
	for _, e := range h.EDKs {
		if e.ProviderID != ProviderID {
			t.Errorf("the JavaScript SDK saw provider %q, want %q", e.ProviderID, ProviderID)
		}
		got = append(got, e.ProviderInfo)
	}
	if !slices.Equal(got, keys) {
		t.Errorf("the JavaScript SDK saw encrypted data keys of %q, want %q", got, keys)
	}
}

// checkContext checks that got is want with, for a signed suite only,
// the signing key.
func checkContext(t *testing.T, whose string, got map[string]string, s Suite, want map[string]string) {
	t.Helper()
	got = maps.Clone(got)
	if key, ok := got[PublicKeyContextKey]; ok != s.Signed() || (ok && key == "") {
		t.Errorf("%s context has signing key %q; suite %s is signed: %v", whose, key, s, s.Signed())
	}
	delete(got, PublicKeyContextKey)
	if len(got) != 0 || len(want) != 0 {
		if !maps.Equal(got, want) {
			t.Errorf("%s context is %v, want %v", whose, got, want)
		}
	}
}

// messagePrefix is how a message of suite s starts: version 2, or
// version 1 and type 0x80, then the suite ID.
func messagePrefix(s Suite) []byte {
	p := []byte{s.Version}
	if s.Version == 1 {
		p = append(p, typeCustomerAEAD)
	}
	return binary.BigEndian.AppendUint16(p, s.ID)
}

// decryptChecked decrypts msg as a user who knows which suites to allow
// would: a non-committing suite must be refused with ErrUnsupported under
// the default policy and is then decrypted under RequireEncryptAllowDecrypt.
// It checks the plaintext, suite, frame length, context and key.
func decryptChecked(t *testing.T, kms KMS, msg []byte, s Suite, frameLength int, encCtx map[string]string, keyARN string, plain []byte) {
	t.Helper()
	var opts []DecryptOption
	if !s.Committing() {
		var out bytes.Buffer
		if _, err := Decrypt(t.Context(), kms, bytes.NewReader(msg), &out); !errors.Is(err, ErrUnsupported) || out.Len() != 0 {
			t.Errorf("Decrypt of suite 0x%04X under the default policy: %v, %d bytes out; want ErrUnsupported and none", s.ID, err, out.Len())
		}
		opts = append(opts, WithCommitmentPolicy(RequireEncryptAllowDecrypt))
	}
	var out bytes.Buffer
	h, err := Decrypt(t.Context(), kms, bytes.NewReader(msg), &out, opts...)
	if err != nil {
		t.Fatalf("Decrypt: %v", err)
	}
	if !bytes.Equal(out.Bytes(), plain) {
		t.Errorf("decrypted %d bytes, not the %d bytes encrypted", out.Len(), len(plain))
	}
	if h.Version != s.Version || h.Suite.ID != s.ID || h.FrameLength != uint32(frameLength) || h.KeyARN != keyARN {
		t.Errorf("Decrypt saw version %d, suite 0x%04X, frame length %d, key %s; want %d, 0x%04X, %d, %s",
			h.Version, h.Suite.ID, h.FrameLength, h.KeyARN, s.Version, s.ID, frameLength, keyARN)
	}
	checkContext(t, "Decrypt's", h.EncryptionContext, s, encCtx)
}

// interopSizes are the plaintext sizes tried with a frame length: empty,
// one byte, around one frame, and about 200 KB.
func interopSizes(frame int) []int {
	var sizes []int
	for _, n := range []int{0, 1, frame - 1, frame, frame + 1, 200_003} {
		if !slices.Contains(sizes, n) {
			sizes = append(sizes, n)
		}
	}
	return sizes
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

// TestInteropJavaScript runs the AWS Encryption SDK for JavaScript, as its
// users run it, against an hsmkms server on SoftHSM2, both ways: messages
// it writes (with its defaults, with 0x0478, with the suites without key
// commitment, under two keys) decrypt here; messages Encrypt writes, and
// those writeTestMessage writes that Encrypt does not (non-framed, version
// 1), decrypt there; and its messages, altered, fail here as they should.
// The JavaScript jobs run in one batch (a node process a CPU): the
// prepare subtests write what it reads, the others check what it did.
func TestInteropJavaScript(t *testing.T) {
	endpoint := startServer(t)
	client := kms.New(kms.Options{
		Region:       interopRegion,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(interopAccessKey, interopSecret, ""),
	})
	newKey := func(alias string) string {
		created, err := client.CreateKey(t.Context(), &kms.CreateKeyInput{Description: aws.String("esdk interop " + alias)})
		if err != nil {
			t.Fatalf("CreateKey: %v", err)
		}
		if _, err := client.CreateAlias(t.Context(), &kms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: created.KeyMetadata.KeyId}); err != nil {
			t.Fatalf("CreateAlias: %v", err)
		}
		return aws.ToString(created.KeyMetadata.Arn)
	}
	arnA, arnB := newKey("alias/esdk-interop"), newKey("alias/esdk-interop-b")
	sdk := SDKKMS{Client: client}
	nodeDir := installNodeSDK(t)
	batch := &nodeBatch{dir: t.TempDir()}

	// Keys whose UTF-8 byte order ("Purpose" < "app" < "naïve") differs
	// from the JavaScript SDK's localeCompare order.
	mixed := map[string]string{"Purpose": "interop", "app": "hsmkms", "naïve": "✓ ünïcode"}
	contextFor := func(size int) map[string]string {
		if size <= 1 {
			return nil // the SDKs' default: no context
		}
		return mixed
	}
	suiteOf := func(id uint16) Suite {
		s, ok := SuiteByID(id)
		if !ok {
			t.Fatalf("no suite 0x%04X", id)
		}
		return s
	}
	frameName := func(f int) string {
		if f == 0 {
			return "default frame"
		}
		return fmt.Sprintf("frame %d", f)
	}

	// JavaScript to Go: jobs that encrypt in JavaScript.
	type jsCase struct {
		name   string
		suite  Suite // the suite the message must have
		frame  int   // the frame length the message must have
		keys   []string
		encCtx map[string]string
		plain  []byte
		job    int
	}
	addJS := func(name string, s Suite, frame int, keys []string, encCtx map[string]string, plain []byte, settings ...string) *jsCase {
		env := jsEnv(keys, settings...)
		if encCtx != nil {
			ec, _ := json.Marshal(encCtx)
			env["HSMKMS_CONTEXT"] = string(ec)
		}
		return &jsCase{name, s, frame, keys, encCtx, plain, batch.add(t, "js to go/"+name, "encrypt", plain, env)}
	}
	var jsCases []*jsCase
	for _, sc := range []struct {
		name   string
		id     string // HSMKMS_SUITE; empty for the SDK's default
		suite  Suite
		frames []int // 0: none given, the SDK's default of 4096
	}{
		// The JavaScript SDK's default under its default policy is 0x0578.
		{"default suite", "", SuiteSigned, []int{0, 1, 65536}},
		{"0x0478", "0x0478", SuiteUnsigned, []int{1, 4096, 65536}},
	} {
		for _, f := range sc.frames {
			frame := cmp.Or(f, DefaultFrameLength)
			for _, n := range interopSizes(frame) {
				var settings []string
				if sc.id != "" {
					settings = append(settings, "HSMKMS_SUITE", sc.id)
				}
				if f != 0 {
					settings = append(settings, "HSMKMS_FRAME_LENGTH", fmt.Sprint(f))
				}
				jsCases = append(jsCases, addJS(fmt.Sprintf("%s/%s/%d bytes", sc.name, frameName(f), n),
					sc.suite, frame, []string{arnA}, contextFor(n), pattern(n), settings...))
			}
		}
	}
	// The suites without key commitment, which the SDK writes under
	// FORBID_ENCRYPT_ALLOW_DECRYPT only, under keys A and B: its KMS keyring
	// asks GenerateDataKey of A for NumberOfBytes 16, 24 or 32, and has B
	// Encrypt that data key.
	for _, id := range []uint16{0x0378, 0x0346, 0x0214, 0x0178, 0x0146, 0x0114, 0x0078, 0x0046, 0x0014} {
		name := fmt.Sprintf("0x%04X", id)
		jsCases = append(jsCases, addJS("old suites/"+name, suiteOf(id), DefaultFrameLength, []string{arnA, arnB}, mixed, pattern(10_001),
			"HSMKMS_COMMITMENT_POLICY", "FORBID_ENCRYPT_ALLOW_DECRYPT", "HSMKMS_SUITE", name))
	}
	// A keyring of two keys: generator A, and B in keyIds.
	twoKeys := addJS("two keys", SuiteSigned, DefaultFrameLength, []string{arnA, arnB}, mixed, pattern(10_001))
	jsCases = append(jsCases, twoKeys)
	// The message to tamper with: the SDK's defaults, two regular frames
	// and a final one.
	tamperSource := addJS("tamper source", SuiteSigned, DefaultFrameLength, []string{arnA}, map[string]string{"purpose": "tamper"}, pattern(10_001))
	jsCases = append(jsCases, tamperSource)

	// Go to JavaScript: messages Encrypt writes, with its defaults and
	// with SuiteUnsigned, that the SDK decrypts under its default policy.
	type goCase struct {
		name   string
		suite  Suite
		frame  int
		opts   []Option
		keys   []string // the message's keys
		jsKeys []string // the keyring the SDK decrypts with
		encCtx map[string]string
		plain  []byte
		job    int
	}
	var goCases []*goCase
	for _, sc := range []struct {
		name   string
		opts   []Option
		suite  Suite
		frames []int // 0: none given, Encrypt's default of 4096
	}{
		{"default suite", nil, SuiteSigned, []int{0, 1, 65536}},
		{"0x0478", []Option{WithSuite(SuiteUnsigned)}, SuiteUnsigned, []int{1, 4096, 65536}},
	} {
		for _, f := range sc.frames {
			frame := cmp.Or(f, DefaultFrameLength)
			opts := slices.Clone(sc.opts)
			if f != 0 {
				opts = append(opts, WithFrameLength(f))
			}
			for _, n := range interopSizes(frame) {
				goCases = append(goCases, &goCase{fmt.Sprintf("%s/%s/%d bytes", sc.name, frameName(f), n),
					sc.suite, frame, opts, []string{arnA}, []string{arnA}, contextFor(n), pattern(n), -1})
			}
		}
	}
	// A second key, named by its alias: the SDK decrypts with a keyring
	// of that key alone, so through the second encrypted data key.
	goCases = append(goCases,
		&goCase{"additional key/default suite", SuiteSigned, DefaultFrameLength, []Option{WithAdditionalKeys("alias/esdk-interop-b")},
			[]string{arnA, arnB}, []string{arnB}, mixed, pattern(10_001), -1},
		&goCase{"additional key/0x0478", SuiteUnsigned, DefaultFrameLength, []Option{WithSuite(SuiteUnsigned), WithAdditionalKeys(arnB)},
			[]string{arnA, arnB}, []string{arnB}, mixed, pattern(10_001), -1})

	// Messages Encrypt does not write, from writeTestMessage under keys A
	// and B: the SDK decrypts each with a keyring of A and with one of B.
	type testCase struct {
		name  string
		suite Suite
		frame int // 0: non-framed
		plain []byte
		msg   []byte
		jobs  [2]int // keyring A, keyring B
	}
	var testCases []*testCase
	for _, tc := range []struct {
		id    uint16
		frame int
		size  int
	}{
		{0x0478, 0, 10_001}, {0x0578, 0, 10_001}, {0x0578, 0, 0},
		{0x0378, 4096, 10_001}, {0x0378, 0, 10_001},
		{0x0214, 4096, 10_001}, {0x0214, 0, 10_001},
		{0x0178, 4096, 10_001}, {0x0178, 0, 10_001},
		{0x0014, 4096, 10_001}, {0x0014, 0, 10_001},
	} {
		content := "framed"
		if tc.frame == 0 {
			content = "non-framed"
		}
		testCases = append(testCases, &testCase{fmt.Sprintf("0x%04X/%s/%d bytes", tc.id, content, tc.size),
			suiteOf(tc.id), tc.frame, pattern(tc.size), nil, [2]int{-1, -1}})
	}

	onlyAJob := -1
	t.Run("prepare", func(t *testing.T) {
		for _, c := range goCases {
			t.Run("go to js/"+c.name, func(t *testing.T) {
				var msg bytes.Buffer
				h, err := Encrypt(t.Context(), sdk, "alias/esdk-interop", c.encCtx, bytes.NewReader(c.plain), &msg, c.opts...)
				if err != nil {
					t.Fatalf("Encrypt: %v", err)
				}
				var infos []string
				for _, e := range h.EncryptedDataKeys {
					infos = append(infos, e.ProviderInfo)
				}
				if h.KeyARN != arnA || !slices.Equal(infos, c.keys) {
					t.Fatalf("Encrypt used key %s and wrote data keys of %q; want %s and %q", h.KeyARN, infos, arnA, c.keys)
				}
				if !bytes.HasPrefix(msg.Bytes(), messagePrefix(c.suite)) {
					t.Fatalf("Encrypt wrote a message starting %x, want %x", msg.Bytes()[:4], messagePrefix(c.suite))
				}
				c.job = batch.add(t, "go to js/"+c.name, "decrypt", msg.Bytes(), jsEnv(c.jsKeys))
			})
		}
		// The control of the additional-key cases: that keyring does not
		// decrypt a message of A alone.
		t.Run("go to js/additional key/keyring B, message of A alone", func(t *testing.T) {
			var msg bytes.Buffer
			if _, err := Encrypt(t.Context(), sdk, arnA, mixed, bytes.NewReader(plain1k), &msg); err != nil {
				t.Fatalf("Encrypt: %v", err)
			}
			onlyAJob = batch.add(t, "go to js/additional key/keyring B, message of A alone", "decrypt", msg.Bytes(), jsEnv([]string{arnB}))
		})
		for _, c := range testCases {
			t.Run("test messages/"+c.name, func(t *testing.T) {
				c.msg = writeTestMessage(t, sdkLengthKMS{sdk}, arnA, c.suite, mixed, c.plain, c.frame, arnB)
				var settings []string
				if !c.suite.Committing() {
					settings = []string{"HSMKMS_COMMITMENT_POLICY", "FORBID_ENCRYPT_ALLOW_DECRYPT"}
				}
				c.jobs[0] = batch.add(t, "test messages/"+c.name+"/keyring A", "decrypt", c.msg, jsEnv([]string{arnA}, settings...))
				c.jobs[1] = batch.add(t, "test messages/"+c.name+"/keyring B", "decrypt", c.msg, jsEnv([]string{arnB}, settings...))
			})
		}
	})

	batch.run(t, nodeDir, endpoint)

	t.Run("js to go", func(t *testing.T) {
		for _, c := range jsCases {
			t.Run(c.name, func(t *testing.T) {
				h, msg := batch.result(t, c.job)
				checkNodeHeader(t, h, c.suite, c.frame, c.encCtx, c.keys)
				if !bytes.HasPrefix(msg, messagePrefix(c.suite)) {
					t.Fatalf("the JavaScript SDK wrote a message starting %x, want %x", msg[:min(4, len(msg))], messagePrefix(c.suite))
				}
				decryptChecked(t, sdk, msg, c.suite, c.frame, c.encCtx, c.keys[0], c.plain)
			})
		}
		// The message of two keys decrypts through B once A is disabled,
		// and a message of A alone does not.
		t.Run("two keys/key A disabled", func(t *testing.T) {
			_, msg := batch.result(t, twoKeys.job)
			_, onlyA := batch.result(t, tamperSource.job)
			if _, err := client.DisableKey(t.Context(), &kms.DisableKeyInput{KeyId: aws.String(arnA)}); err != nil {
				t.Fatalf("DisableKey: %v", err)
			}
			defer func() {
				if _, err := client.EnableKey(t.Context(), &kms.EnableKeyInput{KeyId: aws.String(arnA)}); err != nil {
					t.Errorf("EnableKey: %v", err)
				}
			}()
			var out bytes.Buffer
			if _, err := Decrypt(t.Context(), sdk, bytes.NewReader(onlyA), &out); !errors.Is(err, ErrDataKey) || out.Len() != 0 {
				t.Errorf("Decrypt of a message of key A alone, A disabled: %v, %d bytes out; want ErrDataKey and none", err, out.Len())
			} else {
				t.Logf("key A disabled, a message of A alone: %v", err)
			}
			decryptChecked(t, sdk, msg, twoKeys.suite, twoKeys.frame, twoKeys.encCtx, arnB, twoKeys.plain)
		})
	})

	t.Run("go to js", func(t *testing.T) {
		for _, c := range goCases {
			t.Run(c.name, func(t *testing.T) {
				h, out := batch.result(t, c.job)
				checkNodeHeader(t, h, c.suite, c.frame, c.encCtx, c.keys)
				if !bytes.Equal(out, c.plain) {
					t.Errorf("the JavaScript SDK decrypted %d bytes, not the %d bytes encrypted", len(out), len(c.plain))
				}
			})
		}
		t.Run("additional key/keyring B, message of A alone", func(t *testing.T) {
			if onlyAJob < 0 {
				t.Fatal("no job (see its prepare subtest)")
			}
			r := batch.results[onlyAJob]
			if r.Header != nil || r.Error == "" {
				t.Fatalf("the JavaScript SDK decrypted a message of key A alone with a keyring of key B: %+v", r.Header)
			}
			first, _, _ := strings.Cut(r.Error, "\n")
			t.Logf("the JavaScript SDK refuses, as it should: %s", first)
		})
	})

	// writeTestMessage's messages decrypt in the JavaScript SDK, which
	// stands for the SDKs that write these forms, and here.
	t.Run("test messages", func(t *testing.T) {
		for _, c := range testCases {
			t.Run(c.name, func(t *testing.T) {
				for i, keyring := range []string{arnA, arnB} {
					t.Run(fmt.Sprintf("js keyring %c", "AB"[i]), func(t *testing.T) {
						h, out := batch.result(t, c.jobs[i])
						checkNodeHeader(t, h, c.suite, c.frame, mixed, []string{arnA, arnB})
						if !bytes.Equal(out, c.plain) {
							t.Errorf("the JavaScript SDK decrypted %d bytes through %s, not the %d bytes encrypted", len(out), keyring, len(c.plain))
						}
					})
				}
				t.Run("go", func(t *testing.T) {
					if c.msg == nil {
						t.Fatal("no message: writeTestMessage failed (see its prepare subtest)")
					}
					decryptChecked(t, sdk, c.msg, c.suite, c.frame, mixed, arnA, c.plain)
				})
			})
		}
	})

	// The SDK's default message, altered: each change fails with the error
	// that fits it, releasing only the plaintext of the frames before it.
	t.Run("tamper", func(t *testing.T) {
		_, msg := batch.result(t, tamperSource.job)
		const frame = DefaultFrameLength
		plain := tamperSource.plain
		o := offsetsOf(msg) // one encrypted data key, as here
		if msg[o.contentType] != contentFramed || binary.BigEndian.Uint32(msg[o.frameLength:]) != frame {
			t.Fatalf("the header does not lay out as offsetsOf says: content type %d, frame length %d",
				msg[o.contentType], binary.BigEndian.Uint32(msg[o.frameLength:]))
		}
		regular, last := len(plain)/frame, len(plain)%frame
		footer := o.tag + tagLen + regular*(4+ivLen+frame+tagLen) + 4 + 4 + ivLen + 4 + last + tagLen
		l := layoutOf(footer, len(plain), frame)
		if l.headerEnd != o.tag+tagLen || len(l.frames) != 3 || int(binary.BigEndian.Uint16(msg[footer:])) != len(msg)-footer-2 {
			t.Fatalf("the message does not lay out as expected: header end %d, frames at %v, footer at %d of %d bytes", l.headerEnd, l.frames, footer, len(msg))
		}
		ecValue := bytes.Index(msg[:l.headerEnd], []byte("purpose\x00\x06tamper")) + len("purpose\x00\x06")
		flip := func(p int) func([]byte) []byte {
			return func(m []byte) []byte { m[p] ^= 0x01; return m }
		}
		cut := func(n int) func([]byte) []byte {
			return func(m []byte) []byte { return m[:n] }
		}
		frame1, frame2, final := l.frames[0], l.frames[1], l.frames[2]
		both := regular * frame // the regular frames' plaintext
		for _, tc := range []struct {
			name     string
			edit     func([]byte) []byte
			want     error
			released int // plaintext bytes Decrypt writes
		}{
			{"untouched", func(m []byte) []byte { return m }, nil, len(plain)},
			{"header/message ID", flip(3 + 7), ErrAuthentication, 0},
			{"header/frame length", flip(o.frameLength + 3), ErrAuthentication, 0},
			{"header/key commitment", flip(o.commit + 5), ErrAuthentication, 0},
			{"header/authentication tag", flip(o.tag + tagLen - 1), ErrAuthentication, 0},
			// KMS refuses the data key under another context.
			{"header/encryption context", flip(ecValue), ErrDataKey, 0},
			{"frame 1/tag", flip(frame2 - 1), ErrAuthentication, 0},
			{"frame 2/sequence number", flip(frame2 + 3), ErrAuthentication, frame},
			{"frame 2/ciphertext", flip(frame2 + 4 + ivLen + 100), ErrAuthentication, frame},
			{"final frame/ciphertext", flip(final + 4 + 4 + ivLen + 4 + 10), ErrAuthentication, both},
			{"signature/last byte", flip(len(msg) - 1), ErrAuthentication, both},
			{"signature/in r", flip(footer + 2 + 10), ErrAuthentication, both},
			{"signature/DER tag", flip(footer + 2), ErrAuthentication, both},
			{"signature/length one less", func(m []byte) []byte { m[footer+1]--; return m }, ErrAuthentication, both},
			{"footer/length one more", func(m []byte) []byte { m[footer+1]++; return m }, ErrTruncated, both},
			{"footer/cut by one byte", cut(len(msg) - 1), ErrTruncated, both},
			{"footer/cut after the length", cut(footer + 2), ErrTruncated, both},
			{"footer/cut inside the length", cut(footer + 1), ErrTruncated, both},
			{"footer/missing", cut(footer), ErrTruncated, both},
			{"footer/data after it", func(m []byte) []byte { return append(m, 0) }, ErrMalformed, both},
			{"body/cut in frame 1", cut(frame1 + 100), ErrTruncated, 0},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var out bytes.Buffer
				_, err := Decrypt(t.Context(), sdk, bytes.NewReader(tc.edit(bytes.Clone(msg))), &out)
				if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
					t.Errorf("Decrypt: %v; want %v", err, tc.want)
				}
				if !bytes.Equal(out.Bytes(), plain[:tc.released]) {
					t.Errorf("Decrypt wrote %d bytes, want the first %d of the plaintext", out.Len(), tc.released)
				}
			})
		}
	})

	// The server refuses a data key under the wrong context or key.
	t.Run("wrong context refused by KMS", func(t *testing.T) {
		var msg bytes.Buffer
		if _, err := Encrypt(t.Context(), sdk, arnA, map[string]string{"purpose": "a"}, bytes.NewReader(plain1k), &msg, WithSuite(SuiteUnsigned)); err != nil {
			t.Fatal(err)
		}
		blob := msg.Bytes()
		o := offsetsOf(blob)
		if _, err := sdk.Decrypt(t.Context(), blob[o.edk:o.contentType], arnA, map[string]string{"purpose": "b"}); err == nil {
			t.Fatal("KMS decrypted the data key under another encryption context")
		}
		if _, err := sdk.Decrypt(t.Context(), blob[o.edk:o.contentType], arnB, map[string]string{"purpose": "a"}); err == nil {
			t.Fatalf("KMS decrypted the data key of %s naming %s", arnA, arnB)
		}
	})
}

var plain1k = pattern(1024)
