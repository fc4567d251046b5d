package service

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"

	"github.com/hsmkms/hsmkms/service/store"
)

// reservedAliasPrefix is AWS's prefix for AWS managed keys.
const reservedAliasPrefix = "alias/aws/"

// maxAliasName and aliasNamePattern are AWS KMS's AliasNameType
// constraints: a name that breaks them is a ValidationException. One that
// keeps them but is no alias name (aliasRE) is an InvalidAliasNameException.
const (
	maxAliasName     = 256
	aliasNamePattern = `^[a-zA-Z0-9:/_-]+$`
)

var aliasNameRE = regexp.MustCompile(aliasNamePattern)

func (s *Service) checkAliasName(name string) error {
	switch {
	case name == "":
		return newErr(CodeValidation, "1 validation error detected: Value null at 'aliasName' failed to satisfy constraint: Member must not be null")
	case tooLong(name, maxAliasName):
		return lengthErr("aliasName", maxAliasName)
	case !aliasNameRE.MatchString(name):
		return newErr(CodeValidation, "1 validation error detected: Value '%s' at 'aliasName' failed to satisfy constraint: Member must satisfy regular expression pattern: %s", name, aliasNamePattern)
	case strings.HasPrefix(name, reservedAliasPrefix):
		return newErr(CodeInvalidAliasName, "alias names starting with %s are reserved", reservedAliasPrefix)
	case !aliasRE.MatchString(name):
		return newErr(CodeInvalidAliasName, "%s is not a valid alias name: use alias/ and 1 to 250 of a-z A-Z 0-9 / _ -", name)
	}
	return nil
}

// aliasTarget resolves the key an alias is to point at: by key ID or ARN
// only, enabled or disabled (not pending deletion).
func (s *Service) aliasTarget(tx store.Tx, o *op, alias, target string) (store.Key, error) {
	ref, err := s.parseKeyRef("targetKeyId", target)
	if err != nil {
		return store.Key{}, err
	}
	if ref.alias != "" {
		return store.Key{}, newErr(CodeValidation, "TargetKeyId must be a key ID or key ARN, not an alias")
	}
	k, err := s.resolve(tx, ref)
	if err != nil {
		return k, err
	}
	if err := o.authorizeAlias(&k, alias); err != nil {
		return k, err
	}
	if k.State == store.KeyPendingDeletion {
		return k, newErr(CodeInvalidState, "%s is pending deletion.", s.keyARN(k.ID))
	}
	return k, nil
}

// CreateAlias names a key.
func (s *Service) CreateAlias(ctx context.Context, in AliasInput) (err error) {
	o := s.begin(ctx, "kms:CreateAlias")
	defer func() { err = o.end(err) }()
	if err := s.checkAliasName(in.AliasName); err != nil {
		return err
	}
	err = s.store.Update(ctx, func(tx store.Tx) error {
		k, err := s.aliasTarget(tx, o, in.AliasName, in.TargetKeyId)
		if err != nil {
			return err
		}
		if err := checkXKSAlias(tx, o, in.AliasName, &k); err != nil {
			return err
		}
		now := s.now().UTC()
		err = tx.CreateAlias(store.Alias{Name: in.AliasName, KeyID: k.ID, CreatedAt: now, UpdatedAt: now})
		if errors.Is(err, store.ErrExists) {
			return newErr(CodeAlreadyExists, "An alias with the name %s already exists", s.aliasARN(in.AliasName))
		}
		if err != nil {
			return err
		}
		k.Aliases = append(k.Aliases, in.AliasName)
		_, err = tx.PutKey(k)
		return err
	})
	return storeErrOrNil(err)
}

// UpdateAlias points an alias at another key of the same spec and usage.
func (s *Service) UpdateAlias(ctx context.Context, in AliasInput) (err error) {
	o := s.begin(ctx, "kms:UpdateAlias")
	defer func() { err = o.end(err) }()
	if err := s.checkAliasName(in.AliasName); err != nil {
		return err
	}
	err = s.store.Update(ctx, func(tx store.Tx) error {
		a, old, err := s.aliasedKey(tx, o, in.AliasName)
		if err != nil {
			return err
		}
		k, err := s.aliasTarget(tx, o, in.AliasName, in.TargetKeyId)
		if err != nil {
			return err
		}
		if k.ID == old.ID {
			return nil
		}
		if k.Spec != old.Spec || k.Usage != old.Usage {
			return newErr(CodeValidation, "%s points at a %s %s key; the new target must have the same key spec and usage", in.AliasName, old.Spec, old.Usage)
		}
		if err := checkXKSAlias(tx, o, in.AliasName, &k); err != nil {
			return err
		}
		a.KeyID, a.UpdatedAt = k.ID, s.now().UTC()
		if err := tx.PutAlias(a); err != nil {
			return err
		}
		old.Aliases = slices.DeleteFunc(old.Aliases, func(n string) bool { return n == in.AliasName })
		if _, err := tx.PutKey(old); err != nil {
			return err
		}
		k.Aliases = append(k.Aliases, in.AliasName)
		_, err = tx.PutKey(k)
		return err
	})
	return storeErrOrNil(err)
}

// aliasedKey reads an existing alias and the key it names, and authorises
// the operation's action on both.
func (s *Service) aliasedKey(tx store.Tx, o *op, name string) (store.Alias, store.Key, error) {
	a, err := s.existingAlias(tx, name)
	if err != nil {
		return a, store.Key{}, err
	}
	k, err := tx.Key(a.KeyID)
	if err != nil {
		return a, k, err
	}
	return a, k, o.authorizeAlias(&k, name)
}

func (s *Service) existingAlias(tx store.Tx, name string) (store.Alias, error) {
	a, err := tx.Alias(name)
	if errors.Is(err, store.ErrNotFound) {
		return a, newErr(CodeNotFound, "Alias %s is not found.", s.aliasARN(name))
	}
	return a, err
}

// DeleteAlias removes an alias; the key is untouched.
func (s *Service) DeleteAlias(ctx context.Context, in DeleteAliasInput) (err error) {
	o := s.begin(ctx, "kms:DeleteAlias")
	defer func() { err = o.end(err) }()
	if err := s.checkAliasName(in.AliasName); err != nil {
		return err
	}
	err = s.store.Update(ctx, func(tx store.Tx) error {
		_, k, err := s.aliasedKey(tx, o, in.AliasName)
		if err != nil {
			return err
		}
		if err := tx.DeleteAlias(in.AliasName); err != nil {
			return err
		}
		k.Aliases = slices.DeleteFunc(k.Aliases, func(n string) bool { return n == in.AliasName })
		_, err = tx.PutKey(k)
		return err
	})
	return storeErrOrNil(err)
}

// ListAliases lists all aliases by name, or those of one key.
func (s *Service) ListAliases(ctx context.Context, in ListAliasesInput) (out ListAliasesOutput, err error) {
	o := s.begin(ctx, "kms:ListAliases")
	defer endWith(o, &out, &err)
	limit, err := pageLimit(in.Limit)
	if err != nil {
		return out, err
	}
	var ref keyRef
	if in.KeyId != "" {
		if ref, err = s.parseKeyRef("keyId", in.KeyId); err != nil {
			return out, err
		}
	}
	err = s.store.View(ctx, func(tx store.Tx) error {
		out.Aliases = []AliasListEntry{}
		if in.KeyId == "" {
			if err := o.authorize(nil, ""); err != nil {
				return err
			}
			return s.listAllAliases(tx, in.Marker, limit, &out)
		}
		k, err := s.resolve(tx, ref)
		if err != nil {
			return err
		}
		if err := o.authorize(&k, ref.alias); err != nil {
			return err
		}
		for _, name := range slices.Sorted(slices.Values(k.Aliases)) {
			if name <= in.Marker {
				continue
			}
			a, err := tx.Alias(name)
			if err != nil {
				return err
			}
			out.Aliases = append(out.Aliases, s.aliasEntry(a))
		}
		return nil
	})
	if err != nil {
		return out, storeErr(err)
	}
	out.Aliases, out.Truncated, out.NextMarker = page(out.Aliases, limit, func(a AliasListEntry) string { return a.AliasName })
	return out, nil
}

func (s *Service) listAllAliases(tx store.Tx, marker string, limit int, out *ListAliasesOutput) error {
	page, err := tx.Aliases(marker, limit+1)
	if err != nil {
		return err
	}
	for _, a := range page {
		out.Aliases = append(out.Aliases, s.aliasEntry(a))
	}
	return nil
}

func (s *Service) aliasEntry(a store.Alias) AliasListEntry {
	return AliasListEntry{AliasName: a.Name, AliasArn: s.aliasARN(a.Name), TargetKeyId: a.KeyID,
		CreationDate: epoch(a.CreatedAt), LastUpdatedDate: epoch(a.UpdatedAt)}
}
