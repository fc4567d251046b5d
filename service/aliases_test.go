package service

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hsmkms/hsmkms/service/policy"
	"github.com/hsmkms/hsmkms/service/store"
)

// TestAliasNames accepts alias/ and 1 to 250 of [a-zA-Z0-9/_-], refuses
// every other name and the reserved alias/aws/ prefix, in CreateAlias,
// UpdateAlias and DeleteAlias alike. A name that breaks AWS's AliasNameType
// constraints (over 256 characters, or outside ^[a-zA-Z0-9:/_-]+$) is a
// ValidationException with AWS's words; one that keeps them but is no alias
// name an InvalidAliasNameException. (Found by review: all were
// InvalidAliasNameException.)
func TestAliasNames(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	id := f.createKey(t, CreateKeyInput{})
	bad := func(name string) string {
		return name + " is not a valid alias name: use alias/ and 1 to 250 of a-z A-Z 0-9 / _ -"
	}
	pattern := func(name string) string {
		return "1 validation error detected: Value '" + name + "' at 'aliasName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"
	}
	long := lengthMsg("aliasName", 256)
	cases := []struct {
		name string
		want *Error
		msg  string
	}{
		{"alias/a", nil, ""},
		{"alias/App/prod_key-1", nil, ""},
		{"alias/" + strings.Repeat("x", 250), nil, ""},
		{"alias/aws", nil, ""},
		{"alias/awsome", nil, ""},
		{"alias//", nil, ""},
		{"alias/" + strings.Repeat("x", 251), ErrValidation, long},
		{"alias/" + strings.Repeat("x", 5000), ErrValidation, long},
		{"alias/" + strings.Repeat("ü", 250), ErrValidation, pattern("alias/" + strings.Repeat("ü", 250))},
		{"alias/" + strings.Repeat("ü", 251), ErrValidation, long},
		{"alias/has space", ErrValidation, pattern("alias/has space")},
		{"alias/tab\t", ErrValidation, pattern("alias/tab\t")},
		{"alias/dot.ted", ErrValidation, pattern("alias/dot.ted")},
		{"alias/ü", ErrValidation, pattern("alias/ü")},
		{"alias/new\nline", ErrValidation, pattern("alias/new\nline")},
		{"alias/aws/has space", ErrValidation, pattern("alias/aws/has space")},
		{"alias/co:lon", ErrInvalidAliasName, bad("alias/co:lon")},
		{"alias/" + strings.Repeat("x", 249) + ":", ErrInvalidAliasName, ""}, // 256 characters
		{"app", ErrInvalidAliasName, bad("app")},
		{"Alias/app", ErrInvalidAliasName, ""},
		{"alias/", ErrInvalidAliasName, bad("alias/")},
		{"/alias/app", ErrInvalidAliasName, ""},
		{ksAliasARN("alias/app"), ErrInvalidAliasName, ""},
		{"alias/aws/x", ErrInvalidAliasName, "alias names starting with alias/aws/ are reserved"},
		{"alias/aws/", ErrInvalidAliasName, "alias names starting with alias/aws/ are reserved"},
		{"", ErrValidation, "1 validation error detected: Value null at 'aliasName' failed to satisfy constraint: Member must not be null"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%.40q", c.name), func(t *testing.T) {
			ksWantErr(t, "CreateAlias", f.svc.CreateAlias(ctx, AliasInput{AliasName: c.name, TargetKeyId: id}), c.want, c.msg)
			if c.want == nil {
				if got := ksDescribe(t, f, c.name).KeyId; got != id {
					t.Errorf("%s resolves to %s", c.name, got)
				}
				ksWantErr(t, "UpdateAlias", f.svc.UpdateAlias(ctx, AliasInput{AliasName: c.name, TargetKeyId: id}), nil, "")
				ksWantErr(t, "DeleteAlias", f.svc.DeleteAlias(ctx, DeleteAliasInput{AliasName: c.name}), nil, "")
				return
			}
			ksWantErr(t, "UpdateAlias", f.svc.UpdateAlias(ctx, AliasInput{AliasName: c.name, TargetKeyId: id}), c.want, c.msg)
			ksWantErr(t, "DeleteAlias", f.svc.DeleteAlias(ctx, DeleteAliasInput{AliasName: c.name}), c.want, c.msg)
		})
	}
	if k := ksStoreKey(t, f, id); len(k.Aliases) != 0 {
		t.Errorf("aliases left on the key: %v", k.Aliases)
	}
}

// TestCreateAlias names Enabled and Disabled keys by ID or ARN, and
// refuses duplicates, aliases as targets and keys that are going away.
func TestCreateAlias(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	a, b := f.createKey(t, CreateKeyInput{}), f.createKey(t, CreateKeyInput{})
	disabled := f.createKey(t, CreateKeyInput{})
	ksMust(t, "DisableKey", f.svc.DisableKey(ctx, KeyIDInput{KeyId: disabled}))
	pending := f.createKey(t, CreateKeyInput{})
	_, err := f.svc.ScheduleKeyDeletion(ctx, ScheduleKeyDeletionInput{KeyId: pending})
	ksMust(t, "ScheduleKeyDeletion", err)
	creating := ksInjectKeys(t, f, store.KeyCreating)[0]
	unknown := uuid.NewString()
	cases := []struct {
		name, alias, target string
		want                *Error
		msg                 string
		owner               string // the key the alias names afterwards ("" for none)
	}{
		{"by key ID", "alias/one", a, nil, "", a},
		{"by key ARN", "alias/two", ksARN(a), nil, "", a},
		{"by upper-case key ID", "alias/three", strings.ToUpper(b), nil, "", b},
		{"a disabled key", "alias/off", disabled, nil, "", disabled},
		{"duplicate", "alias/one", a, ErrAlreadyExists, "An alias with the name " + ksAliasARN("alias/one") + " already exists", a},
		{"duplicate on another key", "alias/one", b, ErrAlreadyExists, "", a},
		{"target an alias", "alias/four", "alias/one", ErrValidation, "TargetKeyId must be a key ID or key ARN, not an alias", ""},
		{"target an alias ARN", "alias/four", ksAliasARN("alias/one"), ErrValidation, "TargetKeyId must be a key ID or key ARN, not an alias", ""},
		{"no target", "alias/four", "", ErrValidation, "1 validation error detected: Value null at 'targetKeyId' failed to satisfy constraint: Member must not be null", ""},
		{"unknown target", "alias/four", unknown, ErrNotFound, "Key '" + ksARN(unknown) + "' does not exist", ""},
		{"malformed target", "alias/four", "not-a-key", ErrNotFound, "", ""},
		{"target in another region", "alias/four", "arn:aws:kms:eu-west-1:000000000000:key/" + a, ErrNotFound, "", ""},
		{"target pending deletion", "alias/four", pending, ErrInvalidState, ksARN(pending) + " is pending deletion.", ""},
		{"target being created", "alias/four", creating, ErrNotFound, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.clock.Advance(time.Minute)
			err := f.svc.CreateAlias(ctx, AliasInput{AliasName: c.alias, TargetKeyId: c.target})
			ksWantErr(t, "CreateAlias", err, c.want, c.msg)
			out, err := f.svc.DescribeKey(ctx, KeyIDInput{KeyId: c.alias})
			if c.owner == "" {
				ksWantErr(t, "DescribeKey "+c.alias, err, ErrNotFound, "")
				return
			}
			ksMust(t, "DescribeKey "+c.alias, err)
			if out.KeyMetadata.KeyId != c.owner {
				t.Errorf("%s names %s, want %s", c.alias, out.KeyMetadata.KeyId, c.owner)
			}
			if c.want != nil {
				return
			}
			list, err := f.svc.ListAliases(ctx, ListAliasesInput{KeyId: c.owner})
			ksMust(t, "ListAliases", err)
			i := slices.IndexFunc(list.Aliases, func(e AliasListEntry) bool { return e.AliasName == c.alias })
			if i < 0 {
				t.Fatalf("%s not listed for its key: %+v", c.alias, list.Aliases)
			}
			e := list.Aliases[i]
			now := f.clock.Now()
			if e.AliasArn != ksAliasARN(c.alias) || e.TargetKeyId != c.owner || !ksTime(e.CreationDate).Equal(now) || !ksTime(e.LastUpdatedDate).Equal(now) {
				t.Errorf("entry %+v", e)
			}
		})
	}
	if k := ksStoreKey(t, f, pending); len(k.Aliases) != 0 {
		t.Errorf("pending key got aliases %v", k.Aliases)
	}
	if k := ksStoreKey(t, f, a); !slices.Equal(slices.Sorted(slices.Values(k.Aliases)), []string{"alias/one", "alias/two"}) {
		t.Errorf("key a lists aliases %v", k.Aliases)
	}
}

// TestUpdateAlias moves an alias to another key of the same spec and usage
// only, and keeps both keys' alias lists right.
func TestUpdateAlias(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	a, b := f.createKey(t, CreateKeyInput{}), f.createKey(t, CreateKeyInput{})
	kw := f.createKey(t, CreateKeyInput{HsmkmsMechanism: "aes-kw"})
	disabled := f.createKey(t, CreateKeyInput{})
	ksMust(t, "DisableKey", f.svc.DisableKey(ctx, KeyIDInput{KeyId: disabled}))
	ecc256, ecc256b := f.createKey(t, CreateKeyInput{KeySpec: "ECC_NIST_P256"}), f.createKey(t, CreateKeyInput{KeySpec: "ECC_NIST_P256"})
	ecc384 := f.createKey(t, CreateKeyInput{KeySpec: "ECC_NIST_P384"})
	pending := f.createKey(t, CreateKeyInput{})
	_, err := f.svc.ScheduleKeyDeletion(ctx, ScheduleKeyDeletionInput{KeyId: pending})
	ksMust(t, "ScheduleKeyDeletion", err)
	ksMust(t, "CreateAlias", f.svc.CreateAlias(ctx, AliasInput{AliasName: "alias/sym", TargetKeyId: a}))
	ksMust(t, "CreateAlias", f.svc.CreateAlias(ctx, AliasInput{AliasName: "alias/ecc", TargetKeyId: ecc256}))
	created := f.clock.Now()
	wrong := func(alias, spec, usage string) string {
		return alias + " points at a " + spec + " " + usage + " key; the new target must have the same key spec and usage"
	}
	cases := []struct {
		name, alias, target string
		want                *Error
		msg                 string
		owner               string // whom the alias names afterwards
	}{
		{"to another symmetric key", "alias/sym", b, nil, "", b},
		{"by ARN", "alias/sym", ksARN(a), nil, "", a},
		{"to the same key", "alias/sym", a, nil, "", a},
		{"to an aes-kw key", "alias/sym", kw, nil, "", kw},
		{"to a disabled key", "alias/sym", disabled, nil, "", disabled},
		{"back", "alias/sym", a, nil, "", a},
		{"to an ECC key", "alias/sym", ecc256, ErrValidation, wrong("alias/sym", "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT"), a},
		{"to another ECC curve", "alias/ecc", ecc384, ErrValidation, wrong("alias/ecc", "ECC_NIST_P256", "SIGN_VERIFY"), ecc256},
		{"to a symmetric key", "alias/ecc", a, ErrValidation, "", ecc256},
		{"to the same ECC spec", "alias/ecc", ecc256b, nil, "", ecc256b},
		{"to a key pending deletion", "alias/sym", pending, ErrInvalidState, ksARN(pending) + " is pending deletion.", a},
		{"to an alias", "alias/sym", "alias/ecc", ErrValidation, "TargetKeyId must be a key ID or key ARN, not an alias", a},
		{"to an unknown key", "alias/sym", uuid.NewString(), ErrNotFound, "", a},
		{"an unknown alias", "alias/none", a, ErrNotFound, "Alias " + ksAliasARN("alias/none") + " is not found.", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.clock.Advance(time.Minute)
			before, _ := f.svc.ListAliases(ctx, ListAliasesInput{})
			err := f.svc.UpdateAlias(ctx, AliasInput{AliasName: c.alias, TargetKeyId: c.target})
			ksWantErr(t, "UpdateAlias", err, c.want, c.msg)
			if c.owner == "" {
				return
			}
			if got := ksDescribe(t, f, c.alias).KeyId; got != c.owner {
				t.Errorf("%s names %s, want %s", c.alias, got, c.owner)
			}
			all, err := f.svc.ListAliases(ctx, ListAliasesInput{})
			ksMust(t, "ListAliases", err)
			for _, e := range all.Aliases {
				if e.AliasName != c.alias {
					continue
				}
				wantUpdated := f.clock.Now()
				if c.want != nil || c.name == "to the same key" {
					i := slices.IndexFunc(before.Aliases, func(b AliasListEntry) bool { return b.AliasName == c.alias })
					wantUpdated = ksTime(before.Aliases[i].LastUpdatedDate)
				}
				if e.TargetKeyId != c.owner || !ksTime(e.CreationDate).Equal(created) || !ksTime(e.LastUpdatedDate).Equal(wantUpdated) {
					t.Errorf("entry %+v, want target %s, created %v, updated %v", e, c.owner, created, wantUpdated)
				}
			}
			// Every key lists exactly the aliases that name it.
			for _, id := range []string{a, b, kw, disabled, ecc256, ecc256b, ecc384, pending} {
				var want []string
				for _, e := range all.Aliases {
					if e.TargetKeyId == id {
						want = append(want, e.AliasName)
					}
				}
				if got := ksStoreKey(t, f, id).Aliases; !slices.Equal(got, want) {
					t.Errorf("key %s lists aliases %v, want %v", id, got, want)
				}
			}
		})
	}
}

// TestDeleteAlias removes an alias and nothing else, in every state a key
// can have an alias in.
func TestDeleteAlias(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	cases := []struct {
		name  string
		setup func(id string)
	}{
		{"Enabled", func(string) {}},
		{"Disabled", func(id string) { ksMust(t, "DisableKey", f.svc.DisableKey(ctx, KeyIDInput{KeyId: id})) }},
		{"PendingDeletion", func(id string) {
			_, err := f.svc.ScheduleKeyDeletion(ctx, ScheduleKeyDeletionInput{KeyId: id})
			ksMust(t, "ScheduleKeyDeletion", err)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := f.createKey(t, CreateKeyInput{})
			name, other := "alias/del-"+c.name, "alias/keep-"+c.name
			for _, a := range []string{name, other} {
				ksMust(t, "CreateAlias", f.svc.CreateAlias(ctx, AliasInput{AliasName: a, TargetKeyId: id}))
			}
			c.setup(id)
			ksWantErr(t, "DeleteAlias", f.svc.DeleteAlias(ctx, DeleteAliasInput{AliasName: name}), nil, "")
			_, err := f.svc.DescribeKey(ctx, KeyIDInput{KeyId: name})
			ksWantErr(t, "DescribeKey by the deleted alias", err, ErrNotFound, "Alias "+ksAliasARN(name)+" is not found.")
			if m := ksDescribe(t, f, other); m.KeyId != id || m.KeyState != c.name {
				t.Errorf("the other alias: %+v", m)
			}
			if k := ksStoreKey(t, f, id); !slices.Equal(k.Aliases, []string{other}) {
				t.Errorf("key lists aliases %v", k.Aliases)
			}
			ksWantErr(t, "DeleteAlias again", f.svc.DeleteAlias(ctx, DeleteAliasInput{AliasName: name}), ErrNotFound, "Alias "+ksAliasARN(name)+" is not found.")
		})
	}
	ksWantErr(t, "DeleteAlias of nothing", f.svc.DeleteAlias(ctx, DeleteAliasInput{AliasName: "alias/never"}), ErrNotFound, "")
	// A deleted alias's name can name another key.
	id := f.createKey(t, CreateKeyInput{})
	ksMust(t, "CreateAlias again", f.svc.CreateAlias(ctx, AliasInput{AliasName: "alias/del-Enabled", TargetKeyId: id}))
	if got := ksDescribe(t, f, "alias/del-Enabled").KeyId; got != id {
		t.Errorf("reused alias names %s", got)
	}
}

// TestListAliases lists all aliases by name, or one key's, a page at a
// time, and refuses bad limits and unknown keys.
func TestListAliases(t *testing.T) {
	f := newFixture(t, "")
	ctx := admin(t)
	a, b := f.createKey(t, CreateKeyInput{}), f.createKey(t, CreateKeyInput{})
	none := f.createKey(t, CreateKeyInput{})
	owner := map[string]string{"alias/b-1": a, "alias/a-2": b, "alias/c-3": a, "alias/a-1": a, "alias/d/4": b}
	for name, id := range owner {
		ksMust(t, "CreateAlias", f.svc.CreateAlias(ctx, AliasInput{AliasName: name, TargetKeyId: id}))
	}
	all := slices.Sorted(maps.Keys(owner))
	of := func(id string) []string {
		var out []string
		for _, n := range all {
			if owner[n] == id {
				out = append(out, n)
			}
		}
		return out
	}
	walk := func(t *testing.T, keyID string, limit int) []string {
		var got []string
		marker := ""
		for page := 0; page < 10; page++ {
			out, err := f.svc.ListAliases(ctx, ListAliasesInput{KeyId: keyID, Limit: limit, Marker: marker})
			ksMust(t, "ListAliases", err)
			if out.Aliases == nil || (limit > 0 && len(out.Aliases) > limit) {
				t.Fatalf("page %+v, limit %d", out, limit)
			}
			for _, e := range out.Aliases {
				if e.AliasArn != ksAliasARN(e.AliasName) || e.TargetKeyId != owner[e.AliasName] || e.CreationDate == nil {
					t.Errorf("entry %+v", e)
				}
				got = append(got, e.AliasName)
			}
			if !out.Truncated {
				if out.NextMarker != "" {
					t.Errorf("NextMarker %q on the last page", out.NextMarker)
				}
				return got
			}
			if out.NextMarker != out.Aliases[len(out.Aliases)-1].AliasName {
				t.Errorf("NextMarker %q is not the page's last alias", out.NextMarker)
			}
			marker = out.NextMarker
		}
		t.Fatal("more than 10 pages")
		return nil
	}
	cases := []struct {
		name  string
		keyID string
		want  []string
	}{
		{"all", "", all},
		{"key a by ID", a, of(a)},
		{"key b by ARN", ksARN(b), of(b)},
		{"key a by one of its aliases", "alias/c-3", of(a)},
		{"a key without aliases", none, []string{}},
	}
	for _, c := range cases {
		for _, limit := range []int{0, 1, 2, 3, 1000} {
			t.Run(fmt.Sprintf("%s, limit %d", c.name, limit), func(t *testing.T) {
				if got := walk(t, c.keyID, limit); !slices.Equal(got, c.want) && (len(got) != 0 || len(c.want) != 0) {
					t.Errorf("listed %v, want %v", got, c.want)
				}
			})
		}
	}
	errCases := []struct {
		name string
		in   ListAliasesInput
		want *Error
		msg  string
	}{
		{"limit 1001", ListAliasesInput{Limit: 1001}, ErrValidation, "1 validation error detected: Value '1001' at 'limit' failed to satisfy constraint: Member must have value between 1 and 1000"},
		{"negative limit", ListAliasesInput{KeyId: a, Limit: -5}, ErrValidation, ""},
		{"unknown key", ListAliasesInput{KeyId: uuid.NewString()}, ErrNotFound, ""},
		{"unknown alias", ListAliasesInput{KeyId: "alias/zzz"}, ErrNotFound, "Alias " + ksAliasARN("alias/zzz") + " is not found."},
		{"malformed key", ListAliasesInput{KeyId: "nope"}, ErrNotFound, "Invalid keyId 'nope'"},
	}
	for _, c := range errCases {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.svc.ListAliases(ctx, c.in)
			ksWantErr(t, "ListAliases", err, c.want, c.msg)
		})
	}
}

// TestAliasAuthz requires the alias action on the alias and on every key
// involved (policy.DecideAll), with one audit record per denial.
func TestAliasAuthz(t *testing.T) {
	f := newFixture(t, "")
	adm := admin(t)
	k, k2, k3 := f.createKey(t, CreateKeyInput{}), f.createKey(t, CreateKeyInput{}), f.createKey(t, CreateKeyInput{})
	ksMust(t, "CreateAlias", f.svc.CreateAlias(adm, AliasInput{AliasName: "alias/app-old", TargetKeyId: k}))
	allow := func(action string, res ...string) policy.Statement {
		return policy.Statement{Effect: "Allow", Actions: []string{action}, Resources: res}
	}
	deny := func(action string, res ...string) policy.Statement {
		return policy.Statement{Effect: "Deny", Actions: []string{action}, Resources: res}
	}
	type op int
	const (
		create op = iota
		update
		remove
	)
	cases := []struct {
		name   string
		op     op
		alias  string
		target string
		stmts  []policy.Statement
		ok     bool
	}{
		{"create: alias only", create, "alias/app-c1", k2, []policy.Statement{allow("kms:CreateAlias", "alias/app-*")}, false},
		{"create: key only", create, "alias/app-c2", k2, []policy.Statement{allow("kms:CreateAlias", ksARN(k2))}, false},
		{"create: alias and key in two statements", create, "alias/app-c3", k3, []policy.Statement{allow("kms:CreateAlias", "alias/app-*"), allow("kms:CreateAlias", k3)}, true},
		{"create: alias and key", create, "alias/app-c4", k2, []policy.Statement{allow("kms:CreateAlias", "alias/app-*", ksARN(k2))}, true},
		{"create: another alias name", create, "alias/ops-c5", k2, []policy.Statement{allow("kms:CreateAlias", "alias/app-*", ksARN(k2))}, false},
		{"create: alias denied", create, "alias/app-secret", k2, []policy.Statement{allow("kms:CreateAlias", "*"), deny("kms:CreateAlias", "alias/app-secret")}, false},
		{"create: key denied", create, "alias/app-c6", k2, []policy.Statement{allow("kms:CreateAlias", "*"), deny("kms:CreateAlias", k2)}, false},
		{"create: another action", create, "alias/app-c7", k2, []policy.Statement{allow("kms:UpdateAlias", "*")}, false},
		{"update: alias and old key only", update, "alias/app-old", k2, []policy.Statement{allow("kms:UpdateAlias", "alias/app-old", k)}, false},
		{"update: both keys, not the alias", update, "alias/app-old", k2, []policy.Statement{allow("kms:UpdateAlias", k, k2)}, false},
		{"update: old key denied", update, "alias/app-old", k2, []policy.Statement{allow("kms:UpdateAlias", "*"), deny("kms:UpdateAlias", k)}, false},
		{"update: new key denied", update, "alias/app-old", k2, []policy.Statement{allow("kms:UpdateAlias", "*"), deny("kms:UpdateAlias", ksARN(k2))}, false},
		// The alias covers the key it names, so alias and new key suffice.
		{"update: alias and new key", update, "alias/app-old", k2, []policy.Statement{allow("kms:UpdateAlias", "alias/app-*", ksARN(k2))}, true},
		{"delete: key only", remove, "alias/app-c4", "", []policy.Statement{allow("kms:DeleteAlias", ksARN(k2))}, false},
		{"delete: key denied", remove, "alias/app-c4", "", []policy.Statement{allow("kms:DeleteAlias", "*"), deny("kms:DeleteAlias", k2)}, false},
		{"delete: alias denied", remove, "alias/app-c4", "", []policy.Statement{allow("kms:DeleteAlias", "*"), deny("kms:DeleteAlias", "alias/app-c4")}, false},
		{"delete: the alias covers its key", remove, "alias/app-c4", "", []policy.Statement{allow("kms:DeleteAlias", "alias/app-c4")}, true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			who := fmt.Sprintf("AKIAALIAS%02d", i)
			ctx := as(t, who, c.stmts...)
			owner := func() string {
				out, err := f.svc.DescribeKey(adm, KeyIDInput{KeyId: c.alias})
				if err != nil {
					return ""
				}
				return out.KeyMetadata.KeyId
			}
			before := owner()
			mark := ksMark(f)
			var err error
			var action string
			switch c.op {
			case create:
				action, err = "kms:CreateAlias", f.svc.CreateAlias(ctx, AliasInput{AliasName: c.alias, TargetKeyId: c.target})
			case update:
				action, err = "kms:UpdateAlias", f.svc.UpdateAlias(ctx, AliasInput{AliasName: c.alias, TargetKeyId: c.target})
			case remove:
				action, err = "kms:DeleteAlias", f.svc.DeleteAlias(ctx, DeleteAliasInput{AliasName: c.alias})
			}
			recs := ksAuditSince(t, f, mark)
			after := owner()
			if c.ok {
				ksWantErr(t, action, err, nil, "")
				if len(recs) != 1 || recs[0]["outcome"] != "allowed" {
					t.Errorf("audit %v", recs)
				}
				if want := map[op]string{create: c.target, update: c.target, remove: ""}[c.op]; after != want {
					t.Errorf("alias names %q afterwards, want %q", after, want)
				}
				return
			}
			ksWantErr(t, action, err, ErrAccessDenied, "")
			if len(recs) != 1 || recs[0]["outcome"] != "denied" || recs[0]["error_type"] != "AccessDeniedException" ||
				recs[0]["action"] != action || recs[0]["principal"] != who || recs[0]["alias"] != c.alias {
				t.Errorf("audit %v, want one denial of %s on %s", recs, action, c.alias)
			}
			if after != before {
				t.Errorf("a denied %s changed %s from %q to %q", action, c.alias, before, after)
			}
		})
	}
}
