package audit_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hsmkms/hsmkms/service/audit"
)

// hclogKeys are the keys go-hclog adds to every JSON line.
var hclogKeys = []string{"@level", "@message", "@module", "@timestamp"}

// decodeLines splits out into lines and decodes each as one JSON object.
func decodeLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	if out != "" && !strings.HasSuffix(out, "\n") {
		t.Fatalf("output does not end in a newline: %q", out)
	}
	var recs []map[string]any
	for line := range strings.SplitSeq(strings.TrimSuffix(out, "\n"), "\n") {
		if out == "" {
			break
		}
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(line))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("line %q is not a JSON object: %v", line, err)
		}
		if dec.More() {
			t.Fatalf("line %q holds more than one JSON value", line)
		}
		flattenAudit(m)
		recs = append(recs, m)
	}
	return recs
}

// TestAuditLogFields proves that Log writes exactly one parseable JSON line
// per record, with every set field under its documented name and type, the
// empty optional fields omitted, and values that need escaping kept intact.
func TestAuditLogFields(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 890123456, time.FixedZone("CET", 3600))
	tests := []struct {
		name string
		rec  audit.Record
		want map[string]any // every key the line must have besides hclog's own
	}{
		{
			name: "every field",
			rec: audit.Record{Time: at, RequestID: "req-1", Principal: "AKIAEXAMPLE", Action: "kms:Decrypt",
				KeyID: "1234abcd-12ab-34cd-56ef-1234567890ab", KeyVersion: 7, Alias: "alias/app",
				EncryptionContext: map[string]string{"purpose": "test", "tenant": "t1"},
				Source:            "10.0.0.1:4242", Outcome: audit.Failed, ErrorType: "InvalidCiphertextException"},
			want: map[string]any{
				"time": "2026-03-04T04:06:07.890123456Z", "request_id": "req-1", "principal": "AKIAEXAMPLE",
				"action": "kms:Decrypt", "key_id": "1234abcd-12ab-34cd-56ef-1234567890ab", "key_version": json.Number("7"),
				"alias": "alias/app", "encryption_context": map[string]any{"purpose": "test", "tenant": "t1"},
				"source": "10.0.0.1:4242", "outcome": "failed", "error_type": "InvalidCiphertextException",
			},
		},
		{
			name: "allowed, no key",
			rec: audit.Record{Time: at, RequestID: "req-2", Principal: "AKIAEXAMPLE", Action: "kms:GenerateRandom",
				Source: "10.0.0.1:4242", Outcome: audit.Allowed},
			want: map[string]any{
				"time": "2026-03-04T04:06:07.890123456Z", "request_id": "req-2", "principal": "AKIAEXAMPLE",
				"action": "kms:GenerateRandom", "source": "10.0.0.1:4242", "outcome": "allowed",
			},
		},
		{
			name: "denied, no caller: empty request ID and principal stay",
			rec:  audit.Record{Time: at, Action: "kms:ListKeys", Outcome: audit.Denied, ErrorType: "AccessDeniedException"},
			want: map[string]any{
				"time": "2026-03-04T04:06:07.890123456Z", "request_id": "", "principal": "",
				"action": "kms:ListKeys", "outcome": "denied", "error_type": "AccessDeniedException",
			},
		},
		{
			name: "key without version, empty context map",
			rec: audit.Record{Time: at, RequestID: "req-3", Principal: "p", Action: "kms:DescribeKey",
				KeyID: "k", EncryptionContext: map[string]string{}, Outcome: audit.Allowed},
			want: map[string]any{
				"time": "2026-03-04T04:06:07.890123456Z", "request_id": "req-3", "principal": "p",
				"action": "kms:DescribeKey", "key_id": "k", "outcome": "allowed",
			},
		},
		{
			name: "values that need escaping cannot forge a second line or field",
			rec: audit.Record{Time: at, RequestID: "r\n{\"outcome\":\"allowed\"}", Principal: "p\"q\\", Action: "kms:Encrypt",
				KeyID: "k", KeyVersion: 1, EncryptionContext: map[string]string{"a\nb": "c\r\n\"d\"", "ünï": "<&>"},
				Source: "\u2028", Outcome: audit.Denied, ErrorType: "AccessDeniedException"},
			want: map[string]any{
				"time": "2026-03-04T04:06:07.890123456Z", "request_id": "r\n{\"outcome\":\"allowed\"}", "principal": "p\"q\\",
				"action": "kms:Encrypt", "key_id": "k", "key_version": json.Number("1"), "source": "\u2028",
				"outcome": "denied", "error_type": "AccessDeniedException",
				"encryption_context": map[string]any{"a\nb": "c\r\n\"d\"", "ünï": "<&>"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			audit.New(&buf).Log(tt.rec)
			if n := strings.Count(buf.String(), "\n"); n != 1 {
				t.Fatalf("Log wrote %d lines, want 1: %q", n, buf.String())
			}
			recs := decodeLines(t, buf.String())
			got := recs[0]
			for _, k := range hclogKeys {
				if _, ok := got[k]; !ok {
					t.Errorf("line lacks hclog's %s: %v", k, got)
				}
				delete(got, k)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("record fields\n got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

// TestAuditLogOutcomeConstants pins the outcome strings the audit trail's
// readers depend on.
func TestAuditLogOutcomeConstants(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{audit.Allowed, "allowed"}, {audit.Denied, "denied"}, {audit.Failed, "failed"},
	} {
		if tt.got != tt.want {
			t.Errorf("outcome %q, want %q", tt.got, tt.want)
		}
	}
}

// lineWriter records each Write call and fails the test's check if two
// overlap. It has no lock around its slice on purpose: the race detector
// then reports any two Writes the Logger lets overlap.
type lineWriter struct {
	writes   []string
	inFlight atomic.Int32
	overlap  atomic.Bool
}

func (w *lineWriter) Write(p []byte) (int, error) {
	if w.inFlight.Add(1) != 1 {
		w.overlap.Store(true)
	}
	defer w.inFlight.Add(-1)
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

// TestAuditLogConcurrent proves that concurrent Log calls write whole
// lines, several records to a Write at most (group commit) but never two
// Writes at once, so that no record is split, interleaved, duplicated or
// lost.
func TestAuditLogConcurrent(t *testing.T) {
	for _, tt := range []struct {
		name                string
		goroutines, perG    int
		contextEntries, pad int
	}{
		{"many small", 16, 200, 1, 0},
		{"fewer large", 8, 50, 40, 2000},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := &lineWriter{}
			l := audit.New(w)
			ec := map[string]string{}
			for i := range tt.contextEntries {
				ec[fmt.Sprintf("k%02d", i)] = strings.Repeat("v", tt.pad/max(tt.contextEntries, 1))
			}
			var wg sync.WaitGroup
			for g := range tt.goroutines {
				wg.Go(func() {
					for i := range tt.perG {
						l.Log(audit.Record{Time: time.Now(), RequestID: fmt.Sprintf("g%d-r%d", g, i),
							Principal: "p", Action: "kms:Encrypt", KeyID: "k", KeyVersion: 1,
							EncryptionContext: ec, Outcome: audit.Allowed})
					}
				})
			}
			wg.Wait()
			if w.overlap.Load() {
				t.Fatal("two Writes overlapped")
			}
			want := tt.goroutines * tt.perG
			seen := map[string]bool{}
			for _, chunk := range w.writes {
				if !strings.HasSuffix(chunk, "\n") {
					t.Fatalf("a write does not end a line: %q", chunk)
				}
				for _, m := range decodeLines(t, chunk) {
					id, _ := m["request_id"].(string)
					if seen[id] {
						t.Fatalf("request %q written twice", id)
					}
					seen[id] = true
					if got := m["encryption_context"]; len(ec) > 0 && len(got.(map[string]any)) != len(ec) {
						t.Fatalf("request %q: encryption context has %d entries, want %d", id, len(got.(map[string]any)), len(ec))
					}
				}
			}
			if len(seen) != want {
				t.Fatalf("%d distinct records, want %d", len(seen), want)
			}
			t.Logf("%d records in %d writes", want, len(w.writes))
		})
	}
}

// idWriter records the request IDs it has been written.
type idWriter struct {
	mu      sync.Mutex
	written map[string]bool
	writes  int
}

func (w *idWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.writes++
	defer w.mu.Unlock()
	for line := range strings.SplitSeq(strings.TrimSuffix(string(p), "\n"), "\n") {
		var m struct {
			Audit struct {
				RequestID string `json:"request_id"`
			} `json:"audit"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			return 0, err
		}
		w.written[m.Audit.RequestID] = true
	}
	return len(p), nil
}

func (w *idWriter) has(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.written[id]
}

// TestAuditLogReturnsAfterWrite proves the guarantee requests rely on:
// Log returns only once the writer has its record, also when records of
// concurrent callers are written together.
func TestAuditLogReturnsAfterWrite(t *testing.T) {
	w := &idWriter{written: map[string]bool{}}
	l := audit.New(w)
	var wg sync.WaitGroup
	var early atomic.Int32
	for g := range 16 {
		wg.Go(func() {
			for i := range 20 {
				id := fmt.Sprintf("g%d-r%d", g, i)
				l.Log(audit.Record{Time: time.Now(), RequestID: id, Principal: "p", Action: "kms:Decrypt", Outcome: audit.Allowed})
				if !w.has(id) {
					early.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := early.Load(); n != 0 {
		t.Fatalf("Log returned %d times before the writer had the record", n)
	}
	if len(w.written) != 16*20 {
		t.Fatalf("%d records written, want %d", len(w.written), 16*20)
	}
	t.Logf("%d records in %d writes", len(w.written), w.writes)
}

// failingWriter fails every third Write, as a full disk fails some, and
// remembers which request IDs each kind of Write held.
type failingWriter struct {
	mu            sync.Mutex
	writes        int
	written, lost map[string]bool
}

var errDiskFull = errors.New("no space left on device")

func (w *failingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	into, err := w.written, error(nil)
	if w.writes%3 == 0 {
		into, err = w.lost, errDiskFull
	}
	for line := range strings.SplitSeq(strings.TrimSuffix(string(p), "\n"), "\n") {
		var m struct {
			Audit struct {
				RequestID string `json:"request_id"`
			} `json:"audit"`
		}
		if jerr := json.Unmarshal([]byte(line), &m); jerr != nil {
			return 0, jerr
		}
		into[m.Audit.RequestID] = true
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// TestAuditLogWriteError proves that Log tells each caller what became of
// its own record when writes fail: an error when the Write that held it
// failed, also when that Write held other callers' records (group commit),
// and nil only when it was written.
func TestAuditLogWriteError(t *testing.T) {
	w := &failingWriter{written: map[string]bool{}, lost: map[string]bool{}}
	l := audit.New(w)
	var wg sync.WaitGroup
	var wrong atomic.Int32
	var failed atomic.Int32
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				id := fmt.Sprintf("g%d-r%d", g, i)
				err := l.Log(audit.Record{Time: time.Now(), RequestID: id, Principal: "p", Action: "kms:Decrypt", Outcome: audit.Allowed})
				w.mu.Lock()
				written, lost := w.written[id], w.lost[id]
				w.mu.Unlock()
				switch {
				case err == nil && !written, err != nil && (!lost || !errors.Is(err, errDiskFull)):
					wrong.Add(1)
				case err != nil:
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := wrong.Load(); n != 0 {
		t.Fatalf("%d callers were told the wrong fate of their record", n)
	}
	if failed.Load() == 0 || len(w.written) == 0 {
		t.Fatalf("%d failed and %d written records: the test did not exercise both", failed.Load(), len(w.written))
	}
	if len(w.written)+len(w.lost) != 16*50 {
		t.Fatalf("%d records reached the writer, want %d", len(w.written)+len(w.lost), 16*50)
	}
}

// TestAuditDiscard proves that Discard's Logger writes nothing anywhere:
// not to hclog's default output, standard error or standard output.
func TestAuditDiscard(t *testing.T) {
	recs := []audit.Record{
		{},
		{Time: time.Now(), RequestID: "r", Principal: "p", Action: "kms:Decrypt", KeyID: "k", KeyVersion: 2,
			Alias: "alias/a", EncryptionContext: map[string]string{"a": "b"}, Source: "s",
			Outcome: audit.Failed, ErrorType: "InvalidCiphertextException"},
	}
	var def bytes.Buffer
	oldDefault, oldErr, oldOut := hclog.DefaultOutput, os.Stderr, os.Stdout
	stderr, err := os.Create(t.TempDir() + "/stderr")
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := os.Create(t.TempDir() + "/stdout")
	if err != nil {
		t.Fatal(err)
	}
	hclog.DefaultOutput, os.Stderr, os.Stdout = &def, stderr, stdout
	func() {
		defer func() { hclog.DefaultOutput, os.Stderr, os.Stdout = oldDefault, oldErr, oldOut }()
		l := audit.Discard()
		for _, r := range recs {
			l.Log(r)
		}
	}()
	for _, tt := range []struct {
		name string
		size func() int64
	}{
		{"hclog.DefaultOutput", func() int64 { return int64(def.Len()) }},
		{"stderr", func() int64 { fi, _ := stderr.Stat(); return fi.Size() }},
		{"stdout", func() int64 { fi, _ := stdout.Stat(); return fi.Size() }},
	} {
		if n := tt.size(); n != 0 {
			t.Errorf("Discard wrote %d bytes to %s", n, tt.name)
		}
	}
	stderr.Close()
	stdout.Close()
}

// flattenAudit lifts the fields of an audit record, which hclog writes as
// the line's "audit" object, to the top of the decoded line.
func flattenAudit(m map[string]any) {
	if rec, ok := m["audit"].(map[string]any); ok {
		delete(m, "audit")
		for k, v := range rec {
			m[k] = v
		}
	}
}

// BenchmarkLog measures one record of a GenerateDataKey request, the cost
// every request pays before it is answered.
func BenchmarkLog(b *testing.B) {
	l := audit.New(io.Discard)
	rec := audit.Record{Time: time.Now(), RequestID: "0f0e0d0c-0b0a-0908-0706-050403020100", Principal: "AKIAEXAMPLE0000000",
		Action: "kms:GenerateDataKey", KeyID: "1234abcd-12ab-34cd-56ef-1234567890ab", KeyVersion: 3,
		EncryptionContext: map[string]string{"bucket": "invoices", "object": "2026/11/23/0001.pdf"},
		Source:            "10.0.0.1:4242", Outcome: audit.Allowed}
	b.ReportAllocs()
	for b.Loop() {
		l.Log(rec)
	}
}

// fillingDisk accepts writes until room bytes are written in all, then
// writes what fits and fails, as a disk filling mid-write does; more room
// can be made. A panicking disk panics instead.
type fillingDisk struct {
	b       bytes.Buffer
	room    int
	panics  bool
	written int
}

func (d *fillingDisk) Write(p []byte) (int, error) {
	if d.panics {
		panic("the writer broke")
	}
	n := min(len(p), d.room-d.written)
	d.b.Write(p[:n])
	d.written += n
	if n < len(p) {
		return n, errDiskFull
	}
	return n, nil
}

// TestAuditLogBrokenLineEnded proves that a write the disk cut short
// leaves its broken line on its own: the next record written starts on a
// new line and reads whole, instead of being glued to the broken one.
func TestAuditLogBrokenLineEnded(t *testing.T) {
	d := &fillingDisk{room: 1 << 20}
	l := audit.New(d)
	rec := func(id string) audit.Record {
		return audit.Record{Time: time.Now(), RequestID: id, Action: "kms:Decrypt", Outcome: audit.Allowed}
	}
	if err := l.Log(rec("first")); err != nil {
		t.Fatal(err)
	}
	d.room = d.written + 40 // part of the next line
	if err := l.Log(rec("cut")); !errors.Is(err, errDiskFull) {
		t.Fatalf("Log on a filling disk: %v, want the disk's error", err)
	}
	// The next write fails before the newline too: the line stays broken.
	if err := l.Log(rec("lost")); !errors.Is(err, errDiskFull) {
		t.Fatalf("Log on a full disk: %v, want the disk's error", err)
	}
	d.room = 1 << 20
	if err := l.Log(rec("after")); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(d.b.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want the first, the broken one and the next:\n%s", len(lines), d.b.String())
	}
	for _, i := range []int{0, 2} {
		var m map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &m); err != nil {
			t.Errorf("line %d does not read whole: %v\n%s", i+1, err, lines[i])
		}
	}
	if !strings.Contains(lines[2], `"request_id":"after"`) {
		t.Errorf("the last line is not the next record: %s", lines[2])
	}
}

// TestAuditLogWriterPanic proves that a writer that panics fails the
// records of its batch instead of hanging every later caller or crashing
// the process, and that the trail is written again once it stops.
func TestAuditLogWriterPanic(t *testing.T) {
	d := &fillingDisk{room: 1 << 20, panics: true}
	l := audit.New(d)
	for range 2 {
		if err := l.Log(audit.Record{Time: time.Now(), RequestID: "lost", Outcome: audit.Allowed}); err == nil || !strings.Contains(err.Error(), "panicked") {
			t.Fatalf("Log with a panicking writer: %v, want an error saying so", err)
		}
	}
	d.panics = false
	if err := l.Log(audit.Record{Time: time.Now(), RequestID: "kept", Outcome: audit.Allowed}); err != nil {
		t.Fatalf("Log once the writer works: %v", err)
	}
	if !strings.Contains(d.b.String(), `"request_id":"kept"`) {
		t.Fatalf("the record is not in the trail: %q", d.b.String())
	}
}
