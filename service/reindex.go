package service

import (
	"context"
	"crypto"
	"errors"

	"github.com/hsmkms/hsmkms/hsm"
)

// Reindexer is an HSM that can be made to read its token afresh;
// *hsm.Token is one (hsm.Token.Reindex says why SoftHSM2 needs it).
type Reindexer interface {
	Reindex(ctx context.Context) error
}

// reindexing is the HSM the service uses: an operation with a key version
// the store holds as active that the token reports missing is tried once
// more after the token re-read its objects. Another replica may have made
// the version a moment ago; a version that is really gone fails twice.
type reindexing struct {
	HSM
	r Reindexer
}

// withReindex wraps h when it can reindex.
func withReindex(h HSM) HSM {
	if r, ok := h.(Reindexer); ok {
		return reindexing{HSM: h, r: r}
	}
	return h
}

// retry runs op, and once more after a reindex if it found no key.
func retry[T any](ctx context.Context, r Reindexer, op func() (T, error)) (T, error) {
	v, err := op()
	if !errors.Is(err, hsm.ErrKeyNotFound) {
		return v, err
	}
	if rerr := r.Reindex(ctx); rerr != nil {
		return v, err
	}
	return op()
}

// retry2 is retry for operations with two results.
func retry2(ctx context.Context, r Reindexer, op func() ([]byte, []byte, error)) ([]byte, []byte, error) {
	type pair struct{ a, b []byte }
	p, err := retry(ctx, r, func() (pair, error) {
		a, b, err := op()
		return pair{a, b}, err
	})
	return p.a, p.b, err
}

func (h reindexing) Seal(ctx context.Context, id hsm.ObjectID, iv, aad, plaintext []byte) ([]byte, error) {
	return retry(ctx, h.r, func() ([]byte, error) { return h.HSM.Seal(ctx, id, iv, aad, plaintext) })
}

func (h reindexing) SealWithTokenIV(ctx context.Context, id hsm.ObjectID, aad, plaintext []byte) ([]byte, []byte, error) {
	return retry2(ctx, h.r, func() ([]byte, []byte, error) { return h.HSM.SealWithTokenIV(ctx, id, aad, plaintext) })
}

func (h reindexing) SealDataKey(ctx context.Context, id hsm.ObjectID, n int, iv, aad []byte) ([]byte, []byte, error) {
	return retry2(ctx, h.r, func() ([]byte, []byte, error) { return h.HSM.SealDataKey(ctx, id, n, iv, aad) })
}

func (h reindexing) Unseal(ctx context.Context, id hsm.ObjectID, iv, aad, sealed []byte) ([]byte, error) {
	return retry(ctx, h.r, func() ([]byte, error) { return h.HSM.Unseal(ctx, id, iv, aad, sealed) })
}

func (h reindexing) WrapDataKey(ctx context.Context, id hsm.ObjectID, n int) ([]byte, []byte, error) {
	return retry2(ctx, h.r, func() ([]byte, []byte, error) { return h.HSM.WrapDataKey(ctx, id, n) })
}

func (h reindexing) UnwrapDataKey(ctx context.Context, id hsm.ObjectID, wrapped []byte) ([]byte, error) {
	return retry(ctx, h.r, func() ([]byte, error) { return h.HSM.UnwrapDataKey(ctx, id, wrapped) })
}

func (h reindexing) SealPortable(ctx context.Context, id hsm.ObjectID, iv, header, context, plaintext []byte) ([]byte, error) {
	return retry(ctx, h.r, func() ([]byte, error) { return h.HSM.SealPortable(ctx, id, iv, header, context, plaintext) })
}

func (h reindexing) SealDataKeyPortable(ctx context.Context, id hsm.ObjectID, n int, iv, header, context []byte) ([]byte, []byte, error) {
	return retry2(ctx, h.r, func() ([]byte, []byte, error) { return h.HSM.SealDataKeyPortable(ctx, id, n, iv, header, context) })
}

func (h reindexing) UnsealPortable(ctx context.Context, id hsm.ObjectID, iv, header, context, sealed []byte) ([]byte, error) {
	return retry(ctx, h.r, func() ([]byte, error) { return h.HSM.UnsealPortable(ctx, id, iv, header, context, sealed) })
}

func (h reindexing) Sign(ctx context.Context, id hsm.ObjectID, alg hsm.SigningAlgorithm, digest []byte) ([]byte, error) {
	return retry(ctx, h.r, func() ([]byte, error) { return h.HSM.Sign(ctx, id, alg, digest) })
}

func (h reindexing) Verify(ctx context.Context, id hsm.ObjectID, alg hsm.SigningAlgorithm, digest, sig []byte) error {
	_, err := retry(ctx, h.r, func() (struct{}, error) { return struct{}{}, h.HSM.Verify(ctx, id, alg, digest, sig) })
	return err
}

func (h reindexing) PublicKey(ctx context.Context, id hsm.ObjectID) (crypto.PublicKey, error) {
	return retry(ctx, h.r, func() (crypto.PublicKey, error) { return h.HSM.PublicKey(ctx, id) })
}

func (h reindexing) EncryptOAEP(ctx context.Context, id hsm.ObjectID, alg hsm.EncryptionAlgorithm, plaintext []byte) ([]byte, error) {
	return retry(ctx, h.r, func() ([]byte, error) { return h.HSM.EncryptOAEP(ctx, id, alg, plaintext) })
}

func (h reindexing) DecryptOAEP(ctx context.Context, id hsm.ObjectID, alg hsm.EncryptionAlgorithm, ciphertext []byte) ([]byte, error) {
	return retry(ctx, h.r, func() ([]byte, error) { return h.HSM.DecryptOAEP(ctx, id, alg, ciphertext) })
}

func (h reindexing) GenerateMAC(ctx context.Context, id hsm.ObjectID, alg hsm.MACAlgorithm, msg []byte) ([]byte, error) {
	return retry(ctx, h.r, func() ([]byte, error) { return h.HSM.GenerateMAC(ctx, id, alg, msg) })
}

func (h reindexing) VerifyMAC(ctx context.Context, id hsm.ObjectID, alg hsm.MACAlgorithm, msg, mac []byte) error {
	_, err := retry(ctx, h.r, func() (struct{}, error) { return struct{}{}, h.HSM.VerifyMAC(ctx, id, alg, msg, mac) })
	return err
}

// HasKey asks again after a re-read when the token says no: Reconcile and
// the internal key act on a "no" by making an object under the ID, which
// would be a second one beside a version another replica made.
func (h reindexing) HasKey(ctx context.Context, id hsm.ObjectID) (bool, error) {
	has, err := h.HSM.HasKey(ctx, id)
	if err != nil || has {
		return has, err
	}
	if err := h.r.Reindex(ctx); err != nil {
		// Not re-read: a "no" is not to be acted on.
		return false, err
	}
	return h.HSM.HasKey(ctx, id)
}

// DestroyKey tries once more after a re-read when the token finds nothing
// to destroy: a deletion takes "not found" as done, and a stale view
// would leave the object on the token.
func (h reindexing) DestroyKey(ctx context.Context, id hsm.ObjectID) error {
	_, err := retry(ctx, h.r, func() (struct{}, error) { return struct{}{}, h.HSM.DestroyKey(ctx, id) })
	return err
}
