package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/api/adminclient"
	"github.com/hsmkms/hsmkms/service/policy"
	"github.com/urfave/cli/v2"
)

func principalCommand() *cli.Command {
	return &cli.Command{
		Name:  "principal",
		Usage: "manage principals, the access keys that sign requests, and their policies",
		Subcommands: []*cli.Command{
			leaf{name: "create", usage: "create a principal and print its secret access key, once", args: []string{"NAME"}, run: principalCreate,
				description: "The policy is a JSON array of statements, e.g.\n" +
					`[{"effect": "Allow", "actions": ["kms:Encrypt", "kms:Decrypt"], "resources": ["alias/app"]}]` + "\n" +
					"--allow ACTION=RESOURCE adds one Allow statement (the kms: prefix may be left out).\n" +
					"Administration has actions of its own, which kms:* does not grant: hsmkms:CreatePrincipal,\n" +
					"hsmkms:ListPrincipals, hsmkms:DeletePrincipal and hsmkms:GetTokenInfo (hsmkms:* for all four).\n" +
					"A principal can give the principals it creates no right it lacks itself: every Allow\n" +
					"must be within its own, and its Deny statements are added to theirs.\n" +
					"Presets for --allow: encrypt-files=KEY (GenerateDataKey, Encrypt, Decrypt, DescribeKey: what\n" +
					"hsmkms encrypt and decrypt need), decrypt-only=KEY (Decrypt, DescribeKey), admin=* (kms:* and hsmkms:*).\n" +
					"--print credentials-file writes the new credentials as an AWS shared credentials file ([default]),\n" +
					"--print env as export lines, to hand to an application.",
				flags: []cli.Flag{
					&cli.StringFlag{Name: "policy", EnvVars: envVars("policy"), Usage: "file holding the policy statements (JSON array), or - for standard input"},
					&cli.StringSliceFlag{Name: "allow", EnvVars: envVars("allow"), Usage: "ACTION=RESOURCE to allow, e.g. kms:Decrypt=alias/app or hsmkms:ListPrincipals=*, or PRESET=RESOURCE (encrypt-files, decrypt-only, admin) (repeatable)"},
					&cli.StringFlag{Name: "print", Usage: "table (default, or JSON with --output json), credentials-file or env"},
				}}.command(),
			leaf{name: "list", usage: "list principals and their policies", run: principalList}.command(),
			leaf{name: "update", usage: "replace a principal's policy (by name or access key ID)", args: []string{"NAME_OR_ACCESS_KEY_ID"}, run: principalUpdate,
				description: "Example:\n  hsmkms principal update billing --allow encrypt-files=alias/billing",
				flags: []cli.Flag{
					&cli.StringFlag{Name: "policy", EnvVars: envVars("policy"), Usage: "file holding the policy statements (JSON array), or - for standard input"},
					&cli.StringSliceFlag{Name: "allow", EnvVars: envVars("allow"), Usage: "ACTION=RESOURCE or PRESET=RESOURCE to allow (repeatable)"},
				}}.command(),
			leaf{name: "rotate-secret", usage: "give a principal a new secret access key; the old one stops working at once", args: []string{"NAME_OR_ACCESS_KEY_ID"},
				run: principalRotate, flags: []cli.Flag{yesFlag(), &cli.StringFlag{Name: "print", Usage: "table (default), credentials-file or env"}}}.command(),
			leaf{name: "delete", usage: "delete a principal, by name or access key ID: its access key stops working at once", args: []string{"NAME_OR_ACCESS_KEY_ID"},
				flags: []cli.Flag{yesFlag()}, run: principalDelete}.command(),
		},
	}
}

// allowPresets are the --allow shorthands for the common roles.
var allowPresets = map[string][]string{
	"encrypt-files": {"kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"},
	"decrypt-only":  {"kms:Decrypt", "kms:DescribeKey"},
	"admin":         {"kms:*", "hsmkms:*"},
}

// principalErr names the principal a failed call was about.
func principalErr(p string, err error) error { return &callError{"principal " + p, err} }

// readPolicy reads the statements of --policy and --allow.
func readPolicy(c *cli.Context) ([]policy.Statement, error) {
	var stmts []policy.Statement
	if f := c.String("policy"); f != "" {
		var data []byte
		var err error
		if f == "-" {
			data, err = io.ReadAll(io.LimitReader(c.App.Reader, 1<<20))
		} else {
			data, err = os.ReadFile(f)
		}
		if err != nil {
			return nil, usagef("--policy: %v", err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&stmts); err != nil {
			return nil, usagef("--policy %s: not a JSON array of statements (effect, actions, resources): %v", f, err)
		}
	}
	for _, a := range c.StringSlice("allow") {
		action, resource, ok := strings.Cut(a, "=")
		if !ok || action == "" || resource == "" {
			return nil, usagef("--allow %q: want ACTION=RESOURCE, e.g. kms:Decrypt=alias/app", a)
		}
		if actions, ok := allowPresets[action]; ok {
			stmts = append(stmts, policy.Statement{Effect: policy.EffectAllow, Actions: actions, Resources: []string{resource}})
			continue
		}
		if lower := strings.ToLower(action); !strings.HasPrefix(lower, policy.KMSPrefix) && !strings.HasPrefix(lower, policy.AdminPrefix) {
			action = policy.KMSPrefix + action
		}
		stmts = append(stmts, policy.Statement{Effect: policy.EffectAllow, Actions: []string{action}, Resources: []string{resource}})
	}
	if len(stmts) == 0 {
		return nil, usagef("give the principal's policy with --policy or --allow")
	}
	if err := policy.Validate(stmts); err != nil {
		return nil, usagef("policy: %v", err)
	}
	return stmts, nil
}

func principalCreate(c *cli.Context, args []string) error {
	stmts, err := readPolicy(c)
	if err != nil {
		return err
	}
	format, err := printFormat(c)
	if err != nil {
		return err
	}
	cl, err := adminClient(c)
	if err != nil {
		return err
	}
	out, err := cl.CreatePrincipal(c.Context, service.CreatePrincipalInput{Name: args[0], Statements: stmts})
	if err != nil {
		return principalErr(args[0], err)
	}
	if outputFormat(c) != "json" {
		fmt.Fprintln(c.App.ErrWriter, "hsmkms: the secret access key is shown only now; keep it safe")
	}
	if format == "credentials-file" || format == "env" {
		return printSecret(c, format, out.Name, out.AccessKeyId, out.SecretAccessKey)
	}
	return printOut(c, out, func(w io.Writer) {
		row(w, "name", out.Name)
		row(w, "access key id", out.AccessKeyId)
		row(w, "secret access key", out.SecretAccessKey)
		row(w, "arn", out.Arn)
	})
}

// principalView is how principal list prints a principal.
type principalView struct {
	AccessKeyId  string             `json:"AccessKeyId"`
	Name         string             `json:"Name"`
	Arn          string             `json:"Arn"`
	Statements   []policy.Statement `json:"Statements"`
	CreationDate *time.Time         `json:"CreationDate,omitempty"`
}

func principalList(c *cli.Context, _ []string) error {
	cl, err := adminClient(c)
	if err != nil {
		return err
	}
	list := []principalView{}
	for marker := ""; ; {
		page, err := cl.ListPrincipals(c.Context, service.ListInput{Marker: marker})
		if err != nil {
			return &callError{"list principals", err}
		}
		for _, p := range page.Principals {
			v := principalView{AccessKeyId: p.AccessKeyId, Name: p.Name, Arn: p.Arn, Statements: p.Statements}
			if p.CreationDate != nil {
				t := time.Time(*p.CreationDate)
				v.CreationDate = &t
			}
			if v.Statements == nil {
				v.Statements = []policy.Statement{}
			}
			list = append(list, v)
		}
		if !page.Truncated || page.NextMarker == "" || page.NextMarker == marker {
			break
		}
		marker = page.NextMarker
	}
	return printOut(c, list, func(w io.Writer) {
		header(w, "ACCESS KEY ID", "NAME", "CREATED", "POLICY")
		for _, p := range list {
			row(w, p.AccessKeyId, p.Name, timeText(p.CreationDate), policyText(p.Statements))
		}
	})
}

// policyText summarises statements on one line, close to the form --allow
// takes: ACTIONS=RESOURCES, a preset's name for its actions, kms: dropped
// (deny statements start with "deny "), e.g.
// "encrypt-files=alias/app; deny Decrypt=*". A statement's several actions
// or resources are joined by commas here, where --allow takes one action
// and one resource per flag (its commas separate flag values).
func policyText(stmts []policy.Statement) string {
	s := make([]string, len(stmts))
	for i, st := range stmts {
		s[i] = strings.Join(shortActions(st.Actions), ",") + "=" + strings.Join(st.Resources, ",")
		if st.Effect != policy.EffectAllow {
			s[i] = strings.ToLower(st.Effect) + " " + s[i]
		}
	}
	return strings.Join(s, "; ")
}

// shortActions names actions in the words --allow takes: a preset's name
// when they are exactly its actions, otherwise each action without the
// kms: prefix (one --allow flag each).
func shortActions(actions []string) []string {
	for _, name := range slices.Sorted(maps.Keys(allowPresets)) {
		if sameActions(actions, allowPresets[name]) {
			return []string{name}
		}
	}
	short := make([]string, len(actions))
	for i, a := range actions {
		if len(a) > len(policy.KMSPrefix) && strings.EqualFold(a[:len(policy.KMSPrefix)], policy.KMSPrefix) {
			a = a[len(policy.KMSPrefix):]
		}
		short[i] = a
	}
	return short
}

// sameActions reports whether a and b hold the same actions in any order
// and case.
func sameActions(a, b []string) bool {
	return len(a) == len(b) && coversActions(a, b) && coversActions(b, a)
}

// coversActions reports whether every action of a is in b.
func coversActions(a, b []string) bool {
	for _, x := range a {
		if !slices.ContainsFunc(b, func(y string) bool { return strings.EqualFold(x, y) }) {
			return false
		}
	}
	return true
}

// printFormat is --print of principal create and rotate-secret.
func printFormat(c *cli.Context) (string, error) {
	switch f := c.String("print"); f {
	case "", "table", "credentials-file", "env":
		return f, nil
	default:
		return "", usagef("--print must be table, credentials-file or env, not %q", f)
	}
}

func principalDelete(c *cli.Context, args []string) error {
	cl, id, err := principalTarget(c, args[0])
	if err != nil {
		return err
	}
	if err := confirm(c, fmt.Sprintf("Delete principal %s? Requests signed with its access key fail from now on.", id)); err != nil {
		return err
	}
	if err := cl.DeletePrincipal(c.Context, id); err != nil {
		return principalErr(id, err)
	}
	v := struct {
		AccessKeyId string `json:"AccessKeyId"`
		Deleted     bool   `json:"Deleted"`
	}{id, true}
	return printOut(c, v, func(w io.Writer) { fmt.Fprintf(w, "principal %s deleted\n", id) })
}

// principalTarget connects to the admin API and resolves the principal a
// command names (principal update, rotate-secret and delete).
func principalTarget(c *cli.Context, nameOrID string) (*adminclient.Client, string, error) {
	cl, err := adminClient(c)
	if err != nil {
		return nil, "", err
	}
	id, err := principalID(c, cl, nameOrID)
	return cl, id, err
}

// principalID resolves a principal's name to its access key ID; an access
// key ID (as listed) names itself.
func principalID(c *cli.Context, cl *adminclient.Client, nameOrID string) (string, error) {
	if looksLikeAccessKeyID(nameOrID) {
		// No listing: deleting needs hsmkms:DeletePrincipal only.
		return nameOrID, nil
	}
	for marker := ""; ; {
		page, err := cl.ListPrincipals(c.Context, service.ListInput{Marker: marker})
		if err != nil {
			return "", &callError{"list principals", err}
		}
		for _, p := range page.Principals {
			if p.AccessKeyId == nameOrID || p.Name == nameOrID {
				return p.AccessKeyId, nil
			}
		}
		if page.NextMarker == "" {
			return "", cli.Exit(fmt.Sprintf("hsmkms: no principal is named or has the access key ID %s", nameOrID), ExitNotFound)
		}
		marker = page.NextMarker
	}
}

// looksLikeAccessKeyID reports an AWS-shaped access key ID: AKIA and 16 of
// A-Z and 2-7. Principal names cannot be mistaken for one unless chosen so.
func looksLikeAccessKeyID(s string) bool {
	if len(s) != 20 || !strings.HasPrefix(s, "AKIA") {
		return false
	}
	for _, r := range s[4:] {
		if !(r >= 'A' && r <= 'Z' || r >= '2' && r <= '7') {
			return false
		}
	}
	return true
}

// printSecret writes credentials as an AWS shared credentials file or as
// export lines.
func printSecret(c *cli.Context, format, name, id, secret string) error {
	var err error
	if format == "env" {
		_, err = fmt.Fprintf(c.App.Writer, "export AWS_ACCESS_KEY_ID=%s\nexport AWS_SECRET_ACCESS_KEY=%s\n", id, secret)
	} else {
		_, err = fmt.Fprintf(c.App.Writer, "# hsmkms principal %s\n[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", name, id, secret)
	}
	return err
}

func principalUpdate(c *cli.Context, args []string) error {
	stmts, err := readPolicy(c)
	if err != nil {
		return err
	}
	cl, id, err := principalTarget(c, args[0])
	if err != nil {
		return err
	}
	if err := cl.UpdatePrincipal(c.Context, service.UpdatePrincipalInput{AccessKeyId: id, Statements: stmts}); err != nil {
		return principalErr(args[0], err)
	}
	return printOut(c, struct {
		AccessKeyId string             `json:"AccessKeyId"`
		Statements  []policy.Statement `json:"Statements"`
	}{id, stmts}, func(w io.Writer) { fmt.Fprintf(w, "principal %s: policy replaced\n", args[0]) })
}

func principalRotate(c *cli.Context, args []string) error {
	format, err := printFormat(c)
	if err != nil {
		return err
	}
	cl, id, err := principalTarget(c, args[0])
	if err != nil {
		return err
	}
	if err := confirm(c, fmt.Sprintf("Give principal %s a new secret? Requests signed with the old one fail from now on.", args[0])); err != nil {
		return err
	}
	out, err := cl.RotatePrincipalSecret(c.Context, id)
	if err != nil {
		return principalErr(args[0], err)
	}
	if outputFormat(c) != "json" {
		fmt.Fprintln(c.App.ErrWriter, "hsmkms: the new secret access key is shown only now; keep it safe")
	}
	if format == "credentials-file" || format == "env" {
		return printSecret(c, format, args[0], out.AccessKeyId, out.SecretAccessKey)
	}
	return printOut(c, out, func(w io.Writer) {
		row(w, "access key id", out.AccessKeyId)
		row(w, "secret access key", out.SecretAccessKey)
	})
}
