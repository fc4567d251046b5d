package tests

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/hsmkms/hsmkms/service/api/adminclient"
	"github.com/hsmkms/hsmkms/service/store/postgres/pgtest"
	"github.com/hsmkms/hsmkms/softhsm"
)

// cluster is N `hsmkms serve` processes of the built binary sharing one
// SoftHSM2 token directory and one PostgreSQL database, as replicas behind
// a load balancer do.
type cluster struct {
	t        testing.TB
	s        *sandbox
	pg       *pgtest.Server
	tok      clusterToken
	storeURL string // without the password, which is in pwFile
	pwFile   string
	dataDir  string // the embedded store's directory, when storeURL is ""
	root     aws.Credentials
	replicas []*replica
}

// clusterToken is the token the replicas serve from: a module, a label,
// its PIN and what the module needs in the environment.
type clusterToken struct {
	ModulePath, Label, PIN string
	Env                    []string
}

// softhsmToken is a SoftHSM2 token as a cluster's.
func softhsmToken(tok *softhsm.Token) clusterToken {
	return clusterToken{ModulePath: tok.ModulePath, Label: tok.Label, PIN: tok.PIN, Env: []string{tok.Env()}}
}

// replica is one server process of a cluster.
type replica struct {
	c        *cluster
	n        int
	dir      string
	port     string
	cmd      *exec.Cmd
	stderr   *lockedBuffer
	exited   chan struct{}
	endpoint string
	killed   bool
}

const clusterRegion = "us-east-1"

// newCluster starts PostgreSQL, makes a token and starts n replicas on
// them at the same instant (they migrate the schema and create root
// together).
func newCluster(t testing.TB, n int) *cluster {
	t.Helper()
	c := &cluster{t: t, s: newSandbox(t), pg: pgtest.Start(t)}
	tok, err := softhsm.New(t.Context(), softhsm.Config{Dir: t.TempDir(), Label: "replicas",
		PIN: softhsm.TestPIN, SOPIN: softhsm.TestSOPIN})
	if err != nil {
		t.Fatal(err)
	}
	c.tok = softhsmToken(tok)
	db := c.pg.NewDatabase(t)
	c.storeURL = c.pg.URLWithoutPassword(db)
	c.pwFile = filepath.Join(t.TempDir(), "pgpassword")
	if err := os.WriteFile(c.pwFile, []byte(c.pg.Password()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var b [20]byte
	_, _ = rand.Read(b[:])
	c.root = aws.Credentials{AccessKeyID: "AKIAREPLICASROOT0001", SecretAccessKey: hex.EncodeToString(b[:])}
	for i := range n {
		c.replicas = append(c.replicas, c.launch(i))
	}
	for _, r := range c.replicas {
		r.waitServing()
	}
	return c
}

// launch starts replica i without waiting for it.
func (c *cluster) launch(i int) *replica {
	r := &replica{c: c, n: i, dir: c.t.TempDir(), port: freePort(c.t), stderr: &lockedBuffer{}, exited: make(chan struct{})}
	r.endpoint = "http://127.0.0.1:" + r.port
	if c.dataDir != "" {
		r.dir = c.dataDir
	}
	args := []string{"--log-level", "info", "serve",
		"--pkcs11-module", c.tok.ModulePath, "--token-label", c.tok.Label,
		"--data-dir", r.dir, "--listen", "127.0.0.1:" + r.port, "--metrics-listen", "off",
		"--audit-log", filepath.Join(r.dir, "audit.log")}
	if c.storeURL != "" {
		args = append(args, "--store", c.storeURL, "--store-password-file", c.pwFile)
	}
	r.cmd = exec.Command(hsmkmsBin, args...)
	r.cmd.Env = append(append(slices.Clone(c.s.env), c.tok.Env...), "HSMKMS_PIN="+c.tok.PIN,
		"HSMKMS_ROOT_ACCESS_KEY_ID="+c.root.AccessKeyID, "HSMKMS_ROOT_SECRET_ACCESS_KEY="+c.root.SecretAccessKey)
	r.cmd.Stdout, r.cmd.Stderr = &lockedBuffer{}, r.stderr
	if err := r.cmd.Start(); err != nil {
		c.t.Fatalf("starting replica %d: %v", i, err)
	}
	go func() {
		_ = r.cmd.Wait()
		close(r.exited)
	}()
	c.t.Cleanup(r.stop)
	return r
}

// waitServing waits until the replica says it serves.
func (r *replica) waitServing() {
	r.c.t.Helper()
	deadline := time.Now().Add(startTimeout)
	for !strings.Contains(r.stderr.String(), "hsmkms: serving the KMS API at") {
		select {
		case <-r.exited:
			r.c.t.Fatalf("replica %d exited (%v) before serving\nstderr:\n%s", r.n, r.cmd.ProcessState, r.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.c.t.Fatalf("replica %d did not serve within %v\nstderr:\n%s", r.n, startTimeout, r.stderr)
		}
	}
}

// kill stops the replica with SIGKILL, as a crash would.
func (r *replica) kill() {
	r.killed = true
	_ = r.cmd.Process.Kill()
	<-r.exited
}

// stop sends SIGTERM and waits; a replica still running must exit 0.
func (r *replica) stop() {
	if r.killed {
		return
	}
	select {
	case <-r.exited:
		r.c.t.Errorf("replica %d exited by itself (%v)\nstderr:\n%s", r.n, r.cmd.ProcessState, r.stderr)
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(stopTimeout):
		_ = r.cmd.Process.Kill()
		<-r.exited
		r.c.t.Errorf("replica %d did not exit within %v of SIGTERM", r.n, stopTimeout)
		return
	}
	if code := r.cmd.ProcessState.ExitCode(); code != 0 {
		r.c.t.Errorf("replica %d exited %d on SIGTERM\nstderr:\n%s", r.n, code, r.stderr)
	}
}

// userKMS is the aws-sdk-go-v2 KMS client as a user configures it:
// config.LoadDefaultConfig with the SDK's own retryer, HTTP client and
// timeouts, given only the replica's endpoint, a region and creds (a user
// would have them in the environment or ~/.aws). Interop tests use it.
func (r *replica) userKMS(creds aws.Credentials) *kms.Client {
	r.c.t.Helper()
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithRegion(clusterRegion),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, "")))
	if err != nil {
		r.c.t.Fatalf("config.LoadDefaultConfig: %v", err)
	}
	return kms.NewFromConfig(cfg, func(o *kms.Options) { o.BaseEndpoint = aws.String(r.endpoint) })
}

// kms is the real aws-sdk-go-v2 client of one replica with creds and no
// retries: the tests count every failure.
func (r *replica) kms(creds aws.Credentials) *kms.Client {
	return kms.New(kms.Options{
		Region:       clusterRegion,
		Credentials:  credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, ""),
		BaseEndpoint: aws.String(r.endpoint),
		HTTPClient:   &http.Client{Timeout: 30 * time.Second},
		Retryer:      aws.NopRetryer{},
	})
}

func (r *replica) admin() *adminclient.Client {
	return adminclient.New(r.endpoint, clusterRegion, r.c.root)
}

// ready reports GET /readyz's status.
func (r *replica) ready() int {
	resp, err := http.Get(r.endpoint + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// holdsLease reports whether the replica's log says it took the
// maintenance lease after byte offset from of its standard error.
func (r *replica) tookLeaseSince(from int) bool {
	out := r.stderr.String()
	return len(out) > from && strings.Contains(out[from:], "took the maintenance lease")
}

// eventually polls cond every 10 ms until it holds, failing t after within.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), cmdTimeout)
	t.Cleanup(cancel)
	return ctx
}

func errType(err error) string {
	if err == nil {
		return ""
	}
	var code interface{ ErrorCode() string }
	if errors.As(err, &code) {
		return code.ErrorCode()
	}
	return fmt.Sprintf("%T", err)
}
