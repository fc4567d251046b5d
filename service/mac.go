package service

import (
	"context"
	"errors"
	"slices"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/store"
)

// maxMAC bounds the Mac of a VerifyMac request, as AWS KMS does.
const maxMAC = 6144

// macAlgorithms is AWS KMS's MacAlgorithmSpec enum, in its order.
var macAlgorithms = []string{string(hsm.HMACSHA224), string(hsm.HMACSHA256), string(hsm.HMACSHA384), string(hsm.HMACSHA512)}

// GenerateMac computes the HMAC of a message with an HMAC key on the token.
func (s *Service) GenerateMac(ctx context.Context, in GenerateMacInput) (out GenerateMacOutput, err error) {
	o := s.begin(ctx, "kms:GenerateMac")
	defer endWith(o, &out, &err)
	if in.DryRun {
		return out, dryRunRefused()
	}
	if err := o.withGrantTokens(in.GrantTokens); err != nil {
		return out, err
	}
	k, v, err := s.macRequest(ctx, o, in.KeyId, in.Message, in.MacAlgorithm)
	if err != nil {
		return out, err
	}
	mac, err := s.hsm.GenerateMAC(ctx, v.ObjectID, hsm.MACAlgorithm(in.MacAlgorithm), in.Message)
	if err != nil {
		return out, s.hsmErr(err, k.ID, v.Number)
	}
	return GenerateMacOutput{KeyId: s.keyARN(k.ID), Mac: mac, MacAlgorithm: in.MacAlgorithm}, nil
}

// VerifyMac checks an HMAC on the token. A MAC that does not match is a
// KMSInvalidMacException, as in AWS KMS.
func (s *Service) VerifyMac(ctx context.Context, in VerifyMacInput) (out VerifyMacOutput, err error) {
	o := s.begin(ctx, "kms:VerifyMac")
	defer endWith(o, &out, &err)
	if in.DryRun {
		return out, dryRunRefused()
	}
	if err := o.withGrantTokens(in.GrantTokens); err != nil {
		return out, err
	}
	if len(in.Mac) == 0 || len(in.Mac) > maxMAC {
		return out, newErr(CodeValidation, "1 validation error detected: Value at 'mac' failed to satisfy constraint: Member must have length between 1 and %d", maxMAC)
	}
	k, v, err := s.macRequest(ctx, o, in.KeyId, in.Message, in.MacAlgorithm)
	if err != nil {
		return out, err
	}
	err = s.hsm.VerifyMAC(ctx, v.ObjectID, hsm.MACAlgorithm(in.MacAlgorithm), in.Message, in.Mac)
	if errors.Is(err, hsm.ErrInvalidSignature) {
		return out, wrapErr(CodeInvalidMac, err, "the MAC is not valid for the message under %s", s.keyARN(k.ID))
	}
	if err != nil {
		return out, s.hsmErr(err, k.ID, v.Number)
	}
	return VerifyMacOutput{KeyId: s.keyARN(k.ID), MacValid: true, MacAlgorithm: in.MacAlgorithm}, nil
}

// macRequest validates a GenerateMac or VerifyMac request and returns the
// key and the version that computes the MAC.
func (s *Service) macRequest(ctx context.Context, o *op, ident string, msg []byte, alg string) (store.Key, store.Version, error) {
	if len(msg) == 0 || len(msg) > hsm.MaxMACMessage {
		return store.Key{}, store.Version{}, newErr(CodeValidation, "1 validation error detected: Value at 'message' failed to satisfy constraint: Member must have length between 1 and %d", hsm.MaxMACMessage)
	}
	switch {
	case alg == "":
		return store.Key{}, store.Version{}, newErr(CodeValidation, "1 validation error detected: Value null at 'macAlgorithm' failed to satisfy constraint: Member must not be null")
	case !slices.Contains(macAlgorithms, alg):
		return store.Key{}, store.Version{}, enumErr("macAlgorithm", alg, macAlgorithms)
	}
	k, err := s.authorizedKey(ctx, o, ident)
	if err != nil {
		return k, store.Version{}, err
	}
	if err := s.usable(k, UsageMAC); err != nil {
		return k, store.Version{}, err
	}
	if want := string(keySpecs[k.Spec].mac); alg != want {
		return k, store.Version{}, newErr(CodeInvalidKeyUsage, "MacAlgorithm %s is not valid for %s; use %s", alg, s.keyARN(k.ID), want)
	}
	var v store.Version
	err = s.store.View(ctx, func(tx store.Tx) error {
		v, err = tx.Version(k.ID, k.CurrentVersion)
		return err
	})
	o.rec.KeyVersion = v.Number
	return k, v, storeErrOrNil(err)
}
