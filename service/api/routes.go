package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
)

// handler decodes a request body, calls the service and returns the value
// to encode as the response.
type handler func(ctx context.Context, s *service.Service, body []byte) (any, error)

// route is one operation: its body limit, timeout and handler.
type route struct {
	limit   int64
	timeout time.Duration
	call    handler
}

// routes is the route table: every operation the server answers, by
// X-Amz-Target.
func routes() map[string]route {
	fast := func(h handler) route { return route{smallBody, fastTimeout, h} }
	data := func(h handler) route { return route{dataBody, fastTimeout, h} }
	slow := func(h handler) route { return route{smallBody, slowTimeout, h} }
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
		kmsPrefix + "Sign":                            data(call((*service.Service).Sign)),
		kmsPrefix + "Verify":                          data(call((*service.Service).Verify)),
		kmsPrefix + "GetPublicKey":                    fast(call((*service.Service).GetPublicKey)),
		kmsPrefix + "TagResource":                     fast(callNoOutput((*service.Service).TagResource)),
		kmsPrefix + "UntagResource":                   fast(callNoOutput((*service.Service).UntagResource)),
		kmsPrefix + "ListResourceTags":                fast(call((*service.Service).ListResourceTags)),
		adminPrefix + "CreatePrincipal":               slow(call((*service.Service).CreatePrincipal)),
		adminPrefix + "ListPrincipals":                fast(call((*service.Service).ListPrincipals)),
		adminPrefix + "DeletePrincipal":               fast(callNoOutput((*service.Service).DeletePrincipal)),
		adminPrefix + "GetTokenInfo":                  fast(call((*service.Service).GetTokenInfo)),
	}
}

// call adapts a service method to a handler.
func call[I, O any](m func(*service.Service, context.Context, I) (O, error)) handler {
	return func(ctx context.Context, s *service.Service, body []byte) (any, error) {
		var in I
		if err := decode(body, &in); err != nil {
			return nil, err
		}
		return m(s, ctx, in)
	}
}

// callNoOutput adapts a service method that returns only an error; AWS
// answers those with an empty JSON object.
func callNoOutput[I any](m func(*service.Service, context.Context, I) error) handler {
	return func(ctx context.Context, s *service.Service, body []byte) (any, error) {
		var in I
		if err := decode(body, &in); err != nil {
			return nil, err
		}
		return struct{}{}, m(s, ctx, in)
	}
}

// errSerialization is a body that is not the JSON the operation takes.
type errSerialization struct{ msg string }

func (e *errSerialization) Error() string { return e.msg }

// decode reads a JSON 1.1 request body. Unknown members are ignored, as
// newer SDKs may send members this server does not know; a body that is not
// JSON, or a member of the wrong type or bad base64, is a
// SerializationException.
func decode(body []byte, v any) error {
	if len(body) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te) && te.Field != "":
			return &errSerialization{fmt.Sprintf("member %s: expected %s, got a JSON %s", te.Field, te.Type, te.Value)}
		case errors.As(err, &te):
			return &errSerialization{fmt.Sprintf("the request body must be a JSON object, not a JSON %s", te.Value)}
		}
		return &errSerialization{"the request body is not valid JSON or holds invalid base64: " + err.Error()}
	}
	return nil
}
