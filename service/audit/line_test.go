package audit

import (
	"bytes"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// hclogLine is a record as hclog wrote it before appendLine: the oracle.
type hclogLine struct {
	Time              string            `json:"time"`
	RequestID         string            `json:"request_id"`
	Principal         string            `json:"principal"`
	PrincipalName     string            `json:"principal_name,omitempty"`
	Action            string            `json:"action"`
	KeyID             string            `json:"key_id,omitempty"`
	KeyVersion        uint32            `json:"key_version,omitempty"`
	Alias             string            `json:"alias,omitempty"`
	GrantID           string            `json:"grant_id,omitempty"`
	EncryptionContext map[string]string `json:"encryption_context,omitempty"`
	RequestMetadata   map[string]string `json:"request_metadata,omitempty"`
	Source            string            `json:"source,omitempty"`
	Outcome           string            `json:"outcome"`
	ErrorType         string            `json:"error_type,omitempty"`
	Subject           string            `json:"subject,omitempty"`
	Credential        string            `json:"credential,omitempty"`
	Suppressed        int               `json:"suppressed,omitempty"`
	SuppressedID      int               `json:"suppressed_id,omitempty"`
	SuppressedAll     int               `json:"suppressed_all,omitempty"`
}

// viaHclog writes r at now through go-hclog as the audit trail was
// written before: JSON format, name "audit", level info.
func viaHclog(now time.Time, r Record) []byte {
	var buf bytes.Buffer
	l := hclog.New(&hclog.LoggerOptions{Name: "audit", Output: &buf, JSONFormat: true, Level: hclog.Info,
		TimeFn: func() time.Time { return now.UTC() }})
	l.Info("audit", "audit", hclogLine{
		Time: r.Time.UTC().Format(time.RFC3339Nano), RequestID: r.RequestID, Principal: r.Principal, PrincipalName: r.PrincipalName,
		Action: r.Action, KeyID: r.KeyID, KeyVersion: r.KeyVersion, Alias: r.Alias, GrantID: r.GrantID,
		EncryptionContext: r.EncryptionContext, RequestMetadata: r.RequestMetadata, Source: r.Source, Outcome: r.Outcome,
		ErrorType: r.ErrorType, Subject: r.Subject, Credential: r.Credential, Suppressed: r.Suppressed, SuppressedID: r.SuppressedID,
		SuppressedAll: r.SuppressedAll,
	})
	return buf.Bytes()
}

var lineCases = []Record{
	{},
	{Time: time.Date(2026, 3, 4, 5, 6, 7, 890123456, time.FixedZone("CET", 3600)), RequestID: "req-1",
		Principal: "AKIAEXAMPLE", PrincipalName: "app \"billing\"\n", Action: "kms:Decrypt", KeyID: "1234abcd-12ab-34cd-56ef-1234567890ab",
		KeyVersion: 4294967295, Alias: "alias/app", EncryptionContext: map[string]string{"b": "2", "a": "1", "": ""},
		Source: "10.0.0.1:4242", Outcome: Failed, ErrorType: "InvalidCiphertextException", Subject: "AKIAOTHER", Credential: "XKS\"<id>\n", Suppressed: 17, SuppressedID: 4, SuppressedAll: 900},
	{Time: time.Unix(0, 0), RequestID: "r\n{\"outcome\":\"allowed\"}", Principal: "p\"q\\", Action: "<&>",
		EncryptionContext: map[string]string{"a\nb": "c\r\n\"d\"", "ünï": "<&>", "\u2028": "\u2029\x00\x1f\x7f\b\f\t"},
		Source:            "\xff\xfe invalid \xc3", Outcome: Denied, Suppressed: -3, SuppressedID: -9, SuppressedAll: -1},
	{Time: time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC), KeyID: "k", EncryptionContext: map[string]string{}, Outcome: Allowed},
	{Time: time.Date(2026, 12, 4, 0, 0, 1, 0, time.UTC), Action: "kms:Decrypt", KeyID: "k", Outcome: Allowed,
		GrantID: "0c237476b39f8bc44e45212e08498fbe3151305030726c0590dd8d3e9f3d6a3a"},
	{Time: time.Date(2026, 12, 4, 1, 2, 3, 0, time.UTC), Action: "xks:Encrypt", KeyID: "k", Outcome: Allowed,
		RequestMetadata: map[string]string{"kmsRequestId": "4112f4d6-db54-4af4-ae30-c55a22a8dfae", "kmsOperation": "Encrypt",
			"awsPrincipalArn": "arn:aws:iam::123456789012:user/Alice", "kmsViaService": "ebs\n<&>\u2028"}},
}

// TestLineMatchesHclog proves that appendLine writes byte for byte the
// line go-hclog wrote for the same record at the same time, for values
// that need every kind of escaping.
func TestLineMatchesHclog(t *testing.T) {
	now := time.Date(2026, 12, 4, 6, 7, 8, 123456789, time.UTC)
	for i, r := range lineCases {
		got, want := appendLine(nil, now, r), viaHclog(now, r)
		if !bytes.Equal(got, want) {
			t.Errorf("case %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// FuzzLineMatchesHclog holds appendLine to hclog's output for arbitrary
// field values.
func FuzzLineMatchesHclog(f *testing.F) {
	f.Add("req", "AKIA", "kms:Decrypt", "key", "alias/x", "ctx-key", "ctx-value", "10.0.0.1:1", "allowed", "", uint32(1), 0, int64(0))
	f.Add("\u2028<", "\xff", "\x00", "\"", "\\", "\n", "\r", "&", ">", "\t", uint32(0), -1, int64(1e18))
	f.Fuzz(func(t *testing.T, id, principal, action, keyID, alias, ck, cv, source, outcome, errType string, version uint32, suppressed int, nanos int64) {
		now := time.Unix(0, nanos)
		r := Record{Time: time.Unix(0, nanos/3), RequestID: id, Principal: principal, Action: action, KeyID: keyID,
			KeyVersion: version, Alias: alias, EncryptionContext: map[string]string{ck: cv, cv: ck}, RequestMetadata: map[string]string{cv: id}, Source: source,
			Outcome: outcome, ErrorType: errType, Subject: alias, Credential: errType + alias, Suppressed: suppressed, SuppressedID: suppressed / 3,
			SuppressedAll: suppressed / 5}
		if got, want := appendLine(nil, now, r), viaHclog(now, r); !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	})
}

// BenchmarkLine compares appendLine with the hclog path it replaced, in
// one run.
func BenchmarkLine(b *testing.B) {
	rec := Record{Time: time.Now(), RequestID: "0f0e0d0c-0b0a-0908-0706-050403020100", Principal: "AKIAEXAMPLE0000000",
		Action: "kms:GenerateDataKey", KeyID: "1234abcd-12ab-34cd-56ef-1234567890ab", KeyVersion: 3,
		EncryptionContext: map[string]string{"bucket": "invoices", "object": "2026/11/23/0001.pdf"},
		Source:            "10.0.0.1:4242", Outcome: Allowed}
	b.Run("impl=append", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = appendLine(buf[:0], time.Now(), rec)
		}
	})
	b.Run("impl=hclog", func(b *testing.B) {
		b.ReportAllocs()
		l := hclog.New(&hclog.LoggerOptions{Name: "audit", Output: discard{}, JSONFormat: true, Level: hclog.Info})
		for b.Loop() {
			l.Info("audit", "audit", hclogLine{Time: rec.Time.UTC().Format(time.RFC3339Nano), RequestID: rec.RequestID,
				Principal: rec.Principal, Action: rec.Action, KeyID: rec.KeyID, KeyVersion: rec.KeyVersion,
				EncryptionContext: rec.EncryptionContext, Source: rec.Source, Outcome: rec.Outcome})
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
