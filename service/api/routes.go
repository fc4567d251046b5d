package api

import (
	"context"
	"time"

	"github.com/hsmkms/hsmkms/service"
)

// Target prefixes of the two JSON protocols the server speaks.
const (
	kmsPrefix   = "TrentService."
	adminPrefix = "HsmkmsAdmin."
)

// Body limits. A KMS request carries at most a 6 KiB ciphertext or a
// 4 KiB plaintext, base64 encoded, and an 8 KiB encryption context.
const (
	smallBody = 64 << 10
	dataBody  = 128 << 10
)

// Timeouts: creating token objects takes tens of milliseconds and RSA-4096
// key generation seconds; cryptographic calls take well under one.
const (
	fastTimeout = 10 * time.Second
	slowTimeout = 60 * time.Second
	// bulkTimeout bounds a store snapshot's transfer (tens of MB).
	bulkTimeout = 10 * time.Minute
)

// handler decodes a request body, calls the service and returns the value
// to encode as the response.
type handler func(ctx context.Context, s *service.Service, body []byte) (any, error)

// route is one operation: its body limit, timeout and handler, and its
// input decoder on its own (for the fuzz tests).
type route struct {
	limit   int64
	timeout time.Duration
	call    handler
	input   func(body []byte) (any, error)
}

// decodeInput decodes body into a new value of the operation's input
// type, exactly as the server does before calling the service.
func (rt route) decodeInput(body []byte) (any, error) { return rt.input(body) }

// routes is the route table: every operation the server answers, by
// X-Amz-Target.
func routes() map[string]route {
	fast := func(o operation) route { return route{smallBody, fastTimeout, o.call, o.input} }
	data := func(o operation) route { return route{dataBody, fastTimeout, o.call, o.input} }
	slow := func(o operation) route { return route{smallBody, slowTimeout, o.call, o.input} }
	bulk := func(o operation) route { return route{smallBody, bulkTimeout, o.call, o.input} }
	return map[string]route{
		kmsPrefix + "CreateKey":                       slow(call((*service.Service).CreateKey)),
		kmsPrefix + "DescribeKey":                     fast(call((*service.Service).DescribeKey)),
		kmsPrefix + "ListKeys":                        fast(call((*service.Service).ListKeys)),
		kmsPrefix + "EnableKey":                       fast(callNoOutput((*service.Service).EnableKey)),
		kmsPrefix + "DisableKey":                      fast(callNoOutput((*service.Service).DisableKey)),
		kmsPrefix + "ScheduleKeyDeletion":             fast(call((*service.Service).ScheduleKeyDeletion)),
		kmsPrefix + "CancelKeyDeletion":               fast(call((*service.Service).CancelKeyDeletion)),
		kmsPrefix + "RotateKeyOnDemand":               slow(call((*service.Service).RotateKeyOnDemand)),
		kmsPrefix + "EnableKeyRotation":               fast(callNoOutput((*service.Service).EnableKeyRotation)),
		kmsPrefix + "DisableKeyRotation":              fast(callNoOutput((*service.Service).DisableKeyRotation)),
		kmsPrefix + "GetKeyRotationStatus":            fast(call((*service.Service).GetKeyRotationStatus)),
		kmsPrefix + "ListKeyRotations":                fast(call((*service.Service).ListKeyRotations)),
		kmsPrefix + "CreateAlias":                     fast(callNoOutput((*service.Service).CreateAlias)),
		kmsPrefix + "UpdateAlias":                     fast(callNoOutput((*service.Service).UpdateAlias)),
		kmsPrefix + "DeleteAlias":                     fast(callNoOutput((*service.Service).DeleteAlias)),
		kmsPrefix + "ListAliases":                     fast(call((*service.Service).ListAliases)),
		kmsPrefix + "Encrypt":                         data(call((*service.Service).Encrypt)),
		kmsPrefix + "Decrypt":                         data(call((*service.Service).Decrypt)),
		kmsPrefix + "ReEncrypt":                       data(call((*service.Service).ReEncrypt)),
		kmsPrefix + "GenerateDataKey":                 data(call((*service.Service).GenerateDataKey)),
		kmsPrefix + "GenerateDataKeyWithoutPlaintext": data(call((*service.Service).GenerateDataKeyWithoutPlaintext)),
		kmsPrefix + "GenerateRandom":                  fast(call((*service.Service).GenerateRandom)),
		// Slow: the token makes an RSA-4096 pair in seconds.
		kmsPrefix + "GenerateDataKeyPair":                 slow(call((*service.Service).GenerateDataKeyPair)),
		kmsPrefix + "GenerateDataKeyPairWithoutPlaintext": slow(call((*service.Service).GenerateDataKeyPairWithoutPlaintext)),
		kmsPrefix + "Sign":                                data(call((*service.Service).Sign)),
		kmsPrefix + "Verify":                              data(call((*service.Service).Verify)),
		kmsPrefix + "GetParametersForImport":              slow(call((*service.Service).GetParametersForImport)),
		kmsPrefix + "ImportKeyMaterial":                   slow(call((*service.Service).ImportKeyMaterial)),
		kmsPrefix + "DeleteImportedKeyMaterial":           fast(callNoOutput((*service.Service).DeleteImportedKeyMaterial)),
		kmsPrefix + "CreateGrant":                         fast(call((*service.Service).CreateGrant)),
		kmsPrefix + "ListGrants":                          fast(call((*service.Service).ListGrants)),
		kmsPrefix + "ListRetirableGrants":                 fast(call((*service.Service).ListRetirableGrants)),
		kmsPrefix + "RetireGrant":                         fast(callNoOutput((*service.Service).RetireGrant)),
		kmsPrefix + "RevokeGrant":                         fast(callNoOutput((*service.Service).RevokeGrant)),
		kmsPrefix + "GenerateMac":                         data(call((*service.Service).GenerateMac)),
		kmsPrefix + "VerifyMac":                           data(call((*service.Service).VerifyMac)),
		kmsPrefix + "GetPublicKey":                        fast(call((*service.Service).GetPublicKey)),
		kmsPrefix + "UpdateKeyDescription":                fast(callNoOutput((*service.Service).UpdateKeyDescription)),
		kmsPrefix + "TagResource":                         fast(callNoOutput((*service.Service).TagResource)),
		kmsPrefix + "UntagResource":                       fast(callNoOutput((*service.Service).UntagResource)),
		kmsPrefix + "ListResourceTags":                    fast(call((*service.Service).ListResourceTags)),
		kmsPrefix + "GetKeyPolicy":                        fast(call((*service.Service).GetKeyPolicy)),
		kmsPrefix + "ListKeyPolicies":                     fast(call((*service.Service).ListKeyPolicies)),
		kmsPrefix + "PutKeyPolicy":                        fast(callNoOutput((*service.Service).PutKeyPolicy)),
		adminPrefix + "CreatePrincipal":                   slow(call((*service.Service).CreatePrincipal)),
		adminPrefix + "ListPrincipals":                    fast(call((*service.Service).ListPrincipals)),
		adminPrefix + "UpdatePrincipal":                   fast(callNoOutput((*service.Service).UpdatePrincipal)),
		adminPrefix + "RotatePrincipalSecret":             slow(call((*service.Service).RotatePrincipalSecret)),
		adminPrefix + "DeletePrincipal":                   fast(callNoOutput((*service.Service).DeletePrincipal)),
		adminPrefix + "GetTokenInfo":                      fast(call((*service.Service).GetTokenInfo)),
		adminPrefix + "BackupStore":                       bulk(call((*service.Service).BackupStore)),
		adminPrefix + "CreateXksStore":                    fast(call((*service.Service).CreateXKSStore)),
		adminPrefix + "ListXksStores":                     fast(call((*service.Service).ListXKSStores)),
		adminPrefix + "DeleteXksStore":                    fast(callNoOutput((*service.Service).DeleteXKSStore)),
		adminPrefix + "AllowXksKey":                       fast(callNoOutput((*service.Service).AllowXKSKey)),
		adminPrefix + "DenyXksKey":                        fast(callNoOutput((*service.Service).DenyXKSKey)),
		adminPrefix + "AddXksCredential":                  slow(call((*service.Service).AddXKSCredential)),
		adminPrefix + "RemoveXksCredential":               fast(callNoOutput((*service.Service).RemoveXKSCredential)),
		adminPrefix + "SetXksPolicy":                      fast(callNoOutput((*service.Service).SetXKSPolicy)),
	}
}

// operation is a service method adapted to the wire: its handler and its
// input decoder.
type operation struct {
	call  handler
	input func(body []byte) (any, error)
}

// call adapts a service method to an operation.
func call[I, O any](m func(*service.Service, context.Context, I) (O, error)) operation {
	return operation{
		call: func(ctx context.Context, s *service.Service, body []byte) (any, error) {
			var in I
			if err := decode(body, &in); err != nil {
				return nil, &errUnserved{err}
			}
			return m(s, ctx, in)
		},
		input: decodeNew[I],
	}
}

// callNoOutput adapts a service method that returns only an error; AWS
// answers those with an empty JSON object.
func callNoOutput[I any](m func(*service.Service, context.Context, I) error) operation {
	return operation{
		call: func(ctx context.Context, s *service.Service, body []byte) (any, error) {
			var in I
			if err := decode(body, &in); err != nil {
				return nil, &errUnserved{err}
			}
			return struct{}{}, m(s, ctx, in)
		},
		input: decodeNew[I],
	}
}

func decodeNew[I any](body []byte) (any, error) {
	in := new(I)
	return in, decode(body, in)
}

// errUnserved is a request refused before it reached the key service
// (which audits everything it is asked), so that the API layer audits it.
type errUnserved struct{ err error }

func (e *errUnserved) Error() string { return e.err.Error() }
func (e *errUnserved) Unwrap() error { return e.err }
