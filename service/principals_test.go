package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/service/audit"
	"github.com/hsmkms/hsmkms/service/policy"
)

// everything is the root's policy: every key and administrative action.
var everything = policy.Statement{Effect: policy.EffectAllow, Actions: []string{"kms:*", "hsmkms:*"}, Resources: []string{"*"}}

func stmt(effect string, actions []string, resources ...string) policy.Statement {
	return policy.Statement{Effect: effect, Actions: actions, Resources: resources}
}

func acts(a ...string) []string { return a }

// auditOf returns the audit records with the given action.
func (f *fixture) auditOf(t *testing.T, action string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range auditLines(t, f.audit.String()) {
		if r["action"] == action {
			out = append(out, r)
		}
	}
	return out
}

// resetBuffer empties b.
func resetBuffer(b *syncBuffer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b.Reset()
}

// wantNoSecret fails if any text holds any secret.
func wantNoSecret(t *testing.T, texts map[string]string, secrets ...string) {
	t.Helper()
	for where, text := range texts {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("the %s hold a secret access key", where)
			}
		}
	}
}

// TestCreatePrincipalLimitedToCreator proves that a principal creates only
// principals with no more rights than its own: its Deny statements are
// inherited, Allow statements it does not cover are refused with
// AccessDeniedException, and the audit record names the principal created.
func TestCreatePrincipalLimitedToCreator(t *testing.T) {
	f := newFixture(t, "")
	denyDecrypt := stmt("Deny", acts("kms:Decrypt"), "*")
	allowKMS := stmt("Allow", acts("kms:*"), "*")
	manyDenies := make([]policy.Statement, 60)
	for i := range manyDenies {
		manyDenies[i] = stmt("Deny", acts("kms:Decrypt"), fmt.Sprintf("alias/d%d", i))
	}
	manyAllows := slices.Repeat([]policy.Statement{stmt("Allow", acts("kms:Encrypt"), "*")}, 50)
	tests := []struct {
		name   string
		caller []policy.Statement
		child  []policy.Statement
		code   Code               // "" when created
		stored []policy.Statement // the created principal's statements
		inMsg  string
	}{
		{name: "Deny inherited",
			caller: []policy.Statement{everything, denyDecrypt}, child: []policy.Statement{allowKMS},
			stored: []policy.Statement{allowKMS, denyDecrypt}},
		{name: "Deny asked for is not repeated",
			caller: []policy.Statement{everything, denyDecrypt}, child: []policy.Statement{allowKMS, denyDecrypt},
			stored: []policy.Statement{allowKMS, denyDecrypt}},
		{name: "narrower resource",
			caller: []policy.Statement{stmt("Allow", acts("hsmkms:CreatePrincipal"), "*"), stmt("Allow", acts("kms:Decrypt", "kms:Encrypt"), "alias/app-*")},
			child:  []policy.Statement{stmt("Allow", acts("kms:Decrypt"), "alias/app-billing", "alias/app-x*")},
			stored: []policy.Statement{stmt("Allow", acts("kms:Decrypt"), "alias/app-billing", "alias/app-x*")}},
		{name: "resource the creator lacks",
			caller: []policy.Statement{stmt("Allow", acts("hsmkms:CreatePrincipal"), "*"), stmt("Allow", acts("kms:Decrypt"), "alias/app-*")},
			child:  []policy.Statement{stmt("Allow", acts("kms:Decrypt"), "alias/app-*"), stmt("Allow", acts("kms:Decrypt"), "*")},
			code:   CodeAccessDenied, inMsg: `statement 1 allows kms:Decrypt on "*", which no Allow statement of AKIACREATOR0000001 covers`},
		{name: "hsmkms:* from hsmkms:CreatePrincipal",
			caller: []policy.Statement{stmt("Allow", acts("kms:*", "hsmkms:CreatePrincipal"), "*")},
			child:  []policy.Statement{stmt("Allow", acts("hsmkms:*"), "*")},
			code:   CodeAccessDenied, inMsg: `statement 0 allows hsmkms:ListPrincipals on "*"`},
		{name: "inherited Denies over the limit",
			caller: append([]policy.Statement{everything}, manyDenies...), child: manyAllows,
			code: CodeValidation, inMsg: "110 statements with the 60 Deny statements it inherits"},
		{name: "caller without the right",
			caller: []policy.Statement{allowKMS}, child: []policy.Statement{allowKMS},
			code: CodeAccessDenied, inMsg: "hsmkms:CreatePrincipal"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resetBuffer(f.audit)
			out, err := f.svc.CreatePrincipal(as(t, "AKIACREATOR0000001", tc.caller...),
				CreatePrincipalInput{Name: fmt.Sprintf("child-%d", i), Statements: tc.child})
			// A principal made has a started record before its final one
			// (op.intend); one refused has the final record only.
			var recs, started []map[string]any
			for _, r := range f.auditOf(t, "hsmkms:CreatePrincipal") {
				if r["outcome"] == audit.Started {
					started = append(started, r)
				} else {
					recs = append(recs, r)
				}
			}
			if len(recs) != 1 {
				t.Fatalf("%d final CreatePrincipal audit records, want 1", len(recs))
			}
			if wantStarted := len(tc.code) == 0; (len(started) == 1) != wantStarted || len(started) > 1 {
				t.Fatalf("%d started CreatePrincipal records, want one only if the principal is made (%v)", len(started), wantStarted)
			}
			if tc.code != "" {
				if CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.inMsg) {
					t.Fatalf("CreatePrincipal = %v, want %s saying %q", err, tc.code, tc.inMsg)
				}
				if recs[0]["subject"] != nil {
					t.Errorf("the refusal's audit record names subject %v", recs[0]["subject"])
				}
				return
			}
			if err != nil {
				t.Fatalf("CreatePrincipal: %v", err)
			}
			if started[0]["subject"] != out.AccessKeyId {
				t.Errorf("started record %v, want subject %s", started[0], out.AccessKeyId)
			}
			if recs[0]["subject"] != out.AccessKeyId || recs[0]["outcome"] != "allowed" {
				t.Errorf("audit record %v, want subject %s, allowed", recs[0], out.AccessKeyId)
			}
			creds, err := f.svc.Credentials(t.Context(), out.AccessKeyId)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(creds.Statements, tc.stored, policy.Statement.Equal) {
				t.Errorf("the principal's statements are %v, want %v", creds.Statements, tc.stored)
			}
		})
	}

	t.Run("the service's own work is not limited", func(t *testing.T) {
		out, err := f.svc.CreatePrincipal(systemContext(t.Context()), CreatePrincipalInput{Name: "sys", Statements: []policy.Statement{everything}})
		if err != nil {
			t.Fatal(err)
		}
		if creds, err := f.svc.Credentials(t.Context(), out.AccessKeyId); err != nil || len(creds.Statements) != 1 {
			t.Fatalf("Credentials = %+v, %v; want the one statement asked for", creds.Statements, err)
		}
	})
}

// TestEnsureRootRotatesSecret proves that a configured root secret that
// differs from the stored one replaces it in the same process (the secret
// cache serves the new one at once), writing one audit record and one log
// line without either secret, and that the same secret changes nothing.
func TestEnsureRootRotatesSecret(t *testing.T) {
	f := newFixture(t, "")
	ctx := t.Context()
	const id, oldSecret, newSecret = "AKIAROOTROTATE000001", "old-root-secret-0123456789abcdef", "new-root-secret-fedcba9876543210"
	stmts := []policy.Statement{everything}
	steps := []struct {
		name        string
		secret      string
		want        RootChange
		rotations   int // RotateRootSecret records so far
		rotatedLogs int // "rotated" log lines so far
	}{
		{"first start", oldSecret, RootChange{Created: true}, 0, 0},
		{"same secret", oldSecret, RootChange{}, 0, 0},
		{"new secret", newSecret, RootChange{Rotated: true}, 1, 1},
		{"new secret again", newSecret, RootChange{}, 1, 1},
	}
	for _, st := range steps {
		ch, err := f.svc.EnsureRoot(ctx, id, st.secret, stmts)
		if err != nil || ch != st.want {
			t.Fatalf("%s: EnsureRoot = %+v, %v; want %+v", st.name, ch, err, st.want)
		}
		// Credentials is what verifies signatures; it caches secrets.
		creds, err := f.svc.Credentials(ctx, id)
		if err != nil || creds.Secret != st.secret {
			t.Fatalf("%s: Credentials serve the old secret (%t) or fail: %v", st.name, creds.Secret == oldSecret, err)
		}
		recs := f.auditOf(t, "hsmkms:RotateRootSecret")
		if len(recs) != st.rotations {
			t.Fatalf("%s: %d RotateRootSecret records, want %d", st.name, len(recs), st.rotations)
		}
		for _, r := range recs {
			if r["principal"] != "system" || r["subject"] != id || r["outcome"] != "allowed" {
				t.Errorf("%s: record %v, want principal system, subject %s, allowed", st.name, r, id)
			}
		}
		if n := strings.Count(f.logs.String(), "rotated the root principal's secret"); n != st.rotatedLogs {
			t.Errorf("%s: %d rotation log lines, want %d", st.name, n, st.rotatedLogs)
		}
	}
	wantNoSecret(t, map[string]string{"audit records": f.audit.String(), "logs": f.logs.String()}, oldSecret, newSecret)
}

// TestEnsureRootReplacesRoot proves that a configured access key ID other
// than the root's makes a new root and deletes the previous one, audited,
// and that nobody can delete the root.
func TestEnsureRootReplacesRoot(t *testing.T) {
	f := newFixture(t, "")
	ctx := t.Context()
	const oldID, newID = "AKIAROOTREPLACE00001", "AKIAROOTREPLACE00002"
	stmts := []policy.Statement{everything}
	if _, err := f.svc.EnsureRoot(ctx, oldID, "old-root-secret-0123456789", stmts); err != nil {
		t.Fatal(err)
	}
	adminCtx := as(t, "AKIAADMINISTRATOR1", everything)
	app, err := f.svc.CreatePrincipal(adminCtx, CreatePrincipalInput{Name: "app", Statements: []policy.Statement{stmt("Allow", acts("kms:ListKeys"), "*")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.DeletePrincipal(adminCtx, DeletePrincipalInput{AccessKeyId: oldID}); CodeOf(err) != CodeValidation ||
		!strings.Contains(err.Error(), "the root principal cannot be deleted") {
		t.Fatalf("DeletePrincipal of the root = %v, want ValidationException", err)
	}
	resetBuffer(f.audit)
	ch, err := f.svc.EnsureRoot(ctx, newID, "new-root-secret-0123456789", stmts)
	if want := (RootChange{Created: true, Replaced: oldID}); err != nil || ch != want {
		t.Fatalf("EnsureRoot with a new ID = %+v, %v; want %+v", ch, err, want)
	}
	if _, err := f.svc.Credentials(ctx, oldID); !errors.Is(err, ErrUnknownPrincipal) {
		t.Errorf("the previous root's credentials: %v, want ErrUnknownPrincipal", err)
	}
	for _, id := range []string{newID, app.AccessKeyId} {
		if _, err := f.svc.Credentials(ctx, id); err != nil {
			t.Errorf("Credentials(%s) after the replacement: %v", id, err)
		}
	}
	for action, subject := range map[string]string{"hsmkms:ReplaceRoot": newID, "hsmkms:DeletePrincipal": oldID} {
		recs := f.auditOf(t, action)
		if len(recs) != 1 || recs[0]["principal"] != "system" || recs[0]["subject"] != subject {
			t.Errorf("%s records %v, want one by system about %s", action, recs, subject)
		}
	}
	for _, tc := range []struct {
		name string
		id   string
		code Code
		msg  string
	}{
		{"the new root", newID, CodeValidation, "the root principal cannot be deleted"},
		{"the deleted root", oldID, CodeNotFound, oldID},
		{"oneself", "AKIAADMINISTRATOR1", CodeValidation, "cannot delete itself"},
	} {
		resetBuffer(f.audit)
		err := f.svc.DeletePrincipal(adminCtx, DeletePrincipalInput{AccessKeyId: tc.id})
		if CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("DeletePrincipal of %s = %v, want %s saying %q", tc.name, err, tc.code, tc.msg)
		}
		if recs := f.auditOf(t, "hsmkms:DeletePrincipal"); len(recs) != 1 || recs[0]["subject"] != tc.id {
			t.Errorf("DeletePrincipal of %s: records %v, want one with subject %s", tc.name, recs, tc.id)
		}
	}
	if err := f.svc.DeletePrincipal(adminCtx, DeletePrincipalInput{AccessKeyId: app.AccessKeyId}); err != nil {
		t.Errorf("DeletePrincipal of an ordinary principal: %v", err)
	}
}

// TestRootAdoption proves that a store of an earlier version, which did
// not record its root, adopts the configured principal if it exists, or
// else the oldest principal named "root", gives it the root's rights, and
// protects it from deletion.
func TestRootAdoption(t *testing.T) {
	const (
		oldest  = "AKIAROOTZZZZZZZZZZZZ" // made first, but listed last
		younger = "AKIAROOTAAAAAAAAAAAA"
		other   = "AKIAAPPAAAAAAAAAAAAA"
		fresh   = "AKIAROOTFRESH0000001"
		secret  = "earlier-version-secret-0123456789"
	)
	oldRoot := []policy.Statement{stmt("Allow", acts("kms:*"), "*")}
	stmts := []policy.Statement{everything}
	// earlier makes principals as an earlier version did: no root setting.
	earlier := func(t *testing.T, f *fixture, named map[string]string) {
		for _, id := range []string{oldest, younger, other} {
			if name, ok := named[id]; ok {
				if err := f.svc.putPrincipal(systemContext(t.Context()), id, secret, name, oldRoot, false); err != nil {
					t.Fatal(err)
				}
				f.clock.Advance(time.Hour)
			}
		}
	}
	roots := map[string]string{oldest: "root", younger: "root", other: "app"}
	tests := []struct {
		name     string
		named    map[string]string
		ensure   string // the configured access key ID, "" for RestoreRoot
		root     string
		replaced string
	}{
		{name: "oldest root, unconfigured", named: roots, root: oldest},
		{name: "configured principal", named: roots, ensure: younger, root: younger},
		{name: "new configured ID replaces the oldest root", named: roots, ensure: fresh, root: fresh, replaced: oldest},
		{name: "no principal named root", named: map[string]string{other: "app"}, root: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "")
			ctx := t.Context()
			earlier(t, f, tc.named)
			var got string
			if tc.ensure == "" {
				id, err := f.svc.RestoreRoot(ctx, stmts)
				if err != nil {
					t.Fatal(err)
				}
				got = id
			} else {
				ch, err := f.svc.EnsureRoot(ctx, tc.ensure, secret, stmts)
				if err != nil || ch.Replaced != tc.replaced {
					t.Fatalf("EnsureRoot = %+v, %v; want Replaced %q", ch, err, tc.replaced)
				}
				got = tc.ensure
			}
			if got != tc.root {
				t.Fatalf("the root is %q, want %q", got, tc.root)
			}
			if again, err := f.svc.RestoreRoot(ctx, stmts); err != nil || again != tc.root {
				t.Fatalf("RestoreRoot afterwards = %q, %v; want the recorded %q", again, err, tc.root)
			}
			if tc.root == "" {
				return
			}
			if creds, err := f.svc.Credentials(ctx, tc.root); err != nil || !slices.EqualFunc(creds.Statements, stmts, policy.Statement.Equal) {
				t.Errorf("the root's statements are %v (%v), want %v", creds.Statements, err, stmts)
			}
			err := f.svc.DeletePrincipal(as(t, "AKIAADMINISTRATOR1", everything), DeletePrincipalInput{AccessKeyId: tc.root})
			if CodeOf(err) != CodeValidation {
				t.Errorf("DeletePrincipal of the adopted root = %v, want ValidationException", err)
			}
			if tc.replaced != "" {
				if _, err := f.svc.Credentials(ctx, tc.replaced); !errors.Is(err, ErrUnknownPrincipal) {
					t.Errorf("the replaced root %s: %v, want ErrUnknownPrincipal", tc.replaced, err)
				}
			}
		})
	}
}

// TestEnsureRootRefusesBadCredentials proves that malformed configured
// credentials are refused without naming the secret.
func TestEnsureRootRefusesBadCredentials(t *testing.T) {
	f := newFixture(t, "")
	for _, tc := range []struct{ id, secret string }{
		{"akia-lower-case-id", "a-good-enough-secret-0123"},
		{"AKIASHORT", "a-good-enough-secret-0123"},
		{"AKIAGOODENOUGHID0001", "short-secret"},
	} {
		_, err := f.svc.EnsureRoot(t.Context(), tc.id, tc.secret, []policy.Statement{everything})
		if CodeOf(err) != CodeValidation || strings.Contains(err.Error(), tc.secret) {
			t.Errorf("EnsureRoot(%q) = %v, want a ValidationException without the secret", tc.id, err)
		}
	}
}

// TestPrincipalNamesUnique: a second principal with a name in use is
// refused, naming the first one's access key ID, and nothing is stored.
func TestPrincipalNamesUnique(t *testing.T) {
	f := newFixture(t, "")
	sys := systemContext(t.Context())
	first, err := f.svc.CreatePrincipal(sys, CreatePrincipalInput{Name: "billing", Statements: []policy.Statement{everything}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.CreatePrincipal(sys, CreatePrincipalInput{Name: "billing", Statements: []policy.Statement{everything}})
	ksWantErr(t, "a second billing", err, ErrAlreadyExists, "a principal named billing exists already (access key ID "+first.AccessKeyId+")")
	out, err := f.svc.ListPrincipals(sys, ListInput{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range out.Principals {
		if p.Name == "billing" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d principals named billing", n)
	}
}

// TestPrincipalUpdateAndRotate: UpdatePrincipal replaces a policy within
// the caller's; RotatePrincipalSecret makes the old secret stop verifying
// and the new one verify; root and unknown principals are refused, and so
// is a caller without the rights.
func TestPrincipalUpdateAndRotate(t *testing.T) {
	f := newFixture(t, "")
	sys := systemContext(t.Context())
	p, err := f.svc.CreatePrincipal(sys, CreatePrincipalInput{Name: "app", Statements: []policy.Statement{stmt("Allow", acts("kms:ListKeys"), "*")}})
	if err != nil {
		t.Fatal(err)
	}
	admin := as(t, "AKIAADMINPRINCIPAL01", everything)
	newPolicy := []policy.Statement{stmt("Allow", acts("kms:Encrypt", "kms:Decrypt"), "alias/app")}
	ksMust(t, "UpdatePrincipal", f.svc.UpdatePrincipal(admin, UpdatePrincipalInput{AccessKeyId: p.AccessKeyId, Statements: newPolicy}))
	creds, err := f.svc.Credentials(t.Context(), p.AccessKeyId)
	if err != nil {
		t.Fatal(err)
	}
	if len(creds.Statements) != 1 || !slices.Equal(creds.Statements[0].Actions, []string{"kms:Encrypt", "kms:Decrypt"}) {
		t.Fatalf("after UpdatePrincipal: %+v", creds.Statements)
	}
	r, err := f.svc.RotatePrincipalSecret(admin, RotatePrincipalSecretInput{AccessKeyId: p.AccessKeyId})
	ksMust(t, "RotatePrincipalSecret", err)
	if r.SecretAccessKey == "" || r.SecretAccessKey == p.SecretAccessKey {
		t.Fatalf("RotatePrincipalSecret gave %+v", r)
	}
	creds, err = f.svc.Credentials(t.Context(), p.AccessKeyId)
	if err != nil || creds.Secret != r.SecretAccessKey {
		t.Fatalf("after RotatePrincipalSecret the service verifies with another secret (%v)", err)
	}
	ksWantErr(t, "UpdatePrincipal of nobody", f.svc.UpdatePrincipal(admin, UpdatePrincipalInput{AccessKeyId: "AKIANOBODY", Statements: newPolicy}), ErrNotFound, "no principal has access key ID AKIANOBODY")
	_, err = f.svc.RotatePrincipalSecret(as(t, "AKIAWEAK", stmt("Allow", acts("kms:*"), "*")), RotatePrincipalSecretInput{AccessKeyId: p.AccessKeyId})
	ksWantErr(t, "RotatePrincipalSecret without hsmkms:RotatePrincipalSecret", err, ErrAccessDenied, "")
	err = f.svc.UpdatePrincipal(as(t, "AKIALIMITED", stmt("Allow", acts("hsmkms:UpdatePrincipal", "kms:ListKeys"), "*")),
		UpdatePrincipalInput{AccessKeyId: p.AccessKeyId, Statements: []policy.Statement{stmt("Allow", acts("kms:*"), "*")}})
	if err == nil {
		t.Fatal("a caller gave a principal more rights than it has")
	}
}

// TestPrincipalManagementLimitedToCallersRights: a principal allowed the
// admin actions on principals may rotate, update and delete only
// principals that can do no more than it can (found by review: one
// allowed only hsmkms:RotatePrincipalSecret rotated an administrator's
// secret, read the new one and took the administrator's rights).
func TestPrincipalManagementLimitedToCallersRights(t *testing.T) {
	f := newFixture(t, "")
	sys := systemContext(t.Context())
	mk := func(name string, stmts ...policy.Statement) CreatePrincipalOutput {
		p, err := f.svc.CreatePrincipal(sys, CreatePrincipalInput{Name: name, Statements: stmts})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	manage := stmt("Allow", acts("hsmkms:RotatePrincipalSecret", "hsmkms:UpdatePrincipal", "hsmkms:DeletePrincipal", "kms:ListKeys"), "*")
	deny := stmt("Deny", acts("kms:Decrypt"), "*")
	weak := mk("weak", manage, deny)
	w := as(t, weak.AccessKeyId, manage, deny)
	stronger := map[string]CreatePrincipalOutput{
		"an administrator":              mk("admin", everything),
		"one without the caller's Deny": mk("nodeny", stmt("Allow", acts("kms:ListKeys"), "*")),
	}
	for name, target := range stronger {
		t.Run(name, func(t *testing.T) {
			_, err := f.svc.RotatePrincipalSecret(w, RotatePrincipalSecretInput{AccessKeyId: target.AccessKeyId})
			ksWantErr(t, "RotatePrincipalSecret", err, ErrAccessDenied, "")
			ksWantErr(t, "UpdatePrincipal", f.svc.UpdatePrincipal(w, UpdatePrincipalInput{AccessKeyId: target.AccessKeyId,
				Statements: []policy.Statement{stmt("Allow", acts("kms:ListKeys"), "*")}}), ErrAccessDenied, "")
			ksWantErr(t, "DeletePrincipal", f.svc.DeletePrincipal(w, DeletePrincipalInput{AccessKeyId: target.AccessKeyId}), ErrAccessDenied, "")
			creds, err := f.svc.Credentials(t.Context(), target.AccessKeyId)
			if err != nil || creds.Secret != target.SecretAccessKey {
				t.Fatalf("the target's secret changed or it is gone (%v)", err)
			}
		})
	}
	// What the caller covers, with its Deny, it manages; and itself.
	lesser := mk("lesser", stmt("Allow", acts("kms:ListKeys"), "*"), deny)
	r, err := f.svc.RotatePrincipalSecret(w, RotatePrincipalSecretInput{AccessKeyId: lesser.AccessKeyId})
	ksMust(t, "RotatePrincipalSecret of a lesser principal", err)
	if r.SecretAccessKey == "" {
		t.Fatal("no new secret")
	}
	ksMust(t, "DeletePrincipal of a lesser principal", f.svc.DeletePrincipal(w, DeletePrincipalInput{AccessKeyId: lesser.AccessKeyId}))
	_, err = f.svc.RotatePrincipalSecret(w, RotatePrincipalSecretInput{AccessKeyId: weak.AccessKeyId})
	ksMust(t, "RotatePrincipalSecret of its own secret", err)
}

// TestPrincipalManagementCoversGrants: a principal's grants are rights too.
// A caller allowed to manage principals, but not to use a key, may not
// rotate, update or delete a principal that a grant lets use the key (it
// would read the new secret and use the grant), nor one a grant names as
// its retiring principal unless it may retire the key's grants itself. A
// caller whose policy allows what the grants allow may (found by review).
func TestPrincipalManagementCoversGrants(t *testing.T) {
	e := newGrantEnv(t)
	e.grant(t, CreateGrantInput{GranteePrincipal: e.arn(e.app), Operations: []string{"Encrypt", "Decrypt"}})
	e.grant(t, CreateGrantInput{GranteePrincipal: e.arn(e.app), RetiringPrincipal: e.arn(e.app2), Operations: []string{"Encrypt"}})
	sys := systemContext(t.Context())
	n := 0
	helpdesk := func(extra ...policy.Statement) context.Context {
		n++
		stmts := append([]policy.Statement{stmt("Allow", acts("hsmkms:RotatePrincipalSecret", "hsmkms:UpdatePrincipal", "hsmkms:DeletePrincipal"), "*")}, extra...)
		p, err := e.f.svc.CreatePrincipal(sys, CreatePrincipalInput{Name: fmt.Sprintf("helpdesk%d", n), Statements: stmts})
		ksMust(t, "CreatePrincipal", err)
		return as(t, p.AccessKeyId, stmts...)
	}
	key := e.f.svc.keyARN(e.key)
	for _, c := range []struct {
		name   string
		caller context.Context
		target string
		msg    string // "" when allowed
	}{
		{"the grantee, by a caller without the key's use", helpdesk(), e.app, "lets it "},
		{"the grantee, by a caller with Encrypt only", helpdesk(stmt("Allow", acts("kms:Encrypt"), key)), e.app, "lets it Decrypt"},
		{"the retiring principal, by a caller that may not retire", helpdesk(stmt("Allow", acts("kms:Encrypt", "kms:Decrypt"), key)), e.app2, "lets it RetireGrant"},
		{"the grantee, by a caller with its grants' rights", helpdesk(stmt("Allow", acts("kms:Encrypt", "kms:Decrypt"), key)), e.app, ""},
		{"the retiring principal, by a caller that may retire", helpdesk(stmt("Allow", acts("kms:RetireGrant"), key)), e.app2, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			before, err := e.f.svc.Credentials(t.Context(), c.target)
			ksMust(t, "Credentials", err)
			out, err := e.f.svc.RotatePrincipalSecret(c.caller, RotatePrincipalSecretInput{AccessKeyId: c.target})
			if c.msg == "" {
				ksMust(t, "RotatePrincipalSecret", err)
				if after, _ := e.f.svc.Credentials(t.Context(), c.target); after.Secret != out.SecretAccessKey {
					t.Fatal("the secret RotatePrincipalSecret returned is not the principal's")
				}
				return
			}
			ksWantErr(t, "RotatePrincipalSecret", err, ErrAccessDenied, "")
			if err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("RotatePrincipalSecret: %v, want it to say %q", err, c.msg)
			}
			ksWantErr(t, "UpdatePrincipal", e.f.svc.UpdatePrincipal(c.caller, UpdatePrincipalInput{AccessKeyId: c.target}), ErrAccessDenied, "")
			ksWantErr(t, "DeletePrincipal", e.f.svc.DeletePrincipal(c.caller, DeletePrincipalInput{AccessKeyId: c.target}), ErrAccessDenied, "")
			if after, err := e.f.svc.Credentials(t.Context(), c.target); err != nil || after.Secret != before.Secret {
				t.Fatalf("the target's secret changed or it is gone (%v)", err)
			}
		})
	}
}
