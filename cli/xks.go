package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/hsmkms/hsmkms/service"
	"github.com/hsmkms/hsmkms/service/policy"
	"github.com/urfave/cli/v2"
)

// xksCommand administers the logical external key stores of the XKS
// proxy API: AWS KMS's external key stores point at one each.
func xksCommand() *cli.Command {
	return &cli.Command{
		Name:  "xks",
		Usage: "manage the external key stores AWS KMS uses through the XKS proxy API (serve --xks-listen)",
		Subcommands: []*cli.Command{
			{
				Name:  "store",
				Usage: "create, list and delete external key stores (one URI path prefix each), and set their policy",
				Subcommands: []*cli.Command{
					leaf{name: "create", usage: "create an external key store at a URI path prefix", args: []string{"PREFIX"}, run: xksStoreCreate,
						description: "PREFIX is the path before /kms/xks/v1, e.g. example/uri/path/prefix: AWS KMS's\n" +
							"XksProxyUriPath is then /example/uri/path/prefix/kms/xks/v1 (at most 128 characters)."}.command(),
					leaf{name: "list", usage: "list external key stores, their keys and credential IDs", run: xksStoreList}.command(),
					leaf{name: "delete", usage: "delete an external key store: AWS KMS's calls to it fail at once (the keys stay)",
						args: []string{"PREFIX"}, flags: []cli.Flag{yesFlag()}, run: xksStoreDelete}.command(),
					leaf{name: "policy", usage: "restrict who AWS KMS may act for through an external key store (secondary authorisation)",
						args: []string{"PREFIX"}, run: xksStorePolicy,
						description: "The statements are the principals' policy language, applied to AWS KMS's requestMetadata:\n" +
							"the action is kms: and the kmsOperation (kms:Decrypt, kms:GenerateDataKey, kms:DescribeKey, ...),\n" +
							"the resources are the awsPrincipalArn and via:<kmsViaService> when AWS KMS acts for a service.\n" +
							"E.g. --allow kms:*=arn:aws:iam::111122223333:* allows any principal of that account;\n" +
							"a Deny on via:ebs refuses calls made for EBS. With a policy, a call must be allowed by it;\n" +
							"--clear removes it (the allow-list alone decides). GetHealthStatus is never restricted.",
						flags: []cli.Flag{
							&cli.StringFlag{Name: "policy", EnvVars: envVars("policy"), Usage: "file holding the policy statements (JSON array), or - for standard input"},
							&cli.StringSliceFlag{Name: "allow", EnvVars: envVars("allow"), Usage: "ACTION=RESOURCE to allow, e.g. kms:Decrypt=arn:aws:iam::111122223333:role/app (repeatable)"},
							&cli.BoolFlag{Name: "clear", Usage: "remove the store's policy"},
						}}.command(),
				},
			},
			{
				Name:  "key",
				Usage: "allow or deny keys in an external key store",
				Subcommands: []*cli.Command{
					leaf{name: "allow", usage: "let AWS KMS use a key through an external key store", args: []string{"PREFIX", "EXTERNAL_KEY_ID"},
						run: xksKeyAllow,
						description: "EXTERNAL_KEY_ID is the key's ID (a UUID) or an alias name without alias/ (foo for alias/foo);\n" +
							"an alias is resolved at each call, so re-pointing it needs no change in AWS.\n" +
							"--usage names what AWS KMS may do: ENCRYPT,DECRYPT (the default), one of them, or \"\" for\n" +
							"neither (GetKeyMetadata reports it; Encrypt and Decrypt get InvalidKeyUsageException).",
						flags: []cli.Flag{
							&cli.StringFlag{Name: "usage", Value: "ENCRYPT,DECRYPT", EnvVars: envVars("xks_usage"), Usage: "comma-separated key usages: ENCRYPT, DECRYPT, both, or empty for neither"},
						}}.command(),
					leaf{name: "deny", usage: "stop AWS KMS using a key through an external key store", args: []string{"PREFIX", "EXTERNAL_KEY_ID"},
						run: xksKeyDeny}.command(),
				},
			},
			{
				Name:  "credential",
				Usage: "add or remove the SigV4 credentials AWS KMS signs with",
				Subcommands: []*cli.Command{
					leaf{name: "add", usage: "add a credential and print the JSON file the AWS KMS console imports", args: []string{"PREFIX"},
						run: xksCredentialAdd,
						description: "The file holds XksProxyUriPath and XksProxyAuthenticationCredential (AccessKeyId and\n" +
							"RawSecretAccessKey). The secret is shown only now. A store takes several credentials, so\n" +
							"that AWS KMS can switch to a new one before the old one is removed (no restart needed)."}.command(),
					leaf{name: "remove", usage: "remove a credential: requests signed with it fail at once", args: []string{"PREFIX", "ACCESS_KEY_ID"},
						flags: []cli.Flag{yesFlag()}, run: xksCredentialRemove}.command(),
				},
			},
		},
	}
}

func xksErr(what string, err error) error { return &callError{what, err} }

func xksStoreCreate(c *cli.Context, args []string) error {
	cl, err := adminClient(c)
	if err != nil {
		return err
	}
	var out service.XKSStoreEntry
	if err := cl.Call(c.Context, "HsmkmsAdmin.CreateXksStore", service.XKSStoreInput{Prefix: args[0]}, &out); err != nil {
		return xksErr("external key store "+args[0], err)
	}
	return printOut(c, out, func(w io.Writer) {
		row(w, "prefix", out.Prefix)
		row(w, "XksProxyUriPath", out.URIPath)
	})
}

func xksStoreList(c *cli.Context, _ []string) error {
	cl, err := adminClient(c)
	if err != nil {
		return err
	}
	var out service.ListXKSStoresOutput
	if err := cl.Call(c.Context, "HsmkmsAdmin.ListXksStores", service.ListXKSStoresInput{}, &out); err != nil {
		return xksErr("list external key stores", err)
	}
	if out.Stores == nil {
		out.Stores = []service.XKSStoreEntry{}
	}
	return printOut(c, out.Stores, func(w io.Writer) {
		header(w, "URI PATH", "CREDENTIALS", "KEYS")
		for _, s := range out.Stores {
			creds := make([]string, len(s.Credentials))
			for i, cr := range s.Credentials {
				creds[i] = cr.AccessKeyID
			}
			keys := make([]string, len(s.Keys))
			for i, k := range s.Keys {
				keys[i] = k.ExternalKeyID + "(" + strings.Join(k.Usage, ",") + ")"
			}
			row(w, s.URIPath, dash(strings.Join(creds, ",")), dash(strings.Join(keys, " ")))
		}
	})
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func xksStoreDelete(c *cli.Context, args []string) error {
	p := args[0]
	if err := confirm(c, fmt.Sprintf("Delete external key store %s? AWS KMS's calls to it fail from now on.", p)); err != nil {
		return err
	}
	cl, err := adminClient(c)
	if err != nil {
		return err
	}
	if err := cl.Call(c.Context, "HsmkmsAdmin.DeleteXksStore", service.XKSStoreInput{Prefix: p}, nil); err != nil {
		return xksErr("external key store "+p, err)
	}
	v := struct {
		Prefix  string `json:"Prefix"`
		Deleted bool   `json:"Deleted"`
	}{p, true}
	return printOut(c, v, func(w io.Writer) { fmt.Fprintf(w, "external key store %s deleted\n", p) })
}

func xksStorePolicy(c *cli.Context, args []string) error {
	stmts := []policy.Statement{}
	if !c.Bool("clear") {
		var err error
		if stmts, err = readPolicy(c); err != nil {
			return err
		}
	} else if c.IsSet("policy") || c.IsSet("allow") {
		return usagef("--clear takes no --policy or --allow")
	}
	cl, err := adminClient(c)
	if err != nil {
		return err
	}
	in := service.XKSPolicyInput{Prefix: args[0], Statements: stmts}
	if err := cl.Call(c.Context, "HsmkmsAdmin.SetXksPolicy", in, nil); err != nil {
		return xksErr("external key store "+args[0], err)
	}
	return printOut(c, in, func(w io.Writer) {
		if len(stmts) == 0 {
			fmt.Fprintf(w, "external key store %s has no policy: its allow-list alone decides\n", args[0])
			return
		}
		fmt.Fprintf(w, "external key store %s: %s\n", args[0], policyText(stmts))
	})
}

func xksKeyAllow(c *cli.Context, args []string) error {
	usage := []string{}
	for _, u := range strings.Split(c.String("usage"), ",") {
		if u = strings.TrimSpace(u); u != "" {
			usage = append(usage, strings.ToUpper(u))
		}
	}
	for _, u := range usage {
		if u != "ENCRYPT" && u != "DECRYPT" {
			return usagef("--usage %q: want ENCRYPT, DECRYPT, both (comma-separated) or empty", c.String("usage"))
		}
	}
	cl, err := adminClient(c)
	if err != nil {
		return err
	}
	in := service.AllowXKSKeyInput{Prefix: args[0], ExternalKeyID: args[1], Usage: usage}
	if err := cl.Call(c.Context, "HsmkmsAdmin.AllowXksKey", in, nil); err != nil {
		return xksErr("key "+args[1]+" in external key store "+args[0], err)
	}
	return printOut(c, in, func(w io.Writer) {
		fmt.Fprintf(w, "external key store %s allows %s for %s\n", args[0], args[1], dash(strings.Join(usage, ",")))
	})
}

func xksKeyDeny(c *cli.Context, args []string) error {
	cl, err := adminClient(c)
	if err != nil {
		return err
	}
	in := service.XKSKeyInput{Prefix: args[0], ExternalKeyID: args[1]}
	if err := cl.Call(c.Context, "HsmkmsAdmin.DenyXksKey", in, nil); err != nil {
		return xksErr("key "+args[1]+" in external key store "+args[0], err)
	}
	return printOut(c, in, func(w io.Writer) {
		fmt.Fprintf(w, "external key store %s no longer allows %s\n", args[0], args[1])
	})
}

// xksCredentialAdd prints the console's JSON file, whatever --output
// says: it is a file to save, not a table.
func xksCredentialAdd(c *cli.Context, args []string) error {
	cl, err := adminClient(c)
	if err != nil {
		return err
	}
	var out service.XKSProxyCredential
	if err := cl.Call(c.Context, "HsmkmsAdmin.AddXksCredential", service.XKSStoreInput{Prefix: args[0]}, &out); err != nil {
		return xksErr("external key store "+args[0], err)
	}
	fmt.Fprintln(c.App.ErrWriter, "hsmkms: the secret is shown only now; import this file in the AWS KMS console and keep it safe")
	enc := json.NewEncoder(c.App.Writer)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func xksCredentialRemove(c *cli.Context, args []string) error {
	p, id := args[0], args[1]
	if err := confirm(c, fmt.Sprintf("Remove credential %s of external key store %s? Requests signed with it fail from now on.", id, p)); err != nil {
		return err
	}
	cl, err := adminClient(c)
	if err != nil {
		return err
	}
	in := service.XKSCredentialInput{Prefix: p, AccessKeyID: id}
	if err := cl.Call(c.Context, "HsmkmsAdmin.RemoveXksCredential", in, nil); err != nil {
		return xksErr("credential "+id+" of external key store "+p, err)
	}
	v := struct {
		Prefix      string `json:"Prefix"`
		AccessKeyId string `json:"AccessKeyId"`
		Removed     bool   `json:"Removed"`
	}{p, id, true}
	return printOut(c, v, func(w io.Writer) { fmt.Fprintf(w, "credential %s of external key store %s removed\n", id, p) })
}
