package xks

import (
	"errors"
	"strings"
	"testing"
)

// FuzzRequest feeds arbitrary paths and bodies to what the handler does
// with them before the key service: path parsing, body decoding, and the
// requestMetadata check. None may panic; a parsed path holds a prefix and,
// for key operations, a key ID of the spec's characters; a refused body is
// an input error (ValidationException or UnsupportedOperationException).
func FuzzRequest(f *testing.F) {
	f.Add("/p/kms/xks/v1/keys/k/encrypt", `{"requestMetadata":{"kmsRequestId":"r","kmsOperation":"Encrypt","awsPrincipalArn":"a"},"plaintext":"AA==","encryptionAlgorithm":"AES_GCM"}`)
	f.Add("/a/b/kms/xks/v1/health", `{"requestMetadata":{"kmsRequestId":"r","kmsOperation":"KmsHealthCheck"}}`)
	f.Add("/p/kms/xks/v1/keys/k/decrypt", `{"requestMetadata":{},"ciphertext":"!","initializationVector":null}`)
	f.Add("/kms/xks/v1/keys//metadata", `[]`)
	f.Fuzz(func(t *testing.T, path, body string) {
		tg, ok := parsePath(path)
		if ok {
			if tg.prefix == "" || tg.action() == "" || (tg.op != opHealth && !validKeyID(tg.keyID)) {
				t.Fatalf("parsePath(%q) = %+v", path, tg)
			}
			if !strings.HasPrefix(path, "/"+tg.prefix+"/kms/xks/v1/") {
				t.Fatalf("prefix %q is not the path's", tg.prefix)
			}
		}
		check := func(err error) {
			var ie *inputError
			if err != nil && (!errors.As(err, &ie) || (ie.name != ErrValidation && ie.name != ErrUnsupported)) {
				t.Fatalf("error %v is not an input error", err)
			}
		}
		var enc encryptRequest
		if err := decodeBody([]byte(body), &enc); err == nil {
			_, err = requestMetadata(enc.RequestMetadata, true)
			check(err)
			check(checkAlgorithm(enc.Algorithm))
			_, err = field("plaintext", enc.Plaintext)
			check(err)
		} else {
			check(err)
		}
		var dec decryptRequest
		if err := decodeBody([]byte(body), &dec); err == nil {
			_, err = optional("ciphertextMetadata", dec.Metadata)
			check(err)
		}
	})
}
