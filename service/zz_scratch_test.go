package service

import (
	"io"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hsmkms/hsmkms/service/audit"
	"github.com/hsmkms/hsmkms/service/store"
)

func BenchmarkScratchParts(b *testing.B) {
	tok := benchToken(b)
	svc := benchService(b, tok)
	ctx := admin(b)
	out, _ := svc.CreateKey(ctx, CreateKeyInput{})
	id := out.KeyMetadata.KeyId
	b.Run("encryptionKey", func(b *testing.B) {
		for b.Loop() {
			o := svc.begin(ctx, "kms:GenerateDataKey")
			if _, _, err := svc.encryptionKey(ctx, o, id); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("viewOnly", func(b *testing.B) {
		for b.Loop() {
			svc.store.View(ctx, func(tx store.Tx) error { return nil })
		}
	})
	b.Run("viewKey", func(b *testing.B) {
		for b.Loop() {
			svc.store.View(ctx, func(tx store.Tx) error { _, err := tx.Key(id); return err })
		}
	})
	a := audit.New(io.Discard)
	b.Run("audit", func(b *testing.B) {
		for b.Loop() {
			a.Log(audit.Record{Time: time.Now(), RequestID: "r", Principal: "p", Action: "kms:GenerateDataKey", KeyID: id, KeyVersion: 1, EncryptionContext: benchContext, Source: "127.0.0.1", Outcome: "allowed"})
		}
	})
	b.Run("svcNoToken", func(b *testing.B) {
		for b.Loop() {
			o := svc.begin(ctx, "kms:GenerateDataKey")
			k, v, err := svc.encryptionKey(ctx, o, id)
			if err != nil {
				b.Fatal(err)
			}
			svc.seal(ctx, k, v, benchContext, func(iv, aad []byte) ([]byte, error) { return make([]byte, 48), nil })
			o.end(nil)
		}
	})
}

type rawRec struct{ b []byte }

func (r rawRec) MarshalJSON() ([]byte, error) { return r.b, nil }

func BenchmarkScratchHclogRaw(b *testing.B) {
	l := hclog.New(&hclog.LoggerOptions{Name: "audit", Output: io.Discard, JSONFormat: true})
	rec := rawRec{[]byte(`{"time":"2026-01-02T03:04:05Z","request_id":"r","principal":"p","action":"kms:GenerateDataKey","key_id":"5a3b8f0e-1111-2222-3333-444455556666","key_version":1,"encryption_context":{"bucket":"invoices","object":"2026/11/23/0001.pdf"},"source":"127.0.0.1","outcome":"allowed"}`)}
	for b.Loop() {
		l.Info("audit", "record", rec)
	}
}
