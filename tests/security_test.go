package tests

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/policy"
	"github.com/hsmkms/hsmkms/softhsm"
)

// The security suite: each test runs the built server (one dev server on a
// SoftHSM2 token of its own) and attacks it end to end over HTTP, with
// requests signed by the AWS SDK's own v4 signer and valid calls made with
// the real aws-sdk-go-v2 KMS client. Every error response must have its
// AWS status and type, Content-Type application/x-amz-json-1.1 and a JSON
// body with __type and message, and never be a 5xx; every refused API
// request must write exactly one audit record.

const (
	codeIncomplete   = "IncompleteSignatureException"
	codeInvalidSig   = "InvalidSignatureException"
	codeUnrecognized = "UnrecognizedClientException"
	codeMissingToken = "MissingAuthenticationTokenException"
	codeAccessDenied = "AccessDeniedException"
	codeValidation   = "ValidationException"
	codeSerializaton = "SerializationException"
	codeInvalidCT    = "InvalidCiphertextException"
)

// TestSecuritySignatures attacks request authentication: re-targeting a
// signed request through unsigned headers, session tokens, duplicated
// Authorization parts, absurd access key IDs, and the catalogue of
// tampered, stale and mis-scoped signatures and oversize bodies.
func TestSecuritySignatures(t *testing.T) {
	t.Parallel()
	e := startSecDev(t)
	keyA, _ := e.newKey(t)

	// Item 1: re-targeting. A DescribeKey signed over host and x-amz-date
	// only must not become a ScheduleKeyDeletion or a DisableKey by adding
	// an unsigned X-Amz-Target; every x-amz-* header and Content-Type must
	// be signed.
	t.Run("re-targeting through unsigned headers", func(t *testing.T) {
		src := freshSource()
		who := e.principal(t, "retarget", allowAll)
		// Keys of their own: a re-targeting that works must not spoil the
		// other subtests' key.
		keyR, _ := e.newKey(t)
		body := jsonBody(t, map[string]string{"KeyId": keyR})
		for _, target := range []string{"TrentService.ScheduleKeyDeletion", "TrentService.DisableKey"} {
			t.Run(target, func(t *testing.T) {
				key, _ := e.newKey(t)
				body := jsonBody(t, map[string]string{"KeyId": key})
				req := e.rawRequest(t, "", body, false)
				// Sign without Content-Length too: SignedHeaders is host;x-amz-date.
				req.ContentLength = 0
				e.sign(t, req, body, who, time.Now(), "", "")
				req.ContentLength = int64(len(body))
				if sh := signedHeadersOf(req.Header.Get("Authorization")); sh != "host;x-amz-date" {
					t.Fatalf("SignedHeaders = %q, want host;x-amz-date", sh)
				}
				req.Header.Set("X-Amz-Target", target)
				req.Header.Set("Content-Type", jsonType)
				r := sendFrom(t, src, req)
				wantError(t, r, http.StatusBadRequest, codeIncomplete)
				e.wantOneRefusal(t, r.id(), codeIncomplete)
				if st := e.keyState(t, key); st != string(types.KeyStateEnabled) {
					t.Fatalf("key state after the re-targeted request = %s, want Enabled", st)
				}
			})
		}
		cases := []struct {
			name   string
			req    func(t *testing.T) *http.Request
			status int
			code   string
		}{
			{"unsigned X-Amz-Foo added after signing", func(t *testing.T) *http.Request {
				req := e.signed(t, "TrentService.DescribeKey", body, who)
				req.Header.Set("X-Amz-Foo", "bar")
				return req
			}, 400, codeIncomplete},
			{"unsigned Content-Type added after signing", func(t *testing.T) *http.Request {
				req := e.rawRequest(t, "TrentService.DescribeKey", body, false)
				e.sign(t, req, body, who, time.Now(), "", "")
				req.Header.Set("Content-Type", jsonType)
				return req
			}, 400, codeIncomplete},
			{"every header signed", func(t *testing.T) *http.Request {
				return e.signed(t, "TrentService.DescribeKey", body, who)
			}, 200, ""},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := sendFrom(t, src, tc.req(t))
				if tc.status == 200 {
					if m := wantOK(t, r); m["KeyMetadata"] == nil {
						t.Fatalf("DescribeKey answered %s", r.body)
					}
					return
				}
				wantError(t, r, tc.status, tc.code)
				e.wantOneRefusal(t, r.id(), tc.code)
			})
		}
		t.Run("the SDK's own requests", func(t *testing.T) {
			out, err := e.kms(who, src).DescribeKey(t.Context(), &kms.DescribeKeyInput{KeyId: aws.String(keyR)})
			if err != nil {
				t.Fatalf("DescribeKey through the SDK: %v", err)
			}
			if st := out.KeyMetadata.KeyState; st != types.KeyStateEnabled {
				t.Fatalf("DescribeKey through the SDK: the key is %s, want Enabled", st)
			}
		})
	})

	// Item 6: hsmkms issues no session tokens; a request carrying one is
	// refused whether the token is signed or not.
	t.Run("X-Amz-Security-Token", func(t *testing.T) {
		src := freshSource()
		who := e.principal(t, "session-token", allowAll)
		const token = "FwoGZXIvYXdzEBYaDHsessiontokenAAAAAAAAAAAAAAAAAAAAAA"
		cases := []struct {
			name  string
			req   func(t *testing.T) *http.Request
			codes []string
		}{
			{"signed session token", func(t *testing.T) *http.Request {
				c := who
				c.SessionToken = token
				req := e.rawRequest(t, "TrentService.ListKeys", []byte(`{}`), true)
				e.sign(t, req, []byte(`{}`), c, time.Now(), "", "")
				if !strings.Contains(signedHeadersOf(req.Header.Get("Authorization")), "x-amz-security-token") {
					t.Fatalf("the signer did not sign X-Amz-Security-Token: %s", req.Header.Get("Authorization"))
				}
				return req
			}, []string{codeUnrecognized}},
			{"session token added unsigned", func(t *testing.T) *http.Request {
				req := e.signed(t, "TrentService.ListKeys", []byte(`{}`), who)
				req.Header.Set("X-Amz-Security-Token", token)
				return req
			}, []string{codeUnrecognized, codeIncomplete}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := sendFrom(t, src, tc.req(t))
				if r.status != http.StatusBadRequest || !slices.Contains(tc.codes, r.typ) {
					t.Fatalf("got %v, want 400 %s", r, strings.Join(tc.codes, " or "))
				}
				wantErrorShape(t, r)
				e.wantOneRefusal(t, r.id(), r.typ)
			})
		}
	})

	// Item 12: an Authorization header is parsed strictly: one header, one
	// Signature.
	t.Run("Authorization parsing", func(t *testing.T) {
		src := freshSource()
		who := e.principal(t, "auth-parsing", allowAll)
		cases := []struct {
			name   string
			change func(req *http.Request)
		}{
			{"Authorization header sent twice", func(req *http.Request) {
				req.Header.Add("Authorization", req.Header.Get("Authorization"))
			}},
			{"two Signature parts", func(req *http.Request) {
				// The bogus one first, the right one last: a parser that
				// keeps either one is wrong.
				a := req.Header.Get("Authorization")
				sig := signatureOf(a)
				bogus := strings.Repeat("0", len(sig))
				req.Header.Set("Authorization", strings.Replace(a, "Signature="+sig, "Signature="+bogus+", Signature="+sig, 1))
			}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				req := e.signed(t, "TrentService.ListKeys", []byte(`{}`), who)
				tc.change(req)
				r := sendFrom(t, src, req)
				wantError(t, r, http.StatusBadRequest, codeIncomplete)
				e.wantOneRefusal(t, r.id(), codeIncomplete)
			})
		}
	})

	// Item 9: the access key ID a request claims reaches the audit trail
	// only when it is one (16 to 128 of A-Z 0-9).
	t.Run("claimed access key IDs in the audit trail", func(t *testing.T) {
		src := freshSource()
		const unknownID = "AKIANOSUCHPRINCIPAL00001"
		cases := []struct {
			name      string
			req       func(t *testing.T) *http.Request
			code      string // "" for any 4xx
			principal string // "" for at most 128 characters
		}{
			{"60,000-character access key ID", func(t *testing.T) *http.Request {
				req := e.rawRequest(t, "TrentService.ListKeys", []byte(`{}`), true)
				req.Header.Set("X-Amz-Date", time.Now().UTC().Format("20060102T150405Z"))
				req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+strings.Repeat("A", 60000)+
					"/20260101/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature="+strings.Repeat("ab", 32))
				return req
			}, "", ""},
			{"well-formed unknown access key ID", func(t *testing.T) *http.Request {
				req := e.rawRequest(t, "TrentService.ListKeys", []byte(`{}`), true)
				e.sign(t, req, []byte(`{}`), aws.Credentials{AccessKeyID: unknownID, SecretAccessKey: "x-secret-nobody-has-0123456789"}, time.Now(), "", "")
				return req
			}, codeUnrecognized, unknownID},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := sendFrom(t, src, tc.req(t))
				if r.status < 400 || r.status > 499 || (tc.code != "" && (r.status != 400 || r.typ != tc.code)) {
					t.Fatalf("got %v, want a refusal (4xx) %s", r, tc.code)
				}
				wantErrorShape(t, r)
				rec := e.wantOneRefusal(t, r.id(), r.typ)
				if tc.principal != "" && rec.Principal != tc.principal {
					t.Fatalf("audit principal %q, want %q", rec.Principal, tc.principal)
				}
				if len(rec.Principal) > 128 {
					t.Fatalf("audit principal is %d characters (%.40s…), want at most 128", len(rec.Principal), rec.Principal)
				}
			})
		}
	})

	// Catalogue: tampered signatures, clock skew, scope, unknown keys.
	t.Run("signature catalogue", func(t *testing.T) {
		src := freshSource()
		who := e.principal(t, "signature-catalogue", allowAll)
		const target = "TrentService.Encrypt"
		body := jsonBody(t, map[string]any{"KeyId": keyA, "Plaintext": []byte("hello, signer")})
		const unknownID = "AKIAUNKNOWNCATALOGUE01"
		cases := []struct {
			name      string
			req       func(t *testing.T) *http.Request
			code      string
			msgPrefix string
			claimed   string
		}{
			{"one hex digit of the signature changed", func(t *testing.T) *http.Request {
				req := e.signed(t, target, body, who)
				a := req.Header.Get("Authorization")
				sig := []byte(signatureOf(a))
				sig[len(sig)/2] = "1032547698badcfe"[strings.IndexByte("0123456789abcdef", sig[len(sig)/2])]
				req.Header.Set("Authorization", strings.Replace(a, signatureOf(a), string(sig), 1))
				return req
			}, codeInvalidSig, "", who.AccessKeyID},
			{"body changed after signing", func(t *testing.T) *http.Request {
				req := e.signed(t, target, body, who)
				changed := []byte(strings.Replace(string(body), `"Plaintext":"a`, `"Plaintext":"b`, 1))
				if len(changed) != len(body) || string(changed) == string(body) {
					t.Fatalf("the changed body must differ and have the same length: %s", body)
				}
				req.Body = io.NopCloser(strings.NewReader(string(changed)))
				return req
			}, codeInvalidSig, "", who.AccessKeyID},
			{"signed 6 minutes ago", func(t *testing.T) *http.Request {
				req := e.rawRequest(t, target, body, true)
				e.sign(t, req, body, who, time.Now().Add(-6*time.Minute), "", "")
				return req
			}, codeInvalidSig, "Signature expired", who.AccessKeyID},
			{"signed 6 minutes in the future", func(t *testing.T) *http.Request {
				req := e.rawRequest(t, target, body, true)
				e.sign(t, req, body, who, time.Now().Add(6*time.Minute), "", "")
				return req
			}, codeInvalidSig, "Signature expired", who.AccessKeyID},
			{"scoped to another region", func(t *testing.T) *http.Request {
				req := e.rawRequest(t, target, body, true)
				e.sign(t, req, body, who, time.Now(), "", "eu-west-1")
				return req
			}, codeInvalidSig, "", who.AccessKeyID},
			{"scoped to another service", func(t *testing.T) *http.Request {
				req := e.rawRequest(t, target, body, true)
				e.sign(t, req, body, who, time.Now(), "s3", "")
				return req
			}, codeInvalidSig, "", who.AccessKeyID},
			{"unknown access key ID", func(t *testing.T) *http.Request {
				req := e.rawRequest(t, target, body, true)
				e.sign(t, req, body, aws.Credentials{AccessKeyID: unknownID, SecretAccessKey: who.SecretAccessKey}, time.Now(), "", "")
				return req
			}, codeUnrecognized, "", unknownID},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := sendFrom(t, src, tc.req(t))
				wantError(t, r, http.StatusBadRequest, tc.code)
				if !strings.HasPrefix(r.msg, tc.msgPrefix) {
					t.Errorf("message %q, want it to start %q", r.msg, tc.msgPrefix)
				}
				if strings.Contains(r.msg, who.SecretAccessKey) {
					t.Errorf("the message %q holds the secret", r.msg)
				}
				rec := e.wantOneRefusal(t, r.id(), tc.code)
				if rec.Outcome != "denied" || rec.Principal != tc.claimed {
					t.Errorf("audit record %+v, want outcome denied and principal %s", rec, tc.claimed)
				}
			})
		}
		// The same request, signed correctly within the allowed skew, works.
		for _, skew := range []time.Duration{-4 * time.Minute, 0, 4 * time.Minute} {
			req := e.rawRequest(t, target, body, true)
			e.sign(t, req, body, who, time.Now().Add(skew), "", "")
			wantOK(t, sendFrom(t, src, req))
		}
	})

	// Catalogue: bodies over the operation's limit.
	t.Run("body limits", func(t *testing.T) {
		src := freshSource()
		oversize := func(n int) []byte {
			head := `{"Plaintext": "`
			return []byte(head + strings.Repeat("A", n-len(head)-2) + `"}`)
		}
		cases := []struct {
			target string
			size   int
		}{
			{"TrentService.Encrypt", 128<<10 + 1},
			{"TrentService.DescribeKey", 64<<10 + 1},
		}
		for _, tc := range cases {
			t.Run(tc.target, func(t *testing.T) {
				body := oversize(tc.size)
				if len(body) != tc.size {
					t.Fatalf("body of %d bytes, want %d", len(body), tc.size)
				}
				r := sendFrom(t, src, e.signed(t, tc.target, body, e.root))
				wantError(t, r, http.StatusRequestEntityTooLarge, "RequestEntityTooLargeException")
				e.wantOneRefusal(t, r.id(), "RequestEntityTooLargeException")
			})
		}
	})

	// Item 10: metrics are not served to API clients.
	t.Run("no /metrics on the API listener", func(t *testing.T) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, e.endpoint+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		r := sendFrom(t, "", req)
		if r.status != http.StatusNotFound || strings.Contains(string(r.body), "hsmkms_") {
			t.Fatalf("GET /metrics on the API listener = %v, want 404", r)
		}
		wantErrorShape(t, r)
	})
}

// TestSecurityJSON sends correctly signed requests whose JSON is
// ambiguous or not valid UTF-8.
func TestSecurityJSON(t *testing.T) {
	t.Parallel()
	e := startSecDev(t)
	keyA, arnA := e.newKey(t)
	keyB, _ := e.newKey(t)
	src := freshSource()
	sdk := e.kms(e.root, src)

	// Item 7: member names are case-sensitive, unknown members are
	// ignored, and a member given twice is an error.
	t.Run("members", func(t *testing.T) {
		cases := []struct {
			name string
			body string
			code string // "" when the request must encrypt under A
		}{
			{"KeyId then keyid", `{"KeyId":"` + keyA + `","keyid":"` + keyB + `","Plaintext":"aGk="}`, ""},
			{"keyid then KeyId", `{"keyid":"` + keyB + `","KeyId":"` + keyA + `","Plaintext":"aGk="}`, ""},
			{"KEYID and an unknown member", `{"KeyId":"` + keyA + `","KEYID":"` + keyB + `","Whatever":1,"Plaintext":"aGk="}`, ""},
			{"KeyId twice", `{"KeyId":"` + keyA + `","KeyId":"` + keyB + `","Plaintext":"aGk="}`, codeSerializaton},
			{"Plaintext twice", `{"KeyId":"` + keyA + `","Plaintext":"aGk=","Plaintext":"aG8="}`, codeSerializaton},
			{"duplicate EncryptionContext key", `{"KeyId":"` + keyA + `","Plaintext":"aGk=","EncryptionContext":{"k":"1","k":"2"}}`, codeSerializaton},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := sendFrom(t, src, e.signed(t, "TrentService.Encrypt", []byte(tc.body), e.root))
				if tc.code != "" {
					wantError(t, r, http.StatusBadRequest, tc.code)
					e.wantOneRefusal(t, r.id(), tc.code)
					return
				}
				m := wantOK(t, r)
				if m["KeyId"] != arnA {
					t.Fatalf("Encrypt answered KeyId %v, want %s (A)", m["KeyId"], arnA)
				}
				blob, err := base64.StdEncoding.DecodeString(fmt.Sprint(m["CiphertextBlob"]))
				if err != nil {
					t.Fatalf("CiphertextBlob: %v", err)
				}
				dec, err := sdk.Decrypt(t.Context(), &kms.DecryptInput{CiphertextBlob: blob})
				if err != nil || aws.ToString(dec.KeyId) != arnA || string(dec.Plaintext) != "hi" {
					t.Fatalf("Decrypt = %+v, %v; want %q under %s", dec, err, "hi", arnA)
				}
			})
		}
	})

	// Item 8: strings must be valid UTF-8, escapes included.
	t.Run("UTF-8", func(t *testing.T) {
		cases := []struct {
			name  string
			value string // the JSON text of the context value, quotes included
			ok    string // the value it means when valid
		}{
			{"raw 0xff byte", "\"a\xffb\"", ""},
			{"lone high surrogate escape", `"a\ud800b"`, ""},
			{"lone low surrogate escape", `"a\udc00b"`, ""},
			{"high surrogate then a letter", `"\ud83dx"`, ""},
			{"surrogate pair escape", `"a\ud83d\ude00b"`, "a😀b"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				body := `{"KeyId":"` + keyA + `","Plaintext":"aGk=","EncryptionContext":{"purpose":` + tc.value + `}}`
				r := sendFrom(t, src, e.signed(t, "TrentService.Encrypt", []byte(body), e.root))
				if tc.ok == "" {
					wantError(t, r, http.StatusBadRequest, codeValidation)
					e.wantOneRefusal(t, r.id(), codeValidation)
					return
				}
				m := wantOK(t, r)
				blob, err := base64.StdEncoding.DecodeString(fmt.Sprint(m["CiphertextBlob"]))
				if err != nil {
					t.Fatal(err)
				}
				dec, err := sdk.Decrypt(t.Context(), &kms.DecryptInput{CiphertextBlob: blob,
					EncryptionContext: map[string]string{"purpose": tc.ok}})
				if err != nil || string(dec.Plaintext) != "hi" {
					t.Fatalf("Decrypt with the context {purpose: %q} = %v", tc.ok, err)
				}
			})
		}
	})
}

// TestSecurityCiphertextTampering flips each bit of the first 64 and the
// last 16 bytes of a ciphertext blob: every flip is refused as an invalid
// ciphertext (a flip in the key ID may name another key: IncorrectKey or
// NotFound), never a 5xx, and audited once.
func TestSecurityCiphertextTampering(t *testing.T) {
	t.Parallel()
	e := startSecDev(t)
	keyA, _ := e.newKey(t)
	src := freshSource()
	out, err := e.kms(e.root, src).Encrypt(t.Context(), &kms.EncryptInput{KeyId: aws.String(keyA), Plaintext: []byte(strings.Repeat("p", 64))})
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	blob := out.CiphertextBlob
	if len(blob) < 80 {
		t.Fatalf("a ciphertext of %d bytes: too short for the test", len(blob))
	}
	decryptBody := func(b []byte) []byte { return jsonBody(t, map[string]any{"CiphertextBlob": b}) }
	wantOK(t, sendFrom(t, src, e.signed(t, "TrentService.Decrypt", decryptBody(blob), e.root)))

	// Bytes 4 to 19 of a blob are the key ID (service/ciphertext).
	inKeyID := func(i int) bool { return i >= 4 && i < 20 }
	var positions []int
	for i := range blob {
		if i < 64 || i >= len(blob)-16 {
			positions = append(positions, i)
		}
	}
	type sent struct {
		pos, bit int
		id, typ  string
	}
	var all []sent
	client := httpFrom(src)
	client.Transport.(*http.Transport).DisableKeepAlives = false
	defer client.CloseIdleConnections()
	for _, i := range positions {
		for bit := range 8 {
			b := slices.Clone(blob)
			b[i] ^= 1 << bit
			resp, err := client.Do(e.signed(t, "TrentService.Decrypt", decryptBody(b), e.root))
			if err != nil {
				t.Fatalf("byte %d bit %d: %v", i, bit, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			r := rawResponse{status: resp.StatusCode, header: resp.Header, body: body}
			var eb struct {
				Type string `json:"__type"`
			}
			_ = json.Unmarshal(body, &eb)
			r.typ = eb.Type
			okType := r.status == 400 && r.typ == codeInvalidCT
			if inKeyID(i) && (r.typ == "IncorrectKeyException" || r.typ == "NotFoundException") && r.status >= 400 && r.status < 500 {
				okType = true
			}
			if !okType {
				t.Errorf("byte %d bit %d flipped: %v, want 400 %s", i, bit, r, codeInvalidCT)
				continue
			}
			wantErrorShape(t, r)
			all = append(all, sent{i, bit, r.id(), r.typ})
		}
	}
	// Each refusal wrote exactly one audit record naming its error type.
	byID := map[string][]auditRec{}
	for _, rec := range e.audit(t) {
		byID[rec.RequestID] = append(byID[rec.RequestID], rec)
	}
	for _, s := range all {
		recs := byID[s.id]
		if len(recs) != 1 || recs[0].ErrorType != s.typ || (recs[0].Outcome != "failed" && recs[0].Outcome != "denied") {
			t.Errorf("byte %d bit %d: audit records %+v, want one refusal of type %s", s.pos, s.bit, recs, s.typ)
		}
	}
	t.Logf("%d single-bit flips refused", len(all))
}

// TestSecurityAuthorization checks who may manage principals and the
// authorisation matrix of a narrowly allowed principal.
func TestSecurityAuthorization(t *testing.T) {
	t.Parallel()
	e := startSecDev(t)
	ctx := t.Context()
	keyA, arnA := e.newKey(t)
	keyB, _ := e.newKey(t)
	src := freshSource()
	rootAdmin := e.admin(e.root, src)
	principalNames := func(t *testing.T) map[string]string {
		t.Helper()
		out, err := rootAdmin.ListPrincipals(ctx, service.ListInput{Limit: 1000})
		if err != nil {
			t.Fatalf("ListPrincipals as root: %v", err)
		}
		names := map[string]string{}
		for _, p := range out.Principals {
			names[p.AccessKeyId] = p.Name
		}
		return names
	}

	// Item 4: kms:* does not cover the hsmkms: administrative actions.
	t.Run("kms:* does not manage principals", func(t *testing.T) {
		p := e.principal(t, "kms-star", allowAll)
		victim := e.principal(t, "victim", allowAll)
		pAdmin := e.admin(p, src)
		cases := []struct {
			name string
			call func() error
		}{
			{"CreatePrincipal", func() error {
				_, err := pAdmin.CreatePrincipal(ctx, service.CreatePrincipalInput{Name: "made-by-kms-star", Statements: []policy.Statement{allowAll}})
				return err
			}},
			{"ListPrincipals", func() error {
				_, err := pAdmin.ListPrincipals(ctx, service.ListInput{})
				return err
			}},
			{"DeletePrincipal", func() error { return pAdmin.DeletePrincipal(ctx, victim.AccessKeyID) }},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) { adminError(t, tc.call(), http.StatusBadRequest, codeAccessDenied) })
		}
		names := principalNames(t)
		if names[victim.AccessKeyID] != "victim" {
			t.Errorf("the victim principal is gone after a denied DeletePrincipal: %v", names)
		}
		for id, n := range names {
			if n == "made-by-kms-star" {
				t.Errorf("a denied CreatePrincipal made principal %s", id)
			}
		}
	})

	t.Run("a creator's deny binds its child; root cannot be deleted", func(t *testing.T) {
		q := e.principal(t, "admin-no-decrypt",
			policy.Statement{Effect: "Allow", Actions: []string{"kms:*", "hsmkms:*"}, Resources: []string{"*"}},
			policy.Statement{Effect: "Deny", Actions: []string{"kms:Decrypt"}, Resources: []string{"*"}})
		qAdmin := e.admin(q, src)
		child, err := qAdmin.CreatePrincipal(ctx, service.CreatePrincipalInput{Name: "child", Statements: []policy.Statement{allowAll}})
		if err != nil {
			t.Fatalf("CreatePrincipal by a principal allowed hsmkms:*: %v", err)
		}
		c := e.kms(aws.Credentials{AccessKeyID: child.AccessKeyId, SecretAccessKey: child.SecretAccessKey}, src)
		enc, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyA), Plaintext: []byte("child data")})
		if err != nil {
			t.Fatalf("Encrypt by the child: %v", err)
		}
		_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
		id := sdkError(t, err, http.StatusBadRequest, codeAccessDenied)
		if rec := e.wantOneRefusal(t, id, codeAccessDenied); rec.Outcome != "denied" || rec.Principal != child.AccessKeyId {
			t.Errorf("audit record of the child's Decrypt = %+v, want denied, principal %s", rec, child.AccessKeyId)
		}

		adminError(t, qAdmin.DeletePrincipal(ctx, e.root.AccessKeyID), http.StatusBadRequest, codeValidation)
		if _, err := e.kms(e.root, src).ListKeys(ctx, &kms.ListKeysInput{}); err != nil {
			t.Fatalf("root's ListKeys after an attempt to delete root: %v", err)
		}
		if _, ok := principalNames(t)[e.root.AccessKeyID]; !ok {
			t.Fatal("root is not among the principals any more")
		}
	})

	// Catalogue: a principal allowed only kms:Encrypt and
	// kms:GenerateDataKey on key A.
	t.Run("matrix", func(t *testing.T) {
		m := e.principal(t, "encrypt-a", policy.Statement{Effect: "Allow",
			Actions: []string{"kms:Encrypt", "kms:GenerateDataKey"}, Resources: []string{arnA}})
		c := e.kms(m, src)
		var blobA []byte
		allowed := []struct {
			name string
			call func() error
		}{
			{"Encrypt on A", func() error {
				out, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyA), Plaintext: []byte("data of A")})
				if err == nil {
					blobA = out.CiphertextBlob
				}
				return err
			}},
			{"GenerateDataKey on A", func() error {
				_, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(keyA), KeySpec: types.DataKeySpecAes256})
				return err
			}},
		}
		for _, tc := range allowed {
			if err := tc.call(); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
		}
		denied := []struct {
			name string
			call func() error
		}{
			{"Decrypt of A's ciphertext", func() error {
				_, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blobA})
				return err
			}},
			{"Encrypt on B", func() error {
				_, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyB), Plaintext: []byte("x")})
				return err
			}},
			{"ScheduleKeyDeletion on A", func() error {
				_, err := c.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(keyA), PendingWindowInDays: aws.Int32(7)})
				return err
			}},
			{"DisableKey on A", func() error {
				_, err := c.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(keyA)})
				return err
			}},
			{"CreateKey", func() error {
				_, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
				return err
			}},
		}
		for _, tc := range denied {
			t.Run(tc.name, func(t *testing.T) {
				id := sdkError(t, tc.call(), http.StatusBadRequest, codeAccessDenied)
				if rec := e.wantOneRefusal(t, id, codeAccessDenied); rec.Outcome != "denied" || rec.Principal != m.AccessKeyID {
					t.Errorf("audit record %+v, want denied, principal %s", rec, m.AccessKeyID)
				}
			})
		}
		t.Run("admin ListPrincipals", func(t *testing.T) {
			_, err := e.admin(m, src).ListPrincipals(ctx, service.ListInput{})
			adminError(t, err, http.StatusBadRequest, codeAccessDenied)
		})
		for _, k := range []string{keyA, keyB} {
			if st := e.keyState(t, k); st != string(types.KeyStateEnabled) {
				t.Errorf("key %s is %s after the denials, want Enabled", k, st)
			}
		}
	})
}

// TestSecurityFailureLimiter floods the server with failed
// authentications: each is answered with its own error type (never a
// throttle that locks out legitimate callers from the same address), and
// the audit volume is bounded, the rest counted as suppressed.
func TestSecurityFailureLimiter(t *testing.T) {
	t.Parallel()
	e := startSecDev(t)
	const burst = 100
	type flood struct {
		name     string
		source   string
		bad      func(t *testing.T) *http.Request
		status   int
		code     string
		valid    []aws.Credentials // interleaved valid callers, from the same source
		relevant func(r auditRec) bool
	}
	w := e.principal(t, "guessed", allowAll)
	wrong := aws.Credentials{AccessKeyID: w.AccessKeyID, SecretAccessKey: "a-guessed-secret-0123456789abcdefghij"}
	wrongSrc := freshSource()
	// Item 2.
	cases := []flood{
		{name: "unsigned requests", source: "127.0.0.1",
			bad: func(t *testing.T) *http.Request {
				return e.rawRequest(t, "TrentService.ListKeys", []byte(`{}`), true)
			}, status: http.StatusForbidden, code: codeMissingToken, valid: []aws.Credentials{e.root},
			relevant: func(r auditRec) bool { return r.Source == "127.0.0.1" && r.ErrorType == codeMissingToken }},
		{name: "wrong secret for one access key ID", source: wrongSrc,
			bad: func(t *testing.T) *http.Request {
				req := e.rawRequest(t, "TrentService.ListKeys", []byte(`{}`), true)
				e.sign(t, req, []byte(`{}`), wrong, time.Now(), "", "")
				return req
			}, status: http.StatusBadRequest, code: codeInvalidSig, valid: []aws.Credentials{e.root, w},
			relevant: func(r auditRec) bool { return r.Principal == w.AccessKeyID && r.ErrorType == codeInvalidSig }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ids := map[string]bool{}
			sent := 0
			sendBad := func() {
				t.Helper()
				r := sendFrom(t, tc.source, tc.bad(t))
				if r.status != tc.status || r.typ != tc.code {
					t.Fatalf("bad request %d: %v, want %d %s (never ThrottlingException)", sent+1, r, tc.status, tc.code)
				}
				wantErrorShape(t, r)
				ids[r.id()] = true
				sent++
			}
			start := time.Now()
			for i := range burst {
				sendBad()
				if i%10 == 9 {
					who := tc.valid[(i/10)%len(tc.valid)]
					if _, err := e.kms(who, tc.source).ListKeys(t.Context(), &kms.ListKeysInput{}); err != nil {
						t.Fatalf("a valid ListKeys by %s after %d bad requests: %v", who.AccessKeyID, sent, err)
					}
				}
			}
			// Suppressed failures are counted in a later record: keep
			// failing, slowly, until one carries the count.
			deadline := time.Now().Add(15 * time.Second)
			for {
				found := false
				for _, r := range e.audit(t) {
					if tc.relevant(r) && r.Suppressed+r.SuppressedID+r.SuppressedAll > 0 {
						found = true
					}
				}
				if found {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("no audit record of %s carries a suppressed count after %d bad requests", tc.code, sent)
					break
				}
				time.Sleep(200 * time.Millisecond)
				sendBad()
			}
			elapsed := time.Since(start)

			records, suppressed := 0, 0
			for _, r := range e.audit(t) {
				if r.Time.Before(start.Add(-time.Second)) || !tc.relevant(r) {
					continue
				}
				suppressed += r.Suppressed + r.SuppressedID + r.SuppressedAll
				if ids[r.RequestID] {
					records++
					if r.Outcome != "denied" {
						t.Errorf("audit record %+v, want outcome denied", r)
					}
				}
			}
			limit := 20 + int(math.Ceil(elapsed.Seconds())) + 1
			t.Logf("%d bad requests in %v: %d audit records, %d suppressed", sent, elapsed.Round(time.Millisecond), records, suppressed)
			if records > limit {
				t.Errorf("%d audit records of %d bad requests in %v, want at most %d", records, sent, elapsed, limit)
			}
			if records == 0 {
				t.Errorf("no audit record of the %d bad requests", sent)
			}
			if records+suppressed > sent {
				t.Errorf("%d records + %d suppressed > %d bad requests sent", records, suppressed, sent)
			}
			if _, err := e.kms(e.root, tc.source).ListKeys(t.Context(), &kms.ListKeysInput{}); err != nil {
				t.Fatalf("root's ListKeys after the flood, from the same address: %v", err)
			}
		})
	}
}

// TestSecurityRootSecretRotation restarts a dev server with a new root
// secret, then a new root access key ID: the old ones stop working at once,
// the keys stay, the rotation is audited, and no secret is ever logged.
func TestSecurityRootSecretRotation(t *testing.T) {
	t.Parallel()
	s := newSandbox(t)
	devDir := filepath.Join(t.TempDir(), "dev")
	rnd := func(n int) string {
		b := make([]byte, n)
		rand.Read(b)
		return strings.ToUpper(hex.EncodeToString(b))
	}
	id1, id2 := "AKIAROTATE"+rnd(6), "AKIAROTATED"+rnd(6)
	secret1, secret2, secret3 := "first-root-secret-"+rnd(12), "second-root-secret-"+rnd(12), "third-root-secret-"+rnd(12)
	var servers []*server
	start := func(t *testing.T, id, secret string) *secEnv {
		t.Helper()
		withRoot := &sandbox{t: t, env: append(slices.Clone(s.env), "HSMKMS_ROOT_ACCESS_KEY_ID="+id, "HSMKMS_ROOT_SECRET_ACCESS_KEY="+secret)}
		srv := withRoot.startDev(devDir)
		servers = append(servers, srv)
		e := newSecEnv(withRoot, srv, devDir)
		if e.root.AccessKeyID != id || e.root.SecretAccessKey != secret {
			t.Fatalf("the dev server exported %s, want the root credentials of its environment", e.root.AccessKeyID)
		}
		return e
	}
	var keyID string
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"first start with secret1", func(t *testing.T) {
			e := start(t, id1, secret1)
			keyID, _ = e.newKey(t)
			e.srv.Stop()
		}},
		{"restart with secret2", func(t *testing.T) {
			e := start(t, id1, secret2)
			_, err := e.kms(aws.Credentials{AccessKeyID: id1, SecretAccessKey: secret1}, "").ListKeys(t.Context(), &kms.ListKeysInput{})
			id := sdkError(t, err, http.StatusBadRequest, codeInvalidSig)
			e.wantOneRefusal(t, id, codeInvalidSig)
			if st := e.keyState(t, keyID); st != string(types.KeyStateEnabled) {
				t.Fatalf("the key is %s with secret2, want Enabled", st)
			}
			found := false
			for _, r := range e.audit(t) {
				if r.Action == "hsmkms:RotateRootSecret" && r.Subject == id1 {
					found = true
				}
			}
			if !found {
				t.Errorf("no audit record with action hsmkms:RotateRootSecret and subject %s", id1)
			}
			e.srv.Stop()
		}},
		{"restart with another access key ID", func(t *testing.T) {
			e := start(t, id2, secret3)
			_, err := e.kms(aws.Credentials{AccessKeyID: id1, SecretAccessKey: secret2}, "").ListKeys(t.Context(), &kms.ListKeysInput{})
			id := sdkError(t, err, http.StatusBadRequest, codeUnrecognized)
			e.wantOneRefusal(t, id, codeUnrecognized)
			if st := e.keyState(t, keyID); st != string(types.KeyStateEnabled) {
				t.Fatalf("the key is %s under the new root, want Enabled", st)
			}
			e.srv.Stop()
		}},
	}
	for _, st := range steps {
		if !t.Run(st.name, st.run) {
			break
		}
	}
	// No secret in the audit trail or any server's standard error (the dev
	// server's export line on standard output is by design).
	t.Run("no secret logged", func(t *testing.T) {
		lines, _ := auditLines(t, filepath.Join(devDir, "audit.log"))
		var stderr []string
		for _, srv := range servers {
			stderr = append(stderr, strings.Split(srv.stderr.String(), "\n")...)
		}
		for _, secret := range []string{secret1, secret2, secret3} {
			for _, l := range slices.Concat(lines, stderr) {
				if strings.Contains(l, secret) {
					t.Errorf("a root secret is logged: %.300s", l)
				}
			}
		}
	})
}

// TestSecurityClientAbort cancels a slow CreateKey (RSA_4096) 50 ms after
// sending it: the client's abort is audited as "cancelled" (or "allowed"
// when it finished anyway), never as an internal error, and logs no ERROR.
func TestSecurityClientAbort(t *testing.T) {
	t.Parallel()
	e := startSecDev(t)
	cases := []struct {
		name string
		spec types.KeySpec
	}{
		{"CreateKey RSA_4096", types.KeySpecRsa4096},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			rt := &cancelAfterSend{base: httpFrom("").Transport, cancel: cancel, d: 50 * time.Millisecond}
			c := kms.New(kms.Options{Region: e.region, BaseEndpoint: aws.String(e.endpoint), Retryer: aws.NopRetryer{},
				Credentials: credentials.NewStaticCredentialsProvider(e.root.AccessKeyID, e.root.SecretAccessKey, ""), HTTPClient: &http.Client{Transport: rt}})
			before := len(e.audit(t))
			_, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: tc.spec, KeyUsage: types.KeyUsageTypeSignVerify})
			if !rt.sent.Load() || !errors.Is(err, context.Canceled) {
				t.Fatalf("CreateKey %s = %v; want the client's cancellation after sending", tc.spec, err)
			}
			rec := pollAudit(t, e, "record of the cancelled CreateKey", func(recs []auditRec) (auditRec, bool) {
				var last auditRec
				n := 0
				for _, r := range recs[before:] {
					if r.Action == "kms:CreateKey" && r.Principal == e.root.AccessKeyID {
						last, n = r, n+1
					}
				}
				return last, n > 0
			})
			t.Logf("audit record of the aborted CreateKey: outcome %s, error type %q", rec.Outcome, rec.ErrorType)
			if (rec.Outcome != "cancelled" && rec.Outcome != "allowed") || rec.ErrorType == "KMSInternalException" {
				t.Errorf("audit record of the aborted CreateKey = %+v, want outcome cancelled or allowed, never KMSInternalException", rec)
			}
			if _, err := e.kms(e.root, "").ListKeys(t.Context(), &kms.ListKeysInput{}); err != nil {
				t.Fatalf("ListKeys after the abort: %v", err)
			}
		})
	}
	// Stopping waits for every request to finish: its logs are all out.
	e.srv.Stop()
	if errs := grepLines(e.srv.stderr.String(), "[ERROR]", `"@level":"error"`); len(errs) > 0 {
		t.Errorf("the server logged errors about a client's abort:\n%s", strings.Join(errs, "\n"))
	}
}

// TestSecurityMetrics checks that /metrics is served only on the metrics
// listener, not to API clients.
func TestSecurityMetrics(t *testing.T) {
	t.Parallel()
	e, metricsURL := startSecDevMetrics(t)
	if _, err := e.kms(e.root, "").ListKeys(t.Context(), &kms.ListKeysInput{}); err != nil {
		t.Fatalf("ListKeys: %v", err)
	}
	get := func(t *testing.T, url string) rawResponse {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		return sendFrom(t, "", req)
	}
	cases := []struct {
		name   string
		url    string
		status int
	}{
		{"API listener", e.endpoint + "/metrics", http.StatusNotFound},
		{"metrics listener", metricsURL, http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.status != http.StatusOK {
				r := get(t, tc.url)
				if r.status != tc.status || strings.Contains(string(r.body), "hsmkms_") {
					t.Fatalf("GET %s = %v, want %d", tc.url, r, tc.status)
				}
				wantErrorShape(t, r)
				return
			}
			// The request counter is updated just after the response: poll.
			deadline := time.Now().Add(10 * time.Second)
			for {
				r := get(t, tc.url)
				if r.status == http.StatusOK && strings.Contains(string(r.body), "hsmkms_requests_total") {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("GET %s = %v, want 200 with hsmkms_requests_total", tc.url, r)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// TestSecurityFilePermissions checks that PIN and credentials files other
// users can read are refused unless explicitly allowed.
func TestSecurityFilePermissions(t *testing.T) {
	t.Parallel()
	e := startSecDev(t)
	dir := t.TempDir()
	write := func(t *testing.T, name, content string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	type fileCase struct {
		name   string
		mode   os.FileMode
		allow  bool
		code   int
		stderr string
	}
	t.Run("credentials file", func(t *testing.T) {
		creds := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", e.root.AccessKeyID, e.root.SecretAccessKey)
		for _, tc := range []fileCase{
			{"mode 0644", 0o644, false, 2, "--allow-insecure-credentials-file"},
			{"mode 0644 allowed", 0o644, true, 0, ""},
			{"mode 0600", 0o600, false, 0, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				f := write(t, "creds-"+strings.ReplaceAll(tc.name, " ", "-"), creds, tc.mode)
				args := []string{"key", "list", "--endpoint", e.endpoint, "--credentials-file", f}
				if tc.allow {
					args = append(args, "--allow-insecure-credentials-file")
				}
				r := (&sandbox{t: t, env: e.s.env}).run(nil, args...)
				if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
					t.Fatalf("want exit %d and %q on standard error: %v", tc.code, tc.stderr, r)
				}
			})
		}
	})
	e.srv.Stop()
	t.Run("PIN file", func(t *testing.T) {
		env := []string{softhsm.ConfEnv + "=" + filepath.Join(e.devDir, "softhsm", "softhsm2.conf")}
		for _, tc := range []fileCase{
			{"mode 0644", 0o644, false, 2, "--allow-insecure-pin-file"},
			{"mode 0644 allowed", 0o644, true, 0, ""},
			{"mode 0600", 0o600, false, 0, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				f := write(t, "pin-"+strings.ReplaceAll(tc.name, " ", "-"), devPIN+"\n", tc.mode)
				args := []string{"token", "info", "--pkcs11-module", softhsmModule(t), "--token-label", devLabel, "--pin-file", f}
				if tc.allow {
					args = append(args, "--allow-insecure-pin-file")
				}
				r := (&sandbox{t: t, env: e.s.env}).run(env, args...)
				if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
					t.Fatalf("want exit %d and %q on standard error: %v", tc.code, tc.stderr, r)
				}
			})
		}
	})
}
