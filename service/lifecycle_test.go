package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/ciphertext"
	"github.com/hsmkms/hsmkms/service/store"
)

// The key states of the matrix; Deleted is a tombstone and Creating a key
// whose creation never finished.
const (
	ksEnabled  = "Enabled"
	ksDisabled = "Disabled"
	ksPending  = "PendingDeletion"
	ksDeleted  = "Deleted"
	ksCreating = "Creating"
)

var ksStates = []string{ksEnabled, ksDisabled, ksPending, ksDeleted, ksCreating}

// ksStateKey is a symmetric key of the state matrix.
type ksStateKey struct {
	id    string
	alias string // alias/st-<state>; none exists for Creating
	blob  []byte // made while Enabled ("secret"); forged for Creating
}

// ksStateKeys makes one symmetric key in each state, tagged state=<state>,
// through the API wherever the API can (a Creating key is what a crash
// leaves: injected in the store). It also makes a spare Enabled key that
// alias/upd points at.
func ksStateKeys(t *testing.T, f *fixture) map[string]ksStateKey {
	t.Helper()
	ctx := admin(t)
	keys := map[string]ksStateKey{}
	mk := func(state string) ksStateKey {
		id := f.createKey(t, CreateKeyInput{Description: state, Tags: []Tag{{TagKey: "state", TagValue: state}}})
		k := ksStateKey{id: id, alias: "alias/st-" + state, blob: ksEncrypt(t, f, id, "secret")}
		ksMust(t, "CreateAlias", f.svc.CreateAlias(ctx, AliasInput{AliasName: k.alias, TargetKeyId: id}))
		keys[state] = k
		return k
	}
	// The tombstone first, so that reaching its deletion date reaches no
	// other key's.
	gone := mk(ksDeleted)
	deleteAfterWindow(t, f, gone.id)
	mk(ksEnabled)
	ksMust(t, "DisableKey", f.svc.DisableKey(ctx, KeyIDInput{KeyId: mk(ksDisabled).id}))
	_, err := f.svc.ScheduleKeyDeletion(ctx, ScheduleKeyDeletionInput{KeyId: mk(ksPending).id})
	ksMust(t, "ScheduleKeyDeletion", err)
	creating := ksInjectKeys(t, f, store.KeyCreating)[0]
	keys[ksCreating] = ksStateKey{id: creating, alias: "alias/st-" + ksCreating, blob: ksForgedBlob(t, creating)}
	spare := f.createKey(t, CreateKeyInput{})
	ksMust(t, "CreateAlias", f.svc.CreateAlias(ctx, AliasInput{AliasName: "alias/upd", TargetKeyId: spare}))
	return keys
}

// ksStateMsg is the message of the usual refusal of a key in state.
func ksStateMsg(want *Error, state, id string) string {
	switch {
	case want == ErrNotFound:
		return "Key '" + ksARN(id) + "' does not exist"
	case want == ErrDisabled:
		return ksARN(id) + " is disabled."
	case want == ErrInvalidState && state == ksPending:
		return ksARN(id) + " is pending deletion."
	}
	return ""
}

// TestLifecycleStateMatrix calls every key operation on a key in every
// state and checks the exact outcome, the message, the state afterwards
// and the one audit record of each call.
func TestLifecycleStateMatrix(t *testing.T) {
	nf := func(m map[string]*Error) map[string]*Error {
		m[ksDeleted], m[ksCreating] = ErrNotFound, ErrNotFound
		return m
	}
	aliasNF := func(k ksStateKey) string { return "Alias " + ksAliasARN(k.alias) + " is not found." }
	cases := []struct {
		name string
		call func(ctx context.Context, s *Service, k ksStateKey, state string) error
		want map[string]*Error
		msg  map[string]func(k ksStateKey) string // overrides ksStateMsg
		// after is the state the key is in after a successful call.
		after map[string]string
		check func(t *testing.T, f *fixture, k ksStateKey, state string)
	}{
		{name: "DescribeKey", want: nf(map[string]*Error{}),
			call: func(ctx context.Context, s *Service, k ksStateKey, state string) error {
				out, err := s.DescribeKey(ctx, KeyIDInput{KeyId: k.id})
				if m := out.KeyMetadata; err == nil && (m.KeyState != state || m.Enabled != (state == ksEnabled) || (m.DeletionDate != nil) != (state == ksPending)) {
					return fmt.Errorf("metadata %+v", m)
				}
				return err
			}},
		{name: "DescribeKey by alias", want: nf(map[string]*Error{}),
			msg: map[string]func(ksStateKey) string{
				ksDeleted:  func(k ksStateKey) string { return "Alias " + ksAliasARN(k.alias) + " is not found." },
				ksCreating: func(k ksStateKey) string { return "Alias " + ksAliasARN(k.alias) + " is not found." }},
			call: func(ctx context.Context, s *Service, k ksStateKey, _ string) error {
				out, err := s.DescribeKey(ctx, KeyIDInput{KeyId: k.alias})
				if err == nil && out.KeyMetadata.KeyId != k.id {
					return fmt.Errorf("alias found %s, want %s", out.KeyMetadata.KeyId, k.id)
				}
				return err
			}},
		{name: "EnableKey", want: nf(map[string]*Error{ksPending: ErrInvalidState}),
			after: map[string]string{ksEnabled: ksEnabled, ksDisabled: ksEnabled},
			call: func(ctx context.Context, s *Service, k ksStateKey, _ string) error {
				return s.EnableKey(ctx, KeyIDInput{KeyId: k.id})
			}},
		{name: "DisableKey", want: nf(map[string]*Error{ksPending: ErrInvalidState}),
			after: map[string]string{ksEnabled: ksDisabled, ksDisabled: ksDisabled},
			call: func(ctx context.Context, s *Service, k ksStateKey, _ string) error {
				return s.DisableKey(ctx, KeyIDInput{KeyId: k.id})
			}},
		{name: "ScheduleKeyDeletion", want: nf(map[string]*Error{ksPending: ErrInvalidState}),
			after: map[string]string{ksEnabled: ksPending, ksDisabled: ksPending},
			call: func(ctx context.Context, s *Service, k ksStateKey, _ string) error {
				_, err := s.ScheduleKeyDeletion(ctx, ScheduleKeyDeletionInput{KeyId: k.id, PendingWindowInDays: 7})
				return err
			}},
		{name: "CancelKeyDeletion", want: nf(map[string]*Error{ksEnabled: ErrInvalidState, ksDisabled: ErrInvalidState}),
			msg: map[string]func(ksStateKey) string{
				ksEnabled:  func(k ksStateKey) string { return ksARN(k.id) + " is not pending deletion (it is Enabled)." },
				ksDisabled: func(k ksStateKey) string { return ksARN(k.id) + " is not pending deletion (it is Disabled)." }},
			after: map[string]string{ksPending: ksDisabled},
			call: func(ctx context.Context, s *Service, k ksStateKey, _ string) error {
				_, err := s.CancelKeyDeletion(ctx, KeyIDInput{KeyId: k.id})
				return err
			}},
		{name: "Encrypt", want: nf(map[string]*Error{ksDisabled: ErrDisabled, ksPending: ErrInvalidState}),
			call: func(ctx context.Context, s *Service, k ksStateKey, _ string) error {
				_, err := s.Encrypt(ctx, EncryptInput{KeyId: k.id, Plaintext: []byte("p")})
				return err
			}},
		{name: "Decrypt", want: map[string]*Error{ksDisabled: ErrDisabled, ksPending: ErrInvalidState, ksDeleted: ErrNotFound, ksCreating: ErrInvalidCipher},
			msg: map[string]func(ksStateKey) string{ksCreating: func(ksStateKey) string { return "the ciphertext names a key that does not exist" }},
			call: func(ctx context.Context, s *Service, k ksStateKey, _ string) error {
				out, err := s.Decrypt(ctx, DecryptInput{CiphertextBlob: k.blob})
				if err == nil && string(out.Plaintext) != "secret" {
					return fmt.Errorf("decrypted %q", out.Plaintext)
				}
				return err
			}},
		{name: "GenerateDataKey", want: nf(map[string]*Error{ksDisabled: ErrDisabled, ksPending: ErrInvalidState}),
			call: func(ctx context.Context, s *Service, k ksStateKey, _ string) error {
				_, err := s.GenerateDataKey(ctx, GenerateDataKeyInput{KeyId: k.id, NumberOfBytes: 32})
				return err
			}},
		{name: "RotateKeyOnDemand", want: nf(map[string]*Error{ksDisabled: ErrDisabled, ksPending: ErrInvalidState}),
			call: func(ctx context.Context, s *Service, k ksStateKey, _ string) error {
				_, err := s.RotateKeyOnDemand(ctx, KeyIDInput{KeyId: k.id})
				return err
			},
			check: func(t *testing.T, f *fixture, k ksStateKey, state string) {
				want := uint32(1)
				if state == ksEnabled {
					want = 2
				}
				if got := ksStoreKey(t, f, k.id); got.LatestVersion != want || (got.CurrentVersion != want && state != ksDeleted && state != ksCreating) {
					t.Errorf("%s: versions latest %d current %d, want %d", state, got.LatestVersion, got.CurrentVersion, want)
				}
			}},
		{name: "EnableKeyRotation", want: nf(map[string]*Error{ksDisabled: ErrDisabled, ksPending: ErrInvalidState}),
			call: func(ctx context.Context, s *Service, k ksStateKey, _ string) error {
				return s.EnableKeyRotation(ctx, EnableKeyRotationInput{KeyId: k.id})
			},
			check: func(t *testing.T, f *fixture, k ksStateKey, state string) {
				if got := ksStoreKey(t, f, k.id).RotationEnabled; got != (state == ksEnabled) {
					t.Errorf("%s: rotation enabled %v", state, got)
				}
			}},
		{name: "DisableKeyRotation", want: nf(map[string]*Error{ksDisabled: ErrDisabled, ksPending: ErrInvalidState}),
			call: func(ctx context.Context, s *Service, k ksStateKey, _ string) error {
				return s.DisableKeyRotation(ctx, KeyIDInput{KeyId: k.id})
			}},
		{name: "GetKeyRotationStatus", want: nf(map[string]*Error{}),
			call: func(ctx context.Context, s *Service, k ksStateKey, _ string) error {
				out, err := s.GetKeyRotationStatus(ctx, KeyIDInput{KeyId: k.id})
				if err == nil && (out.KeyRotationEnabled || out.KeyId != k.id) {
					return fmt.Errorf("status %+v", out)
				}
				return err
			}},
		{name: "ListKeyRotations", want: nf(map[string]*Error{}),
			call: func(ctx context.Context, s *Service, k ksStateKey, _ string) error {
				out, err := s.ListKeyRotations(ctx, ListKeyRotationsInput{KeyId: k.id})
				if err == nil && (out.Rotations == nil || len(out.Rotations) != 0) {
					return fmt.Errorf("rotations %+v", out)
				}
				return err
			}},
		{name: "CreateAlias", want: nf(map[string]*Error{ksPending: ErrInvalidState}),
			call: func(ctx context.Context, s *Service, k ksStateKey, state string) error {
				return s.CreateAlias(ctx, AliasInput{AliasName: "alias/new-" + state, TargetKeyId: k.id})
			},
			check: func(t *testing.T, f *fixture, k ksStateKey, state string) {
				_, err := f.svc.DescribeKey(admin(t), KeyIDInput{KeyId: "alias/new-" + state})
				if (err == nil) != (state == ksEnabled || state == ksDisabled) {
					t.Errorf("%s: alias/new-%s resolves: %v", state, state, err)
				}
			}},
		{name: "UpdateAlias", want: nf(map[string]*Error{ksPending: ErrInvalidState}),
			call: func(ctx context.Context, s *Service, k ksStateKey, _ string) error {
				return s.UpdateAlias(ctx, AliasInput{AliasName: "alias/upd", TargetKeyId: k.id})
			},
			check: func(t *testing.T, f *fixture, k ksStateKey, state string) {
				got := ksDescribe(t, f, "alias/upd").KeyId
				if moved := got == k.id; moved != (state == ksEnabled || state == ksDisabled) {
					t.Errorf("%s: alias/upd points at %s", state, got)
				}
			}},
		{name: "DeleteAlias", want: map[string]*Error{ksDeleted: ErrNotFound, ksCreating: ErrNotFound},
			msg: map[string]func(ksStateKey) string{ksDeleted: aliasNF, ksCreating: aliasNF},
			call: func(ctx context.Context, s *Service, k ksStateKey, _ string) error {
				return s.DeleteAlias(ctx, DeleteAliasInput{AliasName: k.alias})
			},
			check: func(t *testing.T, f *fixture, k ksStateKey, state string) {
				if state == ksDeleted || state == ksCreating {
					return
				}
				if got := ksStoreKey(t, f, k.id); len(got.Aliases) != 0 || string(got.State) != state {
					t.Errorf("%s: key after DeleteAlias: %+v", state, got)
				}
			}},
		{name: "ListAliases of the key", want: nf(map[string]*Error{}),
			call: func(ctx context.Context, s *Service, k ksStateKey, _ string) error {
				out, err := s.ListAliases(ctx, ListAliasesInput{KeyId: k.id})
				if err == nil && (len(out.Aliases) != 1 || out.Aliases[0].AliasName != k.alias || out.Aliases[0].TargetKeyId != k.id) {
					return fmt.Errorf("aliases %+v", out.Aliases)
				}
				return err
			}},
		{name: "TagResource", want: nf(map[string]*Error{ksPending: ErrInvalidState}),
			call: func(ctx context.Context, s *Service, k ksStateKey, _ string) error {
				return s.TagResource(ctx, TagResourceInput{KeyId: k.id, Tags: []Tag{{TagKey: "extra", TagValue: "1"}}})
			}},
		{name: "UntagResource", want: nf(map[string]*Error{ksPending: ErrInvalidState}),
			call: func(ctx context.Context, s *Service, k ksStateKey, _ string) error {
				return s.UntagResource(ctx, UntagResourceInput{KeyId: k.id, TagKeys: []string{"state"}})
			},
			check: func(t *testing.T, f *fixture, k ksStateKey, state string) {
				if state == ksCreating {
					return
				}
				// The tag goes, except from a deleted key and one pending
				// deletion (refused).
				if tags := ksStoreKey(t, f, k.id).Tags; (len(tags) == 0) != (state != ksDeleted && state != ksPending) {
					t.Errorf("%s: tags %v", state, tags)
				}
			}},
		{name: "ListResourceTags", want: nf(map[string]*Error{}),
			call: func(ctx context.Context, s *Service, k ksStateKey, state string) error {
				out, err := s.ListResourceTags(ctx, ListResourceTagsInput{KeyId: k.id})
				if err == nil && (len(out.Tags) != 1 || out.Tags[0] != Tag{TagKey: "state", TagValue: state}) {
					return fmt.Errorf("tags %+v", out.Tags)
				}
				return err
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, "")
			keys := ksStateKeys(t, f)
			ctx := admin(t)
			for _, state := range ksStates {
				k := keys[state]
				want := c.want[state]
				msg := ksStateMsg(want, state, k.id)
				if m := c.msg[state]; m != nil {
					msg = m(k)
				}
				mark := ksMark(f)
				err := c.call(ctx, f.svc, k, state)
				ksWantErr(t, state, err, want, msg)
				recs := ksAuditSince(t, f, mark)
				outcome, errType := "allowed", any(nil)
				if want != nil {
					outcome, errType = "failed", string(want.Code)
				}
				if len(recs) != 1 || recs[0]["outcome"] != outcome || recs[0]["error_type"] != errType {
					t.Errorf("%s: audit %v, want one %s record", state, recs, outcome)
				}
				if state != ksCreating {
					after := state
					if a, ok := c.after[state]; ok && want == nil {
						after = a
					}
					if got := string(ksStoreKey(t, f, k.id).State); got != after {
						t.Errorf("%s: state %s afterwards, want %s", state, got, after)
					}
				} else if got := ksStoreKey(t, f, k.id); got.State != store.KeyCreating || got.Revision != 1 {
					t.Errorf("the Creating key was changed: %+v", got)
				}
				if c.check != nil {
					c.check(t, f, k, state)
				}
			}
		})
	}
}

// TestEnableDisableKey stops and restarts every kind of key's
// cryptography, with the exact DisabledException message.
func TestEnableDisableKey(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	type use func(id string) error
	encrypt := func(id string) error {
		_, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: id, Plaintext: []byte("p")})
		return err
	}
	gdk := func(id string) error {
		_, err := f.svc.GenerateDataKey(ctx, GenerateDataKeyInput{KeyId: id, KeySpec: "AES_256"})
		return err
	}
	sign := func(id string) error {
		_, err := f.svc.Sign(ctx, SignInput{KeyId: id, Message: []byte("m"), SigningAlgorithm: "ECDSA_SHA_256"})
		return err
	}
	pub := func(id string) error {
		_, err := f.svc.GetPublicKey(ctx, KeyIDInput{KeyId: id})
		return err
	}
	cases := []struct {
		name string
		in   CreateKeyInput
		uses []use
	}{
		{"aes-gcm", CreateKeyInput{}, []use{encrypt, gdk}},
		{"aes-kw", CreateKeyInput{HsmkmsMechanism: "aes-kw"}, []use{encrypt, gdk}},
		{"ECC_NIST_P256", CreateKeyInput{KeySpec: "ECC_NIST_P256"}, []use{sign, pub}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := f.createKey(t, c.in)
			var blob []byte
			if c.in.KeySpec == "" {
				blob = ksEncrypt(t, f, id, "old")
				c.uses = append(c.uses, func(string) error {
					_, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: blob})
					return err
				})
			}
			for round := range 2 { // disabling or enabling twice changes nothing more
				ksMust(t, "DisableKey", f.svc.DisableKey(ctx, KeyIDInput{KeyId: ksARN(id)}))
				if m := ksDescribe(t, f, id); m.Enabled || m.KeyState != "Disabled" {
					t.Errorf("round %d: disabled key described %+v", round, m)
				}
				for i, u := range c.uses {
					ksWantErr(t, fmt.Sprintf("round %d use %d", round, i), u(id), ErrDisabled, ksARN(id)+" is disabled.")
				}
			}
			for round := range 2 {
				ksMust(t, "EnableKey", f.svc.EnableKey(ctx, KeyIDInput{KeyId: id}))
				if m := ksDescribe(t, f, id); !m.Enabled || m.KeyState != "Enabled" {
					t.Errorf("round %d: enabled key described %+v", round, m)
				}
				for i, u := range c.uses {
					ksWantErr(t, fmt.Sprintf("round %d use %d", round, i), u(id), nil, "")
				}
			}
		})
	}
	for _, ident := range []string{"", "nope", "alias/none"} {
		want := ErrNotFound
		if ident == "" {
			want = ErrValidation
		}
		ksWantErr(t, "EnableKey "+ident, f.svc.EnableKey(ctx, KeyIDInput{KeyId: ident}), want, "")
		ksWantErr(t, "DisableKey "+ident, f.svc.DisableKey(ctx, KeyIDInput{KeyId: ident}), want, "")
	}
}

// TestScheduleKeyDeletionWindow accepts waiting periods of 7 to 30 days
// (30 by default) and dates the deletion by the service's clock.
func TestScheduleKeyDeletionWindow(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	cases := []struct {
		days, wantDays int
		want           *Error
	}{
		{0, 30, nil}, {7, 7, nil}, {8, 8, nil}, {29, 29, nil}, {30, 30, nil},
		{6, 0, ErrValidation}, {31, 0, ErrValidation}, {-1, 0, ErrValidation}, {365, 0, ErrValidation},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.days, " days"), func(t *testing.T) {
			id := f.createKey(t, CreateKeyInput{})
			f.clock.Advance(time.Minute)
			now := f.clock.Now()
			out, err := f.svc.ScheduleKeyDeletion(ctx, ScheduleKeyDeletionInput{KeyId: id, PendingWindowInDays: c.days})
			if c.want != nil {
				ksWantErr(t, "ScheduleKeyDeletion", err, c.want, fmt.Sprintf("1 validation error detected: Value '%d' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value between 7 and 30", c.days))
				if m := ksDescribe(t, f, id); m.KeyState != "Enabled" || m.DeletionDate != nil {
					t.Errorf("refused schedule changed the key: %+v", m)
				}
				return
			}
			ksMust(t, "ScheduleKeyDeletion", err)
			date := now.Add(time.Duration(c.wantDays) * 24 * time.Hour)
			if out.KeyId != ksARN(id) || out.KeyState != "PendingDeletion" || out.PendingWindowInDays != c.wantDays || !ksTime(out.DeletionDate).Equal(date) {
				t.Errorf("output %+v (date %v), want deletion on %v", out, ksTime(out.DeletionDate), date)
			}
			m := ksDescribe(t, f, id)
			if m.KeyState != "PendingDeletion" || m.Enabled || !ksTime(m.DeletionDate).Equal(date) {
				t.Errorf("described %+v", m)
			}
			_, err = f.svc.ScheduleKeyDeletion(ctx, ScheduleKeyDeletionInput{KeyId: id, PendingWindowInDays: 7})
			ksWantErr(t, "second ScheduleKeyDeletion", err, ErrInvalidState, ksARN(id)+" is pending deletion.")
			if m := ksDescribe(t, f, id); !ksTime(m.DeletionDate).Equal(date) {
				t.Errorf("a refused second schedule moved the date to %v", ksTime(m.DeletionDate))
			}
		})
	}
}

// TestCancelKeyDeletion refuses cryptography while a key waits for
// deletion and leaves it Disabled when the deletion is cancelled.
func TestCancelKeyDeletion(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	id := f.createKey(t, CreateKeyInput{})
	ecc := f.createKey(t, CreateKeyInput{KeySpec: "ECC_NIST_P256"})
	blob := ksEncrypt(t, f, id, "kept")
	for _, k := range []string{id, ecc} {
		_, err := f.svc.ScheduleKeyDeletion(ctx, ScheduleKeyDeletionInput{KeyId: k})
		ksMust(t, "ScheduleKeyDeletion", err)
	}
	pending := ksARN(id) + " is pending deletion."
	uses := []struct {
		name string
		call func() error
		msg  string
	}{
		{"Encrypt", func() error {
			_, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: id, Plaintext: []byte("p")})
			return err
		}, pending},
		{"Decrypt", func() error {
			_, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: blob})
			return err
		}, pending},
		{"GenerateDataKey", func() error {
			_, err := f.svc.GenerateDataKey(ctx, GenerateDataKeyInput{KeyId: id, KeySpec: "AES_128"})
			return err
		}, pending},
		{"GenerateDataKeyWithoutPlaintext", func() error {
			_, err := f.svc.GenerateDataKeyWithoutPlaintext(ctx, GenerateDataKeyInput{KeyId: id, KeySpec: "AES_128"})
			return err
		}, pending},
		{"ReEncrypt", func() error {
			_, err := f.svc.ReEncrypt(ctx, ReEncryptInput{CiphertextBlob: blob, DestinationKeyId: id})
			return err
		}, pending},
		{"Sign", func() error {
			_, err := f.svc.Sign(ctx, SignInput{KeyId: ecc, Message: []byte("m"), SigningAlgorithm: "ECDSA_SHA_256"})
			return err
		}, ksARN(ecc) + " is pending deletion."},
		{"GetPublicKey", func() error {
			_, err := f.svc.GetPublicKey(ctx, KeyIDInput{KeyId: ecc})
			return err
		}, ksARN(ecc) + " is pending deletion."},
		{"UpdateKeyDescription", func() error {
			return f.svc.UpdateKeyDescription(ctx, UpdateKeyDescriptionInput{KeyId: id, Description: "changed while pending"})
		}, pending},
	}
	for _, u := range uses {
		ksWantErr(t, u.name+" while pending", u.call(), ErrInvalidState, u.msg)
	}
	for _, k := range []string{id, ecc} {
		out, err := f.svc.CancelKeyDeletion(ctx, KeyIDInput{KeyId: k})
		ksMust(t, "CancelKeyDeletion", err)
		if out.KeyId != ksARN(k) {
			t.Errorf("CancelKeyDeletion returned %q", out.KeyId)
		}
		if m := ksDescribe(t, f, k); m.KeyState != "Disabled" || m.Enabled || m.DeletionDate != nil {
			t.Errorf("after cancelling: %+v", m)
		}
		_, err = f.svc.CancelKeyDeletion(ctx, KeyIDInput{KeyId: k})
		ksWantErr(t, "second CancelKeyDeletion", err, ErrInvalidState, ksARN(k)+" is not pending deletion (it is Disabled).")
		if st := ksStoreKey(t, f, k); !st.DeletionDate.IsZero() {
			t.Errorf("DeletionDate %v kept after cancelling", st.DeletionDate)
		}
	}
	ksWantErr(t, "Encrypt while cancelled", uses[0].call(), ErrDisabled, ksARN(id)+" is disabled.")
	for _, k := range []string{id, ecc} {
		ksMust(t, "EnableKey", f.svc.EnableKey(ctx, KeyIDInput{KeyId: k}))
	}
	for _, u := range uses {
		ksWantErr(t, u.name+" after EnableKey", u.call(), nil, "")
	}
	f.clock.Advance(31 * day)
	ksMust(t, "RunMaintenance", f.svc.RunMaintenance(ctx))
	if !ksOnToken(t, f, id) || !ksOnToken(t, f, ecc) || ksDescribe(t, f, id).KeyState != "Enabled" {
		t.Error("a cancelled deletion was carried out")
	}
}

// TestCancelKeyDeletionAfterItsDate refuses to cancel a deletion whose
// date has passed, even before the executor has run: the waiting period is
// over, as in AWS KMS. One second earlier the cancellation still works.
func TestCancelKeyDeletionAfterItsDate(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	late, early := f.createKey(t, CreateKeyInput{}), f.createKey(t, CreateKeyInput{})
	for _, k := range []string{late, early} {
		_, err := f.svc.ScheduleKeyDeletion(ctx, ScheduleKeyDeletionInput{KeyId: k, PendingWindowInDays: 7})
		ksMust(t, "ScheduleKeyDeletion", err)
	}
	date := ksStoreKey(t, f, late).DeletionDate
	f.clock.Advance(7*day - time.Second)
	_, err := f.svc.CancelKeyDeletion(ctx, KeyIDInput{KeyId: early})
	ksMust(t, "CancelKeyDeletion a second before the date", err)
	f.clock.Advance(time.Second)
	_, err = f.svc.CancelKeyDeletion(ctx, KeyIDInput{KeyId: late})
	ksWantErr(t, "CancelKeyDeletion at the date", err, ErrInvalidState, ksARN(late)+" reached its deletion date ("+
		date.UTC().Format(time.RFC3339)+"); its deletion can no longer be cancelled.")
	if st := ksStoreKey(t, f, late); st.State != store.KeyPendingDeletion || !st.DeletionDate.Equal(date) {
		t.Fatalf("the refused cancellation changed the key: %+v", st)
	}
	ksMust(t, "RunMaintenance", f.svc.RunMaintenance(ctx))
	if st := ksStoreKey(t, f, late); st.State != store.KeyDeleted {
		t.Errorf("the key past its date is %s after maintenance, want Deleted", st.State)
	}
	if st := ksStoreKey(t, f, early); st.State != store.KeyDisabled {
		t.Errorf("the key cancelled in time is %s, want Disabled", st.State)
	}
}

// TestKeyDeletionExecutes carries out deletions at their dates and not
// before: token objects of every version destroyed, tombstones left whose
// IDs stay taken, aliases gone, old ciphertexts refused.
func TestKeyDeletionExecutes(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	type victim struct {
		name    string
		in      CreateKeyInput
		rotate  int
		days    int
		id      string
		aliases []string
		blob    []byte
	}
	victims := []*victim{
		{name: "aes-gcm rotated twice", rotate: 2, days: 7},
		{name: "aes-kw", in: CreateKeyInput{HsmkmsMechanism: "aes-kw"}, days: 7},
		{name: "ECC_NIST_P256", in: CreateKeyInput{KeySpec: "ECC_NIST_P256"}, days: 30},
		{name: "RSA_2048", in: CreateKeyInput{KeySpec: "RSA_2048"}, days: 30},
		{name: "aes-gcm disabled first", rotate: 1, days: 30},
	}
	t0 := f.clock.Now()
	for i, v := range victims {
		v.id = f.createKey(t, v.in)
		if v.in.KeySpec == "" {
			v.blob = ksEncrypt(t, f, v.id, "before "+v.name)
		}
		for range v.rotate {
			_, err := f.svc.RotateKeyOnDemand(ctx, KeyIDInput{KeyId: v.id})
			ksMust(t, "RotateKeyOnDemand", err)
		}
		if strings.Contains(v.name, "disabled") {
			ksMust(t, "DisableKey", f.svc.DisableKey(ctx, KeyIDInput{KeyId: v.id}))
		}
		for j := range 2 {
			a := fmt.Sprintf("alias/victim-%d-%d", i, j)
			ksMust(t, "CreateAlias", f.svc.CreateAlias(ctx, AliasInput{AliasName: a, TargetKeyId: v.id}))
			v.aliases = append(v.aliases, a)
		}
		out, err := f.svc.ScheduleKeyDeletion(ctx, ScheduleKeyDeletionInput{KeyId: v.id, PendingWindowInDays: v.days})
		ksMust(t, "ScheduleKeyDeletion", err)
		if want := t0.Add(time.Duration(v.days) * day); !ksTime(out.DeletionDate).Equal(want) {
			t.Fatalf("%s: deletion date %v, want %v", v.name, ksTime(out.DeletionDate), want)
		}
	}
	survivor := f.createKey(t, CreateKeyInput{})
	ksMust(t, "CreateAlias", f.svc.CreateAlias(ctx, AliasInput{AliasName: "alias/survivor", TargetKeyId: survivor}))
	cancelled := f.createKey(t, CreateKeyInput{})
	_, err := f.svc.ScheduleKeyDeletion(ctx, ScheduleKeyDeletionInput{KeyId: cancelled, PendingWindowInDays: 7})
	ksMust(t, "ScheduleKeyDeletion", err)
	_, err = f.svc.CancelKeyDeletion(ctx, KeyIDInput{KeyId: cancelled})
	ksMust(t, "CancelKeyDeletion", err)

	alive := func(v *victim) {
		t.Helper()
		m := ksDescribe(t, f, v.aliases[1])
		if m.KeyId != v.id || m.KeyState != "PendingDeletion" || !ksOnToken(t, f, v.id) {
			t.Errorf("%s deleted too early: %+v", v.name, m)
		}
	}
	gone := func(v *victim, at time.Time) {
		t.Helper()
		if ksOnToken(t, f, v.id) {
			t.Errorf("%s: token objects survive the deletion", v.name)
		}
		vs := ksVersions(t, f, v.id)
		if len(vs) != v.rotate+1 {
			t.Errorf("%s: %d versions, want %d", v.name, len(vs), v.rotate+1)
		}
		for _, ver := range vs {
			if ver.State != store.VersionDestroyed {
				t.Errorf("%s: version %d is %s", v.name, ver.Number, ver.State)
			}
		}
		k := ksStoreKey(t, f, v.id)
		if k.State != store.KeyDeleted || len(k.Aliases) != 0 || k.CurrentVersion != 0 || !k.DeletedAt.Equal(at) {
			t.Errorf("%s: tombstone %+v", v.name, k)
		}
		_, err := f.svc.DescribeKey(ctx, KeyIDInput{KeyId: v.id})
		ksWantErr(t, v.name+": DescribeKey", err, ErrNotFound, "Key '"+ksARN(v.id)+"' does not exist")
		_, err = f.svc.CancelKeyDeletion(ctx, KeyIDInput{KeyId: v.id})
		ksWantErr(t, v.name+": CancelKeyDeletion", err, ErrNotFound, "")
		for _, a := range v.aliases {
			_, err := f.svc.DescribeKey(ctx, KeyIDInput{KeyId: a})
			ksWantErr(t, v.name+": DescribeKey "+a, err, ErrNotFound, "Alias "+ksAliasARN(a)+" is not found.")
		}
		if v.blob != nil {
			_, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: v.blob})
			ksWantErr(t, v.name+": Decrypt", err, ErrNotFound, "Key '"+ksARN(v.id)+"' does not exist")
		}
		err = f.svc.store.Update(t.Context(), func(tx store.Tx) error {
			_, err := tx.PutKey(store.Key{ID: v.id, Spec: SpecSymmetric, Usage: UsageEncrypt, State: store.KeyEnabled})
			return err
		})
		if !errors.Is(err, store.ErrExists) {
			t.Errorf("%s: recreating the ID: %v, want store.ErrExists", v.name, err)
		}
	}

	f.clock.Advance(7*day - time.Second)
	ksMust(t, "RunMaintenance before any date", f.svc.RunMaintenance(ctx))
	for _, v := range victims {
		alive(v)
	}
	f.clock.Advance(time.Second) // exactly the 7-day victims' date
	ksMust(t, "RunMaintenance at 7 days", f.svc.RunMaintenance(ctx))
	for _, v := range victims {
		if v.days == 7 {
			gone(v, f.clock.Now())
		} else {
			alive(v)
		}
	}
	at7 := f.clock.Now()
	f.clock.Advance(23*day - time.Second)
	ksMust(t, "RunMaintenance before 30 days", f.svc.RunMaintenance(ctx))
	for _, v := range victims {
		if v.days == 30 {
			alive(v)
		}
	}
	f.clock.Advance(2 * time.Second)
	ksMust(t, "RunMaintenance after 30 days", f.svc.RunMaintenance(ctx))
	ksMust(t, "RunMaintenance again", f.svc.RunMaintenance(ctx))
	for _, v := range victims {
		at := at7
		if v.days == 30 {
			at = t0.Add(30*day + time.Second)
		}
		gone(v, at)
	}

	list, err := f.svc.ListAliases(ctx, ListAliasesInput{})
	ksMust(t, "ListAliases", err)
	if len(list.Aliases) != 1 || list.Aliases[0].AliasName != "alias/survivor" {
		t.Errorf("aliases left: %+v", list.Aliases)
	}
	keys, err := f.svc.ListKeys(ctx, ListInput{})
	ksMust(t, "ListKeys", err)
	var ids []string
	for _, e := range keys.Keys {
		ids = append(ids, e.KeyId)
	}
	if want := []string{survivor, cancelled}; !slices.Equal(slices.Sorted(slices.Values(ids)), slices.Sorted(slices.Values(want))) {
		t.Errorf("ListKeys %v, want %v", ids, want)
	}
	if m := ksDescribe(t, f, cancelled); m.KeyState != "Disabled" || !ksOnToken(t, f, cancelled) {
		t.Errorf("the cancelled key: %+v", m)
	}
	// A deleted key's alias names are free again.
	ksMust(t, "CreateAlias of a freed name", f.svc.CreateAlias(ctx, AliasInput{AliasName: victims[0].aliases[0], TargetKeyId: survivor}))
	if got := ksDescribe(t, f, victims[0].aliases[0]).KeyId; got != survivor {
		t.Errorf("freed alias resolves to %s", got)
	}
	if !strings.Contains(f.logs.String(), `"deleted key material"`) {
		t.Error("no log of the deletion")
	}
}

// TestRotateKeyOnDemand adds a current version: old ciphertexts still
// decrypt and new ones name the new version.
func TestRotateKeyOnDemand(t *testing.T) {
	for _, mech := range []string{"aes-gcm", "aes-kw"} {
		t.Run(mech, func(t *testing.T) {
			f := newFixture(t, "")
			ctx := admin(t)
			id := f.createKey(t, CreateKeyInput{HsmkmsMechanism: mech})
			ksMust(t, "CreateAlias", f.svc.CreateAlias(ctx, AliasInput{AliasName: "alias/rot", TargetKeyId: id}))
			var blobs [][]byte
			var dks [][]byte
			for n := uint32(1); n <= 4; n++ {
				if n > 1 {
					f.clock.Advance(time.Hour)
					ident := []string{id, ksARN(id), "alias/rot"}[n%3]
					mark := ksMark(f)
					out, err := f.svc.RotateKeyOnDemand(ctx, KeyIDInput{KeyId: ident})
					ksMust(t, "RotateKeyOnDemand", err)
					if out.KeyId != id {
						t.Errorf("RotateKeyOnDemand returned %q", out.KeyId)
					}
					if recs := ksAuditSince(t, f, mark); len(recs) != 1 || recs[0]["key_version"] != float64(n) {
						t.Errorf("audit %v, want key_version %d", recs, n)
					}
				}
				if m := ksDescribe(t, f, id); m.CurrentKeyMaterialId != fmt.Sprintf("v%d", n) {
					t.Errorf("current %s, want v%d", m.CurrentKeyMaterialId, n)
				}
				enc, err := f.svc.Encrypt(ctx, EncryptInput{KeyId: id, Plaintext: fmt.Appendf(nil, "v%d", n)})
				ksMust(t, "Encrypt", err)
				dk, err := f.svc.GenerateDataKey(ctx, GenerateDataKeyInput{KeyId: id, KeySpec: "AES_256"})
				ksMust(t, "GenerateDataKey", err)
				if dk.KeyMaterialId != fmt.Sprintf("v%d", n) {
					t.Errorf("data key of %s, want v%d", dk.KeyMaterialId, n)
				}
				for _, blob := range [][]byte{enc.CiphertextBlob, dk.CiphertextBlob} {
					b, err := ciphertext.Parse(blob)
					ksMust(t, "Parse", err)
					if b.Version != n {
						t.Errorf("a new ciphertext names version %d, want %d", b.Version, n)
					}
				}
				blobs = append(blobs, enc.CiphertextBlob)
				dks = append(dks, dk.CiphertextBlob, dk.Plaintext)
			}
			for i, blob := range blobs {
				out, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: blob})
				ksMust(t, "Decrypt", err)
				if want := fmt.Sprintf("v%d", i+1); string(out.Plaintext) != want || out.KeyMaterialId != want {
					t.Errorf("decrypted %q with %s, want %s", out.Plaintext, out.KeyMaterialId, want)
				}
			}
			for i := 0; i < len(dks); i += 2 {
				out, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: dks[i]})
				ksMust(t, "Decrypt data key", err)
				if !bytes.Equal(out.Plaintext, dks[i+1]) {
					t.Errorf("data key %d differs", i/2+1)
				}
			}
			vs := ksVersions(t, f, id)
			if len(vs) != 4 || !ksOnToken(t, f, id) {
				t.Fatalf("versions %+v", vs)
			}
			for i, v := range vs {
				wantType := "ON_DEMAND"
				if i == 0 {
					wantType = ""
				}
				if v.Number != uint32(i+1) || v.State != store.VersionActive || v.RotationType != wantType || (i > 0 && v.ObjectID == vs[i-1].ObjectID) {
					t.Errorf("version %+v", v)
				}
			}
		})
	}
}

// TestRotateKeyOnDemandRefused refuses to rotate asymmetric keys and keys
// that are not Enabled, and adds no version when it refuses.
func TestRotateKeyOnDemandRefused(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	ecc := f.createKey(t, CreateKeyInput{KeySpec: "ECC_NIST_P256"})
	rsaKey := f.createKey(t, CreateKeyInput{KeySpec: "RSA_2048"})
	hmacKey := f.createKey(t, CreateKeyInput{KeySpec: "HMAC_256", KeyUsage: "GENERATE_VERIFY_MAC"})
	disabled := f.createKey(t, CreateKeyInput{})
	ksMust(t, "DisableKey", f.svc.DisableKey(ctx, KeyIDInput{KeyId: disabled}))
	pending := f.createKey(t, CreateKeyInput{})
	_, err := f.svc.ScheduleKeyDeletion(ctx, ScheduleKeyDeletionInput{KeyId: pending})
	ksMust(t, "ScheduleKeyDeletion", err)
	disabledECC := f.createKey(t, CreateKeyInput{KeySpec: "ECC_NIST_P384"})
	ksMust(t, "DisableKey", f.svc.DisableKey(ctx, KeyIDInput{KeyId: disabledECC}))
	cases := []struct {
		name, id string
		want     *Error
		msg      string
	}{
		{"ECC", ecc, ErrUnsupported, ksARN(ecc) + " is a ECC_NIST_P256 key; only SYMMETRIC_DEFAULT keys rotate"},
		{"RSA", rsaKey, ErrUnsupported, ksARN(rsaKey) + " is a RSA_2048 key; only SYMMETRIC_DEFAULT keys rotate"},
		{"HMAC", hmacKey, ErrUnsupported, ksARN(hmacKey) + " is a HMAC_256 key; only SYMMETRIC_DEFAULT keys rotate"},
		{"disabled", disabled, ErrDisabled, ksARN(disabled) + " is disabled."},
		{"disabled ECC", disabledECC, ErrDisabled, ksARN(disabledECC) + " is disabled."},
		{"pending deletion", pending, ErrInvalidState, ksARN(pending) + " is pending deletion."},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, op := range []struct {
				name string
				call func() error
			}{
				{"RotateKeyOnDemand", func() error {
					_, err := f.svc.RotateKeyOnDemand(ctx, KeyIDInput{KeyId: c.id})
					return err
				}},
				{"EnableKeyRotation", func() error { return f.svc.EnableKeyRotation(ctx, EnableKeyRotationInput{KeyId: c.id}) }},
				{"DisableKeyRotation", func() error { return f.svc.DisableKeyRotation(ctx, KeyIDInput{KeyId: c.id}) }},
			} {
				ksWantErr(t, op.name, op.call(), c.want, c.msg)
			}
			if k := ksStoreKey(t, f, c.id); k.LatestVersion != 1 || k.CurrentVersion != 1 || k.RotationEnabled || len(ksVersions(t, f, c.id)) != 1 {
				t.Errorf("a refused rotation changed the key: %+v", k)
			}
		})
	}
}

// TestEnableKeyRotationPeriod accepts rotation periods of 90 to 2560 days
// (365 by default) and reports the next rotation by the service's clock.
func TestEnableKeyRotationPeriod(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	cases := []struct {
		days, wantDays int
		want           *Error
	}{
		{0, 365, nil}, {90, 90, nil}, {365, 365, nil}, {2560, 2560, nil},
		{89, 0, ErrValidation}, {2561, 0, ErrValidation}, {-90, 0, ErrValidation}, {1, 0, ErrValidation},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.days, " days"), func(t *testing.T) {
			id := f.createKey(t, CreateKeyInput{})
			f.clock.Advance(time.Hour)
			now := f.clock.Now()
			err := f.svc.EnableKeyRotation(ctx, EnableKeyRotationInput{KeyId: id, RotationPeriodInDays: c.days})
			status, serr := f.svc.GetKeyRotationStatus(ctx, KeyIDInput{KeyId: id})
			ksMust(t, "GetKeyRotationStatus", serr)
			if c.want != nil {
				ksWantErr(t, "EnableKeyRotation", err, c.want, fmt.Sprintf("1 validation error detected: Value '%d' at 'rotationPeriodInDays' failed to satisfy constraint: Member must have value between 90 and 2560", c.days))
				if status.KeyRotationEnabled || status.NextRotationDate != nil || status.RotationPeriodInDays != 0 {
					t.Errorf("refused request changed the status: %+v", status)
				}
				return
			}
			ksMust(t, "EnableKeyRotation", err)
			next := now.Add(time.Duration(c.wantDays) * day)
			if !status.KeyRotationEnabled || status.KeyId != id || status.RotationPeriodInDays != c.wantDays || !ksTime(status.NextRotationDate).Equal(next) {
				t.Errorf("status %+v (next %v), want %d days, next %v", status, ksTime(status.NextRotationDate), c.wantDays, next)
			}
			ksMust(t, "DisableKeyRotation", f.svc.DisableKeyRotation(ctx, KeyIDInput{KeyId: id}))
			status, err = f.svc.GetKeyRotationStatus(ctx, KeyIDInput{KeyId: ksARN(id)})
			ksMust(t, "GetKeyRotationStatus", err)
			if status.KeyRotationEnabled || status.NextRotationDate != nil || status.RotationPeriodInDays != 0 {
				t.Errorf("after DisableKeyRotation: %+v", status)
			}
			ksMust(t, "DisableKeyRotation twice", f.svc.DisableKeyRotation(ctx, KeyIDInput{KeyId: id}))
		})
	}
}

// TestKeyRotationScheduler rotates a key whose rotation is due exactly once
// per period, as AUTOMATIC, and leaves alone keys that are not due, not
// enabled or without automatic rotation.
func TestKeyRotationScheduler(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	due := f.createKey(t, CreateKeyInput{})
	blob := ksEncrypt(t, f, due, "v1")
	late := f.createKey(t, CreateKeyInput{})    // a longer period
	off := f.createKey(t, CreateKeyInput{})     // rotation enabled, then disabled
	never := f.createKey(t, CreateKeyInput{})   // never enabled
	stopped := f.createKey(t, CreateKeyInput{}) // Disabled while due
	for id, days := range map[string]int{due: 90, late: 100, off: 90, stopped: 90} {
		ksMust(t, "EnableKeyRotation", f.svc.EnableKeyRotation(ctx, EnableKeyRotationInput{KeyId: id, RotationPeriodInDays: days}))
	}
	ksMust(t, "DisableKeyRotation", f.svc.DisableKeyRotation(ctx, KeyIDInput{KeyId: off}))
	ksMust(t, "DisableKey", f.svc.DisableKey(ctx, KeyIDInput{KeyId: stopped}))
	t0 := f.clock.Now()
	rotations := func(id string) []Rotation {
		t.Helper()
		out, err := f.svc.ListKeyRotations(ctx, ListKeyRotationsInput{KeyId: id})
		ksMust(t, "ListKeyRotations", err)
		return out.Rotations
	}
	next := func(id string) time.Time {
		t.Helper()
		out, err := f.svc.GetKeyRotationStatus(ctx, KeyIDInput{KeyId: id})
		ksMust(t, "GetKeyRotationStatus", err)
		return ksTime(out.NextRotationDate)
	}
	steps := []struct {
		advance time.Duration
		runs    int
		want    map[string]int // key → rotations so far
	}{
		{90*day - time.Second, 1, map[string]int{due: 0, late: 0}},
		{time.Second, 1, map[string]int{due: 1, late: 0}}, // exactly due's date
		{0, 2, map[string]int{due: 1, late: 0}},           // running again rotates nothing more
		{10 * day, 1, map[string]int{due: 1, late: 1}},
		{80*day - time.Second, 1, map[string]int{due: 1, late: 1}},
		{time.Second, 1, map[string]int{due: 2, late: 1}},
	}
	for i, s := range steps {
		f.clock.Advance(s.advance)
		for range s.runs {
			ksMust(t, "RunMaintenance", f.svc.RunMaintenance(ctx))
		}
		for id, n := range s.want {
			rs := rotations(id)
			if len(rs) != n {
				t.Fatalf("step %d: %d rotations of %s, want %d: %+v", i, len(rs), id, n, rs)
			}
			if n == 0 {
				continue
			}
			last := rs[n-1]
			if last.RotationType != "AUTOMATIC" || last.KeyMaterialId != fmt.Sprintf("v%d", n+1) || last.KeyId != id {
				t.Errorf("step %d: rotation %+v", i, last)
			}
		}
	}
	// due rotated at t0+90d and t0+180d; late at t0+100d.
	for id, at := range map[string][]time.Time{due: {t0.Add(90 * day), t0.Add(180 * day)}, late: {t0.Add(100 * day)}} {
		rs := rotations(id)
		for i, r := range rs {
			if !ksTime(r.RotationDate).Equal(at[i]) {
				t.Errorf("rotation %s of %s dated %v, want %v", r.KeyMaterialId, id, ksTime(r.RotationDate), at[i])
			}
		}
		if want := at[len(at)-1].Add(time.Duration(map[string]int{due: 90, late: 100}[id]) * day); !next(id).Equal(want) {
			t.Errorf("next rotation of %s on %v, want %v", id, next(id), want)
		}
	}
	for _, id := range []string{off, never, stopped} {
		if k := ksStoreKey(t, f, id); k.LatestVersion != 1 {
			t.Errorf("key %s rotated to version %d", id, k.LatestVersion)
		}
	}
	if b, err := ciphertext.Parse(ksEncrypt(t, f, due, "v3")); err != nil || b.Version != 3 {
		t.Errorf("a new ciphertext names version %d (%v), want 3", b.Version, err)
	}
	out, err := f.svc.Decrypt(ctx, DecryptInput{CiphertextBlob: blob})
	if err != nil || string(out.Plaintext) != "v1" {
		t.Errorf("the first version's ciphertext: %q, %v", out.Plaintext, err)
	}
}

// TestListKeyRotations lists the versions after the first with their
// rotation types, a page at a time, and refuses bad markers and limits.
func TestListKeyRotations(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	id := f.createKey(t, CreateKeyInput{})
	ksMust(t, "CreateAlias", f.svc.CreateAlias(ctx, AliasInput{AliasName: "alias/listrot", TargetKeyId: id}))
	rotate := func() {
		f.clock.Advance(day)
		_, err := f.svc.RotateKeyOnDemand(ctx, KeyIDInput{KeyId: id})
		ksMust(t, "RotateKeyOnDemand", err)
	}
	rotate()
	rotate()
	ksMust(t, "EnableKeyRotation", f.svc.EnableKeyRotation(ctx, EnableKeyRotationInput{KeyId: id, RotationPeriodInDays: 90}))
	f.clock.Advance(90 * day)
	ksMust(t, "RunMaintenance", f.svc.RunMaintenance(ctx))
	rotate()
	want := []string{"v2 ON_DEMAND", "v3 ON_DEMAND", "v4 AUTOMATIC", "v5 ON_DEMAND"}

	for _, limit := range []int{0, 1, 2, 3, 4, 1000} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			var got []string
			marker := ""
			for page := 0; page < 10; page++ {
				out, err := f.svc.ListKeyRotations(ctx, ListKeyRotationsInput{KeyId: "alias/listrot", Limit: limit, Marker: marker})
				ksMust(t, "ListKeyRotations", err)
				for _, r := range out.Rotations {
					if r.KeyId != id || r.RotationDate == nil {
						t.Errorf("rotation %+v", r)
					}
					got = append(got, r.KeyMaterialId+" "+r.RotationType)
				}
				if limit > 0 && len(out.Rotations) > limit {
					t.Fatalf("page of %d, limit %d", len(out.Rotations), limit)
				}
				if !out.Truncated {
					if out.NextMarker != "" {
						t.Errorf("NextMarker %q on the last page", out.NextMarker)
					}
					break
				}
				if last := out.Rotations[len(out.Rotations)-1].KeyMaterialId; out.NextMarker != last {
					t.Errorf("NextMarker %q, want %q", out.NextMarker, last)
				}
				marker = out.NextMarker
			}
			if !slices.Equal(got, want) {
				t.Errorf("rotations %v, want %v", got, want)
			}
		})
	}
	cases := []struct {
		name string
		in   ListKeyRotationsInput
		want *Error
		msg  string
		n    int
	}{
		{"marker v3", ListKeyRotationsInput{KeyId: id, Marker: "v3"}, nil, "", 2},
		{"marker v0", ListKeyRotationsInput{KeyId: id, Marker: "v0"}, nil, "", 4},
		{"marker past the end", ListKeyRotationsInput{KeyId: id, Marker: "v99"}, nil, "", 0},
		{"marker without v", ListKeyRotationsInput{KeyId: id, Marker: "3"}, ErrInvalidMarker, "Marker is not valid", 0},
		{"marker v", ListKeyRotationsInput{KeyId: id, Marker: "v"}, ErrInvalidMarker, "Marker is not valid", 0},
		{"marker vx", ListKeyRotationsInput{KeyId: id, Marker: "vx"}, ErrInvalidMarker, "Marker is not valid", 0},
		{"marker vv3", ListKeyRotationsInput{KeyId: id, Marker: "vv3"}, ErrInvalidMarker, "", 0},
		{"marker v-1", ListKeyRotationsInput{KeyId: id, Marker: "v-1"}, ErrInvalidMarker, "", 0},
		{"marker of a key ID", ListKeyRotationsInput{KeyId: id, Marker: id}, ErrInvalidMarker, "", 0},
		{"limit 1001", ListKeyRotationsInput{KeyId: id, Limit: 1001}, ErrValidation, "1 validation error detected: Value '1001' at 'limit' failed to satisfy constraint: Member must have value between 1 and 1000", 0},
		{"negative limit", ListKeyRotationsInput{KeyId: id, Limit: -1}, ErrValidation, "", 0},
		{"no key", ListKeyRotationsInput{}, ErrValidation, "", 0},
		{"unknown key", ListKeyRotationsInput{KeyId: "alias/none"}, ErrNotFound, "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := f.svc.ListKeyRotations(ctx, c.in)
			ksWantErr(t, "ListKeyRotations", err, c.want, c.msg)
			if c.want == nil && (len(out.Rotations) != c.n || out.Rotations == nil) {
				t.Errorf("%d rotations, want %d", len(out.Rotations), c.n)
			}
		})
	}
	fresh := f.createKey(t, CreateKeyInput{})
	out, err := f.svc.ListKeyRotations(ctx, ListKeyRotationsInput{KeyId: fresh})
	ksMust(t, "ListKeyRotations of a fresh key", err)
	if out.Rotations == nil || len(out.Rotations) != 0 || out.Truncated {
		t.Errorf("a key never rotated lists %+v", out)
	}
}

// ksHookedHSM is the real token with a hook that runs once, before the
// next master key is made: it lets a test act while an operation is half
// done, without sleeping.
type ksHookedHSM struct {
	*hsm.Token
	before func()
}

func (h *ksHookedHSM) CreateMasterKey(ctx context.Context, id hsm.ObjectID, label string) error {
	if b := h.before; b != nil {
		h.before = nil
		b()
	}
	return h.Token.CreateMasterKey(ctx, id, label)
}

// TestKeyRotationSchedulerOverlap runs the scheduler again (as another
// replica on a shared store would) while a due rotation is half done: the
// key still rotates exactly once for its period.
func TestKeyRotationSchedulerOverlap(t *testing.T) {
	h := &ksHookedHSM{}
	f := newFixture(t, "", func(c *Config) {
		h.Token = c.HSM.(*hsm.Token)
		c.HSM = h
	})
	ctx := admin(t)
	id := f.createKey(t, CreateKeyInput{})
	ksMust(t, "EnableKeyRotation", f.svc.EnableKeyRotation(ctx, EnableKeyRotationInput{KeyId: id, RotationPeriodInDays: 90}))
	f.clock.Advance(90 * day)
	overlapped := false
	h.before = func() {
		overlapped = true
		ksMust(t, "overlapping RunMaintenance", f.svc.RunMaintenance(ctx))
	}
	ksMust(t, "RunMaintenance", f.svc.RunMaintenance(ctx))
	if !overlapped {
		t.Fatal("the scheduler made no key material")
	}
	out, err := f.svc.ListKeyRotations(ctx, ListKeyRotationsInput{KeyId: id})
	ksMust(t, "ListKeyRotations", err)
	if len(out.Rotations) != 1 || out.Rotations[0].RotationType != "AUTOMATIC" {
		t.Errorf("rotations %+v, want exactly one AUTOMATIC", out.Rotations)
	}
	status, err := f.svc.GetKeyRotationStatus(ctx, KeyIDInput{KeyId: id})
	ksMust(t, "GetKeyRotationStatus", err)
	if want := f.clock.Now().Add(90 * day); !ksTime(status.NextRotationDate).Equal(want) {
		t.Errorf("next rotation %v, want %v", ksTime(status.NextRotationDate), want)
	}
}

// deleteAfterWindow schedules key id's deletion with the shortest window,
// moves the clock past it and runs maintenance: the key must then be a
// tombstone.
func deleteAfterWindow(t *testing.T, f *fixture, id string) {
	t.Helper()
	ctx := admin(t)
	_, err := f.svc.ScheduleKeyDeletion(ctx, ScheduleKeyDeletionInput{KeyId: id, PendingWindowInDays: 7})
	ksMust(t, "ScheduleKeyDeletion", err)
	f.clock.Advance(7 * day)
	ksMust(t, "RunMaintenance", f.svc.RunMaintenance(ctx))
	if st := ksStoreKey(t, f, id).State; st != store.KeyDeleted {
		t.Fatalf("key %s is %s after its deletion date", id, st)
	}
}
