package service

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/audit"
	"github.com/hsmkms/hsmkms/service/policy"
	"github.com/hsmkms/hsmkms/service/store/bolt"
	"github.com/hsmkms/hsmkms/softhsm"
)

// env is the package's private SoftHSM2 store, made once per test run.
var env *softhsm.Token

const testLabel = "service-test"

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		os.Exit(crashChild())
	}
	os.Exit(softhsm.RunTests(m, testLabel, func(t *softhsm.Token) { env = t }))
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of loggers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// clock is a test clock that only moves when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is a Service on the package's token and a fresh store, with its
// audit trail and logs captured.
type fixture struct {
	svc   *Service
	tok   *hsm.Token
	dir   string
	audit *syncBuffer
	logs  *syncBuffer
	clock *clock
}

// newFixture opens the token and a bolt store in dir (a new temporary dir
// when empty) and makes a Service; change adjusts its Config.
func newFixture(t testing.TB, dir string, change ...func(*Config)) *fixture {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	f := &fixture{dir: dir, audit: &syncBuffer{}, logs: &syncBuffer{},
		clock: &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}
	logger := hclog.New(&hclog.LoggerOptions{Output: f.logs, Level: hclog.Trace, JSONFormat: true})
	tok, err := hsm.Open(t.Context(), hsm.Config{ModulePath: env.ModulePath, TokenLabel: testLabel,
		PIN: hsm.NewPIN(softhsm.TestPIN), Logger: logger})
	if err != nil {
		t.Fatalf("hsm.Open: %v", err)
	}
	st, err := bolt.Open(filepath.Join(dir, "hsmkms.db"))
	if err != nil {
		tok.Close()
		t.Fatalf("bolt.Open: %v", err)
	}
	cfg := Config{Store: st, HSM: tok, Logger: logger, Audit: audit.New(f.audit), Now: f.clock.Now}
	for _, c := range change {
		c(&cfg)
	}
	if _, ok := cfg.Store.(rerunStore); rerunUpdates && !ok {
		cfg.Store = rerunStore{cfg.Store}
	}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.svc, f.tok = svc, tok
	t.Cleanup(func() {
		svc.Close()
		st.Close()
		tok.Close()
	})
	return f
}

// admin is a context whose caller may do anything.
func admin(t testing.TB) context.Context {
	return WithCaller(t.Context(), Caller{AccessKeyID: "AKIAADMIN", Source: "127.0.0.1",
		Statements: []policy.Statement{{Effect: "Allow", Actions: []string{"kms:*"}, Resources: []string{"*"}}}})
}

// as is a context whose caller has the given statements.
func as(t testing.TB, id string, stmts ...policy.Statement) context.Context {
	return WithCaller(t.Context(), Caller{AccessKeyID: id, Source: "127.0.0.1", Statements: stmts})
}

// createKey makes a key as admin and returns its ID.
func (f *fixture) createKey(t testing.TB, in CreateKeyInput) string {
	t.Helper()
	out, err := f.svc.CreateKey(admin(t), in)
	if err != nil {
		t.Fatalf("CreateKey(%+v): %v", in, err)
	}
	return out.KeyMetadata.KeyId
}
