package tests

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// TestAuditReopenOnHangup proves serve reopens its audit file on SIGHUP
// (issue 18): after the file is moved away, as logrotate does, and the
// server signalled, new records go to a new file at the path, the moved
// one keeps the old records, and the server keeps serving.
func TestAuditReopenOnHangup(t *testing.T) {
	s, srv, auditLog := startAuditDev(t)
	env := srv.clientEnv()
	first := createKey(s, env, "before rotation")
	waitContains(t, auditLog, first)

	rotated := auditLog + ".1"
	if err := os.Rename(auditLog, rotated); err != nil {
		t.Fatal(err)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reopen is asynchronous: keys made until the new file appears
	// may land in either file; the one made after it must be in the new.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(auditLog); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new audit file at %s after SIGHUP; server stderr:\n%s", auditLog, srv.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	second := createKey(s, env, "after rotation")
	waitContains(t, auditLog, second)
	old, err := os.ReadFile(rotated)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(old), first) || strings.Contains(string(old), second) {
		t.Errorf("the moved file holds the first key %v and the second %v; want only the first",
			strings.Contains(string(old), first), strings.Contains(string(old), second))
	}
	if st, err := os.Stat(auditLog); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the new audit file: %v, %v; want mode 0600", st, err)
	}
}

// startAuditDev starts a dev server writing its audit trail to a file of
// the test's, and returns the file's path.
func startAuditDev(t *testing.T) (*sandbox, *server, string) {
	t.Helper()
	s := newSandbox(t)
	dir := t.TempDir()
	auditLog := filepath.Join(dir, "audit.log")
	srv := s.startServer("", hsmkmsBin, "serve", "--dev", "--dev-dir", filepath.Join(dir, "dev"),
		"--listen", "127.0.0.1:"+freePort(t), "--audit-log", auditLog)
	return s, srv, auditLog
}

// waitContains waits until the file at path holds s.
func waitContains(t *testing.T, path, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), s) {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(path)
			t.Fatalf("%s never held %q:\n%s", path, s, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAuditNamesPrincipal proves an audit record names the principal by
// its name beside its access key ID (issue 18).
func TestAuditNamesPrincipal(t *testing.T) {
	s, srv, auditLog := startAuditDev(t)
	env := srv.clientEnv()
	key := createKey(s, env, "named principal")
	p := decode[struct{ AccessKeyId, SecretAccessKey string }](t,
		s.run(env, "--output", "json", "principal", "create", "billing-app", "--allow", "kms:GenerateDataKey="+key))
	appEnv := append(slices.Clone(env), "AWS_ACCESS_KEY_ID="+p.AccessKeyId, "AWS_SECRET_ACCESS_KEY="+p.SecretAccessKey)
	s.must(appEnv, "datakey", "--key", key)
	want := `"principal":"` + p.AccessKeyId + `","principal_name":"billing-app","action":"kms:GenerateDataKey"`
	waitContains(t, auditLog, want)
}

// TestAuditWriteFailure proves serve fails closed when its audit trail
// cannot be written: with the audit path re-pointed at /dev/full (every
// write fails with ENOSPC, as on a full disk) and reopened on SIGHUP,
// GenerateDataKey through the real SDK answers KMSInternalException and
// no data key, the server logs the failure once however many requests
// fail, and once the path is a writable file again and reopened,
// requests succeed and are recorded.
func TestAuditWriteFailure(t *testing.T) {
	s := newSandbox(t)
	dir := t.TempDir()
	auditLog, real := filepath.Join(dir, "audit.log"), filepath.Join(dir, "real.log")
	point := func(target string) {
		t.Helper()
		tmp := auditLog + ".new"
		if err := os.Symlink(target, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, auditLog); err != nil {
			t.Fatal(err)
		}
	}
	point(real)
	srv := s.startServer("", hsmkmsBin, "serve", "--dev", "--dev-dir", filepath.Join(dir, "dev"),
		"--listen", "127.0.0.1:"+freePort(t), "--audit-log", auditLog)
	key := createKey(s, srv.clientEnv(), "audit failure")
	client := kms.New(kms.Options{
		Region:       srv.exports["AWS_REGION"],
		Credentials:  credentials.NewStaticCredentialsProvider(srv.exports["AWS_ACCESS_KEY_ID"], srv.exports["AWS_SECRET_ACCESS_KEY"], ""),
		BaseEndpoint: aws.String(srv.exports["HSMKMS_ENDPOINT"]),
		Retryer:      aws.NopRetryer{},
	})
	generate := func() (*kms.GenerateDataKeyOutput, error) {
		return client.GenerateDataKey(ctxT(t), &kms.GenerateDataKeyInput{KeyId: aws.String(key), KeySpec: types.DataKeySpecAes256})
	}

	point("/dev/full")
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reopen is asynchronous: requests succeed until it is done.
	var out *kms.GenerateDataKeyOutput
	var err error
	eventually(t, 10*time.Second, "a request failing once the audit trail is /dev/full", func() bool {
		out, err = generate()
		return err != nil
	})
	if errType(err) != "KMSInternalException" || !strings.Contains(err.Error(), "the audit record of this request could not be written") {
		t.Fatalf("GenerateDataKey with the audit trail failing: %v, want KMSInternalException for the unwritten record", err)
	}
	if out != nil {
		t.Fatal("GenerateDataKey returned a data key whose record was lost")
	}
	for range 3 {
		if _, err := generate(); errType(err) != "KMSInternalException" {
			t.Fatalf("GenerateDataKey with the audit trail failing: %v", err)
		}
	}
	if n := strings.Count(srv.stderr.String(), "writing the audit trail failed"); n != 1 {
		t.Errorf("the server logged the audit failure %d times, want once:\n%s", n, srv.stderr)
	}
	if strings.Contains(srv.stderr.String(), "request failed") {
		t.Errorf("each failed request logged besides the failure:\n%s", srv.stderr)
	}

	point(real)
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a request succeeding once the audit trail is a file again", func() bool {
		out, err = generate()
		return err == nil
	})
	id, ok := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	if !ok {
		t.Fatal("no request ID in the response")
	}
	waitContains(t, real, `"request_id":"`+id+`"`)
	// The four requests above were lost, and so was any request the loop
	// sent before the reopen took effect: at least four, counted once. The
	// server logs the recovery before it answers, but its standard error
	// reaches srv.stderr through a pipe and a copying goroutine: wait for
	// the line rather than read the buffer at once.
	waitStderr(t, srv, 0, "the audit trail is written again")
	logged := regexp.MustCompile(`the audit trail is written again: records_lost=(\d+)`).FindAllStringSubmatch(srv.stderr.String(), -1)
	if len(logged) != 1 {
		t.Fatalf("the server logged the recovery %d times, want once:\n%s", len(logged), srv.stderr)
	}
	if lost, _ := strconv.Atoi(logged[0][1]); lost < 4 {
		t.Errorf("the recovery counts %d lost records, want at least the 4 failed requests:\n%s", lost, srv.stderr)
	}
}
