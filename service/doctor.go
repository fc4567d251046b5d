package service

import (
	"context"
	"encoding/hex"
	"strings"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/ciphertext"
	"github.com/hsmkms/hsmkms/service/store"
)

// ObjectLister lists the key objects on the token; *hsm.Token is one.
type ObjectLister interface {
	Objects(ctx context.Context) ([]hsm.Object, error)
}

// Inconsistency is one disagreement between the store and the token.
type Inconsistency struct {
	// Kind is "missing-object", "missing-internal-key" (the key that seals
	// principals' secrets: the store may belong to another token) or
	// "unrecorded-object".
	Kind   string `json:"kind"`
	KeyID  string `json:"key_id,omitempty"`
	Number uint32 `json:"version,omitempty"`
	Object string `json:"object_id"` // CKA_ID in hex
	Label  string `json:"label,omitempty"`
	State  string `json:"state,omitempty"` // the version's state in the store
	// Part is the object an aes-cbc-hmac version lacks: "aes" or "hmac"
	// ("" when it has none at all).
	Part string `json:"part,omitempty"`
}

// CheckConsistency compares the store with the token by CKA_ID: versions
// that should have key material on the token but have none, and objects
// labelled hsmkms/ that no record names (left by a crash, or by another
// store on the same token); and an internal key recorded as made that the
// token lacks, which no request can succeed without. It changes nothing.
func (s *Service) CheckConsistency(ctx context.Context) ([]Inconsistency, error) {
	lister, ok := s.cfg.HSM.(ObjectLister)
	if !ok {
		return nil, newErr(CodeUnsupported, "this HSM cannot list its objects")
	}
	objects, err := lister.Objects(ctx)
	if err != nil {
		return nil, s.hsmErr(err, "", 0)
	}
	onToken := map[string][]hsm.Object{}
	for _, o := range objects {
		onToken[string(o.ID)] = append(onToken[string(o.ID)], o)
	}
	known := map[string]bool{}
	out := []Inconsistency{}
	// A key still being made (not Ready) may lack its objects: the next
	// use completes it.
	if rec, err := s.internalKeyRecord(ctx); err == nil {
		known[string(rec.ID[:])] = true
		if rec.Ready {
			for _, missing := range missingParts(onToken[string(rec.ID[:])], rec.Portable) {
				out = append(out, Inconsistency{Kind: "missing-internal-key", Object: rec.ID.String(),
					Label: internalKeyLabel, Part: missing})
			}
		}
	}
	err = s.eachKey(ctx, func(k store.Key) {
		vs, verr := s.versions(ctx, k.ID)
		if verr != nil {
			err = verr
			return
		}
		if k.Import != nil {
			known[string(k.Import.WrappingKey[:])] = true
		}
		portable := k.Mechanism == ciphertext.AESCBCHMAC.String()
		for _, v := range vs {
			known[string(v.ObjectID[:])] = true
			if v.State != store.VersionActive {
				continue
			}
			for _, missing := range missingParts(onToken[string(v.ObjectID[:])], portable) {
				out = append(out, Inconsistency{Kind: "missing-object", KeyID: k.ID, Number: v.Number,
					Object: hsm.ObjectID(v.ObjectID).String(), State: string(v.State), Part: missing})
			}
		}
	})
	if err != nil {
		return nil, storeErr(err)
	}
	seen := map[string]bool{}
	for _, o := range objects {
		if known[string(o.ID)] || seen[string(o.ID)] || !strings.HasPrefix(o.Label, "hsmkms/") {
			continue
		}
		seen[string(o.ID)] = true
		out = append(out, Inconsistency{Kind: "unrecorded-object", Object: hexID(o.ID), Label: o.Label})
	}
	return out, nil
}

// missingParts names what a version lacks on the token among objs, the
// objects of its CKA_ID (hsm.Object.ID): "" for a version with no object at all, and
// "hmac" or "aes" for an aes-cbc-hmac version missing one of its two.
func missingParts(objs []hsm.Object, portable bool) []string {
	if len(objs) == 0 {
		return []string{""}
	}
	if !portable {
		return nil
	}
	var hmac, aes bool
	for _, o := range objs {
		if o.MAC {
			hmac = true
		} else {
			aes = true
		}
	}
	var out []string
	if !aes {
		out = append(out, "aes")
	}
	if !hmac {
		out = append(out, "hmac")
	}
	return out
}

func hexID(b []byte) string { return hex.EncodeToString(b) }
