package api

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"unicode/utf8"

	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/policy"
)

// fuzzBodies holds, for every X-Amz-Target, a body as the AWS SDKs send it
// and one the operation must refuse (a member of the wrong type, a
// duplicate member, or bad base64). FuzzDecodeInput fails when a route has
// no entry, so that a new operation is fuzzed from its first commit.
var fuzzBodies = map[string]struct{ valid, invalid string }{
	"CreateKey":                           {`{"Description":"app key","KeyUsage":"ENCRYPT_DECRYPT","KeySpec":"SYMMETRIC_DEFAULT","Tags":[{"TagKey":"team","TagValue":"db"}]}`, `{"Tags":{"TagKey":"team"}}`},
	"DescribeKey":                         {`{"KeyId":"alias/x"}`, `{"KeyId":1}`},
	"ListKeys":                            {`{"Limit":50,"Marker":"m"}`, `{"Limit":"50"}`},
	"EnableKey":                           {`{"KeyId":"1234abcd-12ab-34cd-56ef-1234567890ab"}`, `{"KeyId":"a","KeyId":"b"}`},
	"DisableKey":                          {`{"KeyId":"alias/x"}`, `{"KeyId":null,"KeyId":"alias/x"}`},
	"ScheduleKeyDeletion":                 {`{"KeyId":"alias/x","PendingWindowInDays":7}`, `{"KeyId":"alias/x","PendingWindowInDays":7.5}`},
	"CancelKeyDeletion":                   {`{"KeyId":"alias/x"}`, `["alias/x"]`},
	"RotateKeyOnDemand":                   {`{"KeyId":"alias/x"}`, `{"KeyId":"alias/x"`},
	"EnableKeyRotation":                   {`{"KeyId":"alias/x","RotationPeriodInDays":365}`, `{"RotationPeriodInDays":true}`},
	"DisableKeyRotation":                  {`{"KeyId":"alias/x"}`, `{"KeyId":["alias/x"]}`},
	"GetKeyRotationStatus":                {`{"KeyId":"alias/x"}`, `"alias/x"`},
	"ListKeyRotations":                    {`{"KeyId":"alias/x","Limit":10}`, `{"KeyId":"alias/x","Limit":1e400}`},
	"CreateAlias":                         {`{"AliasName":"alias/x","TargetKeyId":"1234abcd-12ab-34cd-56ef-1234567890ab"}`, `{"AliasName":"alias/x","AliasName":"alias/y"}`},
	"UpdateAlias":                         {`{"AliasName":"alias/x","TargetKeyId":"alias/y"}`, `{"AliasName":"alias/\ud800"}`},
	"DeleteAlias":                         {`{"AliasName":"alias/x"}`, `{"AliasName":"alias/x"} {}`},
	"ListAliases":                         {`{"KeyId":"alias/x","Limit":100}`, `{"Limit":-}`},
	"Encrypt":                             {`{"KeyId":"alias/x","Plaintext":"aGk=","EncryptionContext":{"purpose":"test"}}`, `{"KeyId":"alias/x","Plaintext":"aGk"}`},
	"Decrypt":                             {`{"CiphertextBlob":"SEsBAQ==","EncryptionContext":{"a":"bc"},"KeyId":"alias/x"}`, `{"CiphertextBlob":"SEsBAQ==","EncryptionContext":{"a":"b","a":"c"}}`},
	"ReEncrypt":                           {`{"CiphertextBlob":"SEsBAQ==","DestinationKeyId":"alias/y","SourceEncryptionContext":{"k":"v"}}`, `{"CiphertextBlob":"SEsBAQ==","SourceEncryptionContext":{"k":1}}`},
	"GenerateDataKey":                     {`{"KeyId":"alias/x","KeySpec":"AES_256","EncryptionContext":{"tenant":"t-0042"}}`, `{"KeyId":"alias/x","NumberOfBytes":"32"}`},
	"GenerateDataKeyWithoutPlaintext":     {`{"KeyId":"alias/x","NumberOfBytes":32}`, `{"KeyId":"alias/x","EncryptionContext":["k","v"]}`},
	"GenerateDataKeyPair":                 {`{"KeyId":"alias/x","KeyPairSpec":"ECC_NIST_P256","EncryptionContext":{"a":"b"}}`, `{"KeyId":"alias/x","KeyPairSpec":7}`},
	"GenerateDataKeyPairWithoutPlaintext": {`{"KeyId":"alias/x","KeyPairSpec":"RSA_2048"}`, `{"KeyPairSpec":"SM2","GrantTokens":"t"}`},
	"GenerateRandom":                      {`{"NumberOfBytes":32,"Recipient":{"KeyEncryptionAlgorithm":"RSAES_OAEP_SHA_256","AttestationDocument":"aGk="}}`, `{"NumberOfBytes":32,"Recipient":{"AttestationDocument":7}}`},
	"Sign":                                {`{"KeyId":"alias/sign","Message":"aGVsbG8=","MessageType":"RAW","SigningAlgorithm":"ECDSA_SHA_256"}`, `{"KeyId":"alias/sign","Message":"!!!!"}`},
	"GetParametersForImport":              {`{"KeyId":"alias/x","WrappingAlgorithm":"RSAES_OAEP_SHA_1","WrappingKeySpec":"RSA_2048"}`, `{"WrappingKeySpec":2048}`},
	"ImportKeyMaterial":                   {`{"KeyId":"alias/x","ImportToken":"SEtJMQ==","EncryptedKeyMaterial":"AAAA","ExpirationModel":"KEY_MATERIAL_EXPIRES","ValidTo":1893456000}`, `{"ValidTo":"tomorrow"}`},
	"DeleteImportedKeyMaterial":           {`{"KeyId":"alias/x"}`, `{"KeyId":[]}`},
	"UpdateKeyDescription":                {`{"KeyId":"alias/x","Description":"new"}`, `{"Description":7}`},
	"CreateGrant":                         {`{"KeyId":"1234abcd-12ab-34cd-56ef-1234567890ab","GranteePrincipal":"arn:aws:iam::000000000000:user/AKIAAPP","Operations":["Decrypt"],"Constraints":{"EncryptionContextSubset":{"a":"b"}},"Name":"n"}`, `{"Operations":"Decrypt"}`},
	"ListGrants":                          {`{"KeyId":"alias/x","Limit":10,"GrantId":"00"}`, `{"Limit":"10"}`},
	"ListRetirableGrants":                 {`{"RetiringPrincipal":"arn:aws:iam::000000000000:user/AKIAAPP","Limit":5}`, `{"RetiringPrincipal":1}`},
	"RetireGrant":                         {`{"GrantToken":"hsmkms-grant-v1:abc"}`, `{"GrantToken":["a"]}`},
	"RevokeGrant":                         {`{"KeyId":"alias/x","GrantId":"00"}`, `{"GrantId":{}}`},
	"GenerateMac":                         {`{"KeyId":"alias/mac","Message":"aGVsbG8=","MacAlgorithm":"HMAC_SHA_256"}`, `{"KeyId":"alias/mac","Message":"!!!!"}`},
	"VerifyMac":                           {`{"KeyId":"alias/mac","Message":"aGVsbG8=","Mac":"AAAA","MacAlgorithm":"HMAC_SHA_256"}`, `{"KeyId":"alias/mac","Mac":[]}`},
	"Verify":                              {`{"KeyId":"alias/sign","Message":"aGVsbG8=","Signature":"MEUCIQ==","SigningAlgorithm":"ECDSA_SHA_256"}`, `{"KeyId":"alias/sign","Signature":{}}`},
	"GetPublicKey":                        {`{"KeyId":"alias/sign","GrantTokens":["t"]}`, "{\"KeyId\":\"alias/\xff\"}"},
	"TagResource":                         {`{"KeyId":"alias/x","Tags":[{"TagKey":"k","TagValue":"v"}]}`, `{"KeyId":"alias/x","Tags":[{"TagKey":"k","TagKey":"j"}]}`},
	"UntagResource":                       {`{"KeyId":"alias/x","TagKeys":["k"]}`, `{"KeyId":"alias/x","TagKeys":"k"}`},
	"ListResourceTags":                    {`{"KeyId":"alias/x","Limit":10}`, `{"KeyId":"alias/x","Unknown":{"a":1,"a":2}}`},
	"GetKeyPolicy":                        {`{"KeyId":"alias/x","PolicyName":"default"}`, `{"KeyId":"alias/x","PolicyName":7}`},
	"ListKeyPolicies":                     {`{"KeyId":"alias/x","Limit":1,"Marker":"a"}`, `{"KeyId":"alias/x","Limit":"1"}`},
	"PutKeyPolicy":                        {`{"KeyId":"alias/x","PolicyName":"default","Policy":"{}"}`, `{"KeyId":"alias/x","BypassPolicyLockoutSafetyCheck":"yes"}`},
	"CreatePrincipal":                     {`{"Name":"app","Statements":[{"effect":"Allow","actions":["kms:Encrypt"],"resources":["*"]}]}`, `{"Name":"app","Statements":[{"effect":"Allow","effect":"Deny"}]}`},
	"ListPrincipals":                      {`{"Limit":10}`, `{"Limit":{}}`},
	"UpdatePrincipal":                     {`{"AccessKeyId":"AKIAAAAAAAAAAAAAAAAA","Statements":[{"effect":"Allow","actions":["kms:Decrypt"],"resources":["*"]}]}`, `{"Statements":"x"}`},
	"RotatePrincipalSecret":               {`{"AccessKeyId":"AKIAAAAAAAAAAAAAAAAA"}`, `{"AccessKeyId":7}`},
	"DeletePrincipal":                     {`{"AccessKeyId":"AKIAEXAMPLE0000000001"}`, `{"AccessKeyId":"AKIA\udc00"}`},
	"GetTokenInfo":                        {`{}`, `[]`},
	"BackupStore":                         {`{}`, `[]`},
	"CreateXksStore":                      {`{"Prefix":"example/uri/path/prefix"}`, `{"Prefix":7}`},
	"ListXksStores":                       {`{}`, `[]`},
	"DeleteXksStore":                      {`{"Prefix":"a/b"}`, `{"Prefix":"a","Prefix":"b"}`},
	"AllowXksKey":                         {`{"Prefix":"a","ExternalKeyId":"app","Usage":["ENCRYPT","DECRYPT"]}`, `{"Usage":"ENCRYPT"}`},
	"DenyXksKey":                          {`{"Prefix":"a","ExternalKeyId":"app"}`, `{"ExternalKeyId":["app"]}`},
	"AddXksCredential":                    {`{"Prefix":"a"}`, `{"Prefix":null,"Prefix":"a"}`},
	"SetXksPolicy":                        {`{"Prefix":"a","Statements":[{"effect":"Allow","actions":["kms:Decrypt"],"resources":["arn:aws:iam::111122223333:*"]}]}`, `{"Statements":{}}`},
	"RemoveXksCredential":                 {`{"Prefix":"a","AccessKeyId":"MUBSXM6K3KMXHN6RRCXI7TWQH4"}`, `{"AccessKeyId":{}}`},
}

// fuzzTextSeeds are bodies around the text rules, sent to every kind of
// target: lone and paired surrogate escapes, escaped backslashes that
// only look like escapes, invalid UTF-8, and duplicates hidden in members
// the operation does not know.
var fuzzTextSeeds = []string{
	"",
	`{}`,
	`null`,
	`{"KeyId":"\ud83d\ude00"}`,
	`{"KeyId":"\ud83d"}`,
	`{"KeyId":"\ud83d\u0041"}`,
	`{"KeyId":"\\ud800"}`,
	`{"KeyId":"\\\ud800"}`,
	`{"KeyId":"\u0000"}`,
	"{\"KeyId\":\"\xed\xa0\x80\"}", // a surrogate encoded as UTF-8
	"{\"KeyId\":\"a\"}\xff",
	`{"keyid":"alias/x","KeyId":"alias/y"}`,
	`{"X":[{"a":1},{"a":1}],"Y":{"b":{"c":1,"c":2}}}`,
	`{"\u004beyId":"a","KeyId":"b"}`,
}

// FuzzDecodeInput decodes (target, body) as the server does. Properties:
// no panic; a refusal is a SerializationException (*errSerialization) or a
// ValidationException (*service.Error), and always the latter for a body
// that is not UTF-8; a body that decodes is one JSON value that
// go-json-experiment's jsontext decoder reads with its default, strict
// rules (no duplicate member name at any depth, valid UTF-8, no lone
// surrogate escape); and what decodes re-encodes to a body that decodes to
// the same value, so the server's reading of a request is a fixed point.
func FuzzDecodeInput(f *testing.F) {
	rts := routes()
	names := slices.Sorted(maps.Keys(rts))
	for _, name := range names {
		op := name[bytes.IndexByte([]byte(name), '.')+1:]
		b, ok := fuzzBodies[op]
		if !ok {
			f.Fatalf("no seed bodies for %s: add them to fuzzBodies", name)
		}
		// The table states which body is which; hold it to that.
		if _, err := rts[name].decodeInput([]byte(b.valid)); err != nil {
			f.Fatalf("%s: the SDK body %s: %v", name, b.valid, err)
		}
		if _, err := rts[name].decodeInput([]byte(b.invalid)); err == nil {
			f.Fatalf("%s: the bad body %s decoded", name, b.invalid)
		}
		f.Add(name, []byte(b.valid))
		f.Add(name, []byte(b.invalid))
	}
	for i, s := range fuzzTextSeeds {
		f.Add(names[i%len(names)], []byte(s))
	}
	f.Fuzz(func(t *testing.T, target string, body []byte) {
		rt, ok := rts[target]
		if !ok {
			// A mutated name still exercises some operation, chosen
			// deterministically so that a failing input replays.
			target = names[len(target)%len(names)]
			rt = rts[target]
		}
		in := bytes.Clone(body)
		v, err := rt.decodeInput(in)
		if !bytes.Equal(in, body) {
			t.Fatalf("%s: decodeInput modified the body", target)
		}
		if err != nil {
			var se *errSerialization
			var ve *service.Error
			badText := !utf8.Valid(body) || hasLoneSurrogate(body)
			switch {
			case errors.As(err, &ve) && ve.Code == service.CodeValidation:
				var um *policy.UnknownMemberError
				if errors.As(err, &um) && !badText && jsontext.Value(body).IsValid() {
					return // a policy statement's unknown member, in well-formed JSON
				}
				if !badText {
					t.Fatalf("%s: %q gave a ValidationException (%v), but its text is good", target, body, err)
				}
			case errors.As(err, &se):
				if badText {
					t.Fatalf("%s: %q, whose text is bad, gave a SerializationException (%v), want a ValidationException", target, body, err)
				}
			default:
				t.Fatalf("%s: decodeInput(%q) = %T %v, want a SerializationException or a ValidationException", target, body, err, err)
			}
			return
		}
		if v == nil || reflect.ValueOf(v).Kind() != reflect.Pointer || reflect.ValueOf(v).IsNil() {
			t.Fatalf("%s: decodeInput returned %#v", target, v)
		}
		if len(body) == 0 {
			return // no body is the empty input, as AWS takes it
		}
		if err := strictJSON(body); err != nil {
			t.Fatalf("%s: decodeInput accepted %q, which strict JSON refuses: %v", target, body, err)
		}
		// The fixed point: nil slices and maps encode as null, so that
		// they decode back as nil, not as empty.
		again, err := json.Marshal(v, json.FormatNilSliceAsNull(true), json.FormatNilMapAsNull(true))
		if err != nil {
			t.Fatalf("%s: re-encoding %#v: %v", target, v, err)
		}
		w, err := rt.decodeInput(again)
		if err != nil || !reflect.DeepEqual(v, w) {
			t.Fatalf("%s: %q decodes to %#v, re-encoded as %s it decodes to %#v (%v)", target, body, v, again, w, err)
		}
	})
}

// escapeRE consumes the escapes of a body left to right as a JSON reader
// does: a surrogate pair, a \u escape, or a backslash and any one byte.
var escapeRE = regexp.MustCompile(`(?s)\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.)`)

// hasLoneSurrogate reports whether body holds a \u escape of a UTF-16
// surrogate that is not half of a pair: the documented ValidationException,
// found here by a regular expression rather than decode's own scanner.
func hasLoneSurrogate(body []byte) bool {
	for _, m := range escapeRE.FindAll(body, -1) {
		if len(m) == 6 && m[1] == 'u' {
			if r, err := strconv.ParseUint(string(m[2:]), 16, 16); err == nil && r >= 0xd800 && r <= 0xdfff {
				return true
			}
		}
	}
	return false
}

// strictJSON reads body as a token stream with jsontext's defaults, which
// refuse duplicate member names at every depth, invalid UTF-8 and lone
// surrogate escapes, and checks that it holds exactly one value.
func strictJSON(body []byte) error {
	dec := jsontext.NewDecoder(bytes.NewReader(body))
	values := 0
	for {
		if _, err := dec.ReadToken(); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		if dec.StackDepth() == 0 {
			values++
		}
	}
	if values != 1 {
		return errors.New("not exactly one JSON value")
	}
	return nil
}
