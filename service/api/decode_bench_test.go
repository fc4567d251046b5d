package api

import (
	stdjson "encoding/json"
	"testing"

	"github.com/hsmkms/hsmkms/service"
)

// A GenerateDataKey and a Decrypt body as the AWS SDKs send them, with a
// three-pair encryption context.
var (
	benchGenerate = []byte(`{"KeyId":"alias/app","KeySpec":"AES_256","EncryptionContext":{"tenant":"t-0042","bucket":"photos","object":"2026/12/03/IMG_0001.jpg"}}`)
	benchDecrypt  = []byte(`{"CiphertextBlob":"SEsBAQAAAAAAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","EncryptionContext":{"tenant":"t-0042","bucket":"photos","object":"2026/12/03/IMG_0001.jpg"}}`)
)

// BenchmarkDecode sets decode (strict text, go-json-experiment/json)
// beside encoding/json on the hot path's two request bodies; compare the
// two sub-benchmarks of one run.
func BenchmarkDecode(b *testing.B) {
	for _, bc := range []struct {
		name string
		body []byte
		in   func() any
	}{
		{"GenerateDataKey", benchGenerate, func() any { return new(service.GenerateDataKeyInput) }},
		{"Decrypt", benchDecrypt, func() any { return new(service.DecryptInput) }},
	} {
		b.Run(bc.name+"/encoding-json", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := stdjson.Unmarshal(bc.body, bc.in()); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/decode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := decode(bc.body, bc.in()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
