package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"
)

// clientCommands are the commands that talk to a server: the KMS operations
// through the AWS SDK, the principal administration through adminclient.
func clientCommands() []*cli.Command {
	return []*cli.Command{keyCommand(), aliasCommand(), principalCommand(),
		datakeyCommand(), datakeyPairCommand(), encryptValueCommand(), decryptValueCommand(), reEncryptCommand(),
		signCommand(), verifyCommand(), encryptFileCommand(), decryptFileCommand(), xksCommand()}
}

// envVars returns the environment variable of a command's own flag called
// name; New names it after the command (HSMKMS_REENCRYPT_SOURCE_CONTEXT).
func envVars(name string) []string {
	return []string{scopedEnv + name}
}

// scopedEnv marks the environment variable of a command's own flag: New
// names it after the command, HSMKMS_KEY_CREATE_SPEC for key create's
// --spec, so that a variable set for one command never changes another.
const scopedEnv = "\x00scoped:"

// envName is the environment variable of flag name of the command at path
// ("key create").
func envName(path, name string) string {
	return "HSMKMS_" + strings.ToUpper(strings.NewReplacer("-", "_", " ", "_").Replace(path+" "+name))
}

// usagef is a usage error: exit code ExitUsage and a message.
func usagef(format string, args ...any) error {
	return cli.Exit("hsmkms: "+fmt.Sprintf(format, args...), ExitUsage)
}

// leaf describes a command that talks to a server.
type leaf struct {
	name, usage, description string
	// args names the positional arguments, all of them required.
	args  []string
	flags []cli.Flag
	run   func(c *cli.Context, args []string) error
}

// command makes the cli.Command of l: its flags and the client flags,
// flags accepted after the arguments too, and exactly len(l.args)
// arguments.
func (l leaf) command() *cli.Command {
	argsUsage := strings.Join(l.args, " ")
	return &cli.Command{
		Name:        l.name,
		Usage:       l.usage,
		Description: l.description,
		ArgsUsage:   argsUsage,
		Flags:       append(l.flags, clientFlags()...),
		Action: func(c *cli.Context) error {
			args, help, err := parseArgs(c)
			if err != nil {
				return err
			}
			if help {
				return cli.ShowCommandHelp(c.Lineage()[1], c.Command.Name)
			}
			if len(args) != len(l.args) {
				if len(l.args) == 0 {
					return usagef("%s takes no arguments, got %q", commandName(c), args)
				}
				return usagef("%s takes %s, got %d argument(s)", commandName(c), argsUsage, len(args))
			}
			for i, a := range args {
				if a == "" {
					return usagef("%s: %s is empty", commandName(c), l.args[i])
				}
			}
			return l.run(c, args)
		},
	}
}

// commandName is the name of c's command without the application's, such
// as "key describe", for messages that start with "hsmkms: ".
func commandName(c *cli.Context) string {
	return strings.TrimPrefix(c.Command.HelpName, c.App.Name+" ")
}

// parseArgs returns the positional arguments of c and sets the flags that
// follow them: urfave/cli stops parsing flags at the first argument, and
// `hsmkms key schedule-deletion KEY --yes` should work as well as
// `hsmkms key schedule-deletion --yes KEY`. help reports a --help among
// them.
func parseArgs(c *cli.Context) (args []string, help bool, err error) {
	rest := c.Args().Slice()
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			return append(args, rest[i+1:]...), help, nil
		}
		if len(a) < 2 || a[0] != '-' {
			args = append(args, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := findFlag(c.Command.Flags, name)
		switch {
		case f == nil:
			return nil, false, usagef("flag provided but not defined: %s", a)
		case name == "help" || name == "h":
			help = true
			continue
		}
		if _, isBool := f.(*cli.BoolFlag); isBool && !hasValue {
			value, hasValue = "true", true
		}
		if !hasValue {
			if i+1 == len(rest) {
				return nil, false, usagef("flag needs an argument: %s", a)
			}
			i++
			value = rest[i]
		}
		if err := c.Set(name, value); err != nil {
			return nil, false, usagef("invalid value %q for flag %s: %v", value, a, err)
		}
	}
	return args, help, nil
}

// findFlag returns the flag of flags called name, or nil.
func findFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

// pair is one k=v of a repeated flag such as --tag or --context.
type pair struct{ k, v string }

// parsePairs splits the k=v values of the flag called name, refusing empty
// keys and keys given twice.
func parsePairs(name string, values []string) ([]pair, error) {
	var out []pair
	seen := map[string]bool{}
	for _, s := range values {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, usagef("--%s %q: want KEY=VALUE", name, s)
		}
		if seen[k] {
			return nil, usagef("--%s: %q given twice", name, k)
		}
		seen[k] = true
		out = append(out, pair{k, v})
	}
	return out, nil
}

// timeText prints an optional time for tables.
func timeText(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// keyArg is the KEY argument of the key commands.
var keyArg = []string{"KEY"}

// keyArgDoc says what KEY may be.
const keyArgDoc = "KEY is a key ID, a key ARN, an alias name (alias/…) or an alias ARN."

func keyCommand() *cli.Command {
	days := func(usage string) cli.Flag {
		return &cli.IntFlag{Name: "days", EnvVars: envVars("days"), Usage: usage}
	}
	cmds := []*cli.Command{
		leaf{name: "create", usage: "create a key", run: keyCreate, flags: []cli.Flag{
			&cli.StringFlag{Name: "description", EnvVars: envVars("description"), Usage: "what the key is for"},
			&cli.StringFlag{Name: "spec", Value: string(types.KeySpecSymmetricDefault), EnvVars: envVars("spec"), Usage: "SYMMETRIC_DEFAULT, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521, ECC_SECG_P256K1, RSA_2048, RSA_3072, RSA_4096, HMAC_224, HMAC_256, HMAC_384 or HMAC_512"},
			&cli.StringFlag{Name: "usage", EnvVars: envVars("usage"), Usage: "ENCRYPT_DECRYPT, SIGN_VERIFY or GENERATE_VERIFY_MAC (default: ENCRYPT_DECRYPT where --spec allows it, as in AWS KMS, else what it allows)"},
			&cli.StringFlag{Name: "mechanism", EnvVars: envVars("mechanism"), Usage: "aes-gcm, aes-kw or aes-cbc-hmac (for tokens without AES-GCM; their default): how a symmetric key protects data keys on the token (sent as the tag hsmkms:mechanism)"},
			&cli.StringSliceFlag{Name: "tag", EnvVars: envVars("tag"), Usage: "KEY=VALUE tag (repeatable)"},
			&cli.StringFlag{Name: "alias", EnvVars: envVars("alias"), Usage: "also name the new key alias/NAME"},
		}}.command(),
		leaf{name: "list", usage: "list keys: ID, aliases, state, spec, usage, creation date, description", run: keyList,
			description: "Example:\n  hsmkms key list --state Enabled --alias-prefix alias/app",
			flags: []cli.Flag{
				&cli.StringFlag{Name: "state", EnvVars: envVars("state"), Usage: "only keys in this state (Enabled, Disabled, PendingDeletion, PendingImport)"},
				&cli.StringFlag{Name: "alias-prefix", EnvVars: envVars("alias-prefix"), Usage: "only keys with an alias that starts so (alias/app)"},
			}}.command(),
		leaf{name: "describe", usage: "describe a key", description: keyArgDoc, args: keyArg, run: keyDescribe}.command(),
		leaf{name: "enable", usage: "enable a disabled key", description: keyArgDoc, args: keyArg, run: keyEnable}.command(),
		leaf{name: "disable", usage: "disable a key: it neither encrypts nor decrypts until enabled", description: keyArgDoc, args: keyArg,
			flags: []cli.Flag{yesFlag()}, run: keyDisable}.command(),
		leaf{name: "schedule-deletion", usage: "schedule a key's deletion after a waiting period", description: keyArgDoc, args: keyArg, run: keySchedule,
			flags: []cli.Flag{&cli.IntFlag{Name: "days", Value: 30, EnvVars: envVars("days"), Usage: "waiting period, 7 to 30 days"}, yesFlag()}}.command(),
		leaf{name: "cancel-deletion", usage: "cancel a scheduled deletion; the key stays disabled", description: keyArgDoc, args: keyArg, run: keyCancel}.command(),
		leaf{name: "update-description", usage: "replace a key's description", description: keyArgDoc, args: []string{"KEY", "DESCRIPTION"},
			run: keyUpdateDescription}.command(),
		leaf{name: "tag", usage: "add or replace tags of a key", description: keyArgDoc, args: keyArg, run: keyTag,
			flags: []cli.Flag{&cli.StringSliceFlag{Name: "tag", EnvVars: envVars("tag"), Usage: "KEY=VALUE tag (repeatable, at least one)"}}}.command(),
		leaf{name: "untag", usage: "remove tags of a key", description: keyArgDoc, args: keyArg, run: keyUntag,
			flags: []cli.Flag{&cli.StringSliceFlag{Name: "tag-key", EnvVars: envVars("tag-key"), Usage: "tag key to remove (repeatable, at least one)"}}}.command(),
		leaf{name: "rotate", usage: "rotate a key now: new key material encrypts from now on", description: keyArgDoc, args: keyArg, run: keyRotate}.command(),
		leaf{name: "rotations", usage: "list a key's rotations", description: keyArgDoc, args: keyArg, run: keyRotations}.command(),
		{
			Name:  "rotation",
			Usage: "automatic rotation of a key",
			Subcommands: []*cli.Command{
				leaf{name: "enable", usage: "rotate a key automatically", description: keyArgDoc, args: keyArg,
					flags: []cli.Flag{days("rotation period in days (default: the server's, 365)")}, run: rotationEnable}.command(),
				leaf{name: "disable", usage: "stop rotating a key automatically", description: keyArgDoc, args: keyArg, run: rotationDisable}.command(),
				leaf{name: "status", usage: "show whether and when a key rotates", description: keyArgDoc, args: keyArg, run: rotationStatus}.command(),
			},
		},
	}
	return &cli.Command{Name: "key", Usage: "manage keys", Subcommands: cmds}
}

// keyView is how the key commands print a key.
type keyView struct {
	KeyId                string            `json:"KeyId"`
	Arn                  string            `json:"Arn"`
	Description          string            `json:"Description"`
	KeyState             string            `json:"KeyState"`
	Enabled              bool              `json:"Enabled"`
	KeySpec              string            `json:"KeySpec"`
	KeyUsage             string            `json:"KeyUsage"`
	CreationDate         *time.Time        `json:"CreationDate,omitempty"`
	DeletionDate         *time.Time        `json:"DeletionDate,omitempty"`
	CurrentKeyMaterialId string            `json:"CurrentKeyMaterialId,omitempty"`
	Tags                 map[string]string `json:"Tags,omitempty"`
}

func newKeyView(m *types.KeyMetadata, tags map[string]string) keyView {
	return keyView{KeyId: aws.ToString(m.KeyId), Arn: aws.ToString(m.Arn), Description: aws.ToString(m.Description),
		KeyState: string(m.KeyState), Enabled: m.Enabled, KeySpec: string(m.KeySpec), KeyUsage: string(m.KeyUsage),
		CreationDate: m.CreationDate, DeletionDate: m.DeletionDate, CurrentKeyMaterialId: aws.ToString(m.CurrentKeyMaterialId),
		Tags: tags}
}

func printKey(c *cli.Context, k keyView) error {
	return printOut(c, k, func(w io.Writer) {
		row(w, "key id", k.KeyId)
		row(w, "arn", k.Arn)
		row(w, "description", k.Description)
		row(w, "state", k.KeyState)
		row(w, "spec", k.KeySpec)
		row(w, "usage", k.KeyUsage)
		row(w, "created", timeText(k.CreationDate))
		if k.DeletionDate != nil {
			row(w, "deletion", timeText(k.DeletionDate))
		}
		if k.CurrentKeyMaterialId != "" {
			row(w, "key material", k.CurrentKeyMaterialId)
		}
		for _, t := range sortedKeys(k.Tags) {
			row(w, "tag", t+"="+k.Tags[t])
		}
	})
}

// mechanismTag is the tag that chooses how a symmetric key protects data
// keys on the token.
const mechanismTag = "hsmkms:mechanism"

func keyCreate(c *cli.Context, _ []string) error {
	pairs, err := parsePairs("tag", c.StringSlice("tag"))
	if err != nil {
		return err
	}
	tags := map[string]string{}
	var in kms.CreateKeyInput
	for _, p := range pairs {
		in.Tags = append(in.Tags, types.Tag{TagKey: aws.String(p.k), TagValue: aws.String(p.v)})
		tags[p.k] = p.v
	}
	if m := c.String("mechanism"); m != "" {
		if m != "aes-gcm" && m != "aes-kw" && m != "aes-cbc-hmac" {
			return usagef("--mechanism must be aes-gcm, aes-kw or aes-cbc-hmac, not %q", m)
		}
		if _, ok := tags[mechanismTag]; ok {
			return usagef("give --mechanism or --tag %s=…, not both", mechanismTag)
		}
		in.Tags = append(in.Tags, types.Tag{TagKey: aws.String(mechanismTag), TagValue: aws.String(m)})
		tags[mechanismTag] = m
	}
	if c.IsSet("description") {
		in.Description = aws.String(c.String("description"))
	}
	in.KeySpec = types.KeySpec(c.String("spec"))
	in.KeyUsage = types.KeyUsageType(c.String("usage"))
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	out, err := cl.CreateKey(c.Context, &in)
	if err != nil {
		return &callError{"create key", err}
	}
	if a := c.String("alias"); a != "" {
		a = aliasName(a)
		if _, err := cl.CreateAlias(c.Context, &kms.CreateAliasInput{AliasName: aws.String(a), TargetKeyId: out.KeyMetadata.KeyId}); err != nil {
			return aliasErr(a, fmt.Errorf("key %s was created, but not its alias: %w", aws.ToString(out.KeyMetadata.KeyId), err))
		}
	}
	if len(tags) == 0 {
		tags = nil
	}
	return printKey(c, newKeyView(out.KeyMetadata, tags))
}

// keyListEntry is one key of `key list`.
type keyListEntry struct {
	KeyId        string     `json:"KeyId"`
	KeyArn       string     `json:"KeyArn"`
	Aliases      []string   `json:"Aliases,omitempty"`
	KeyState     string     `json:"KeyState,omitempty"`
	KeySpec      string     `json:"KeySpec,omitempty"`
	KeyUsage     string     `json:"KeyUsage,omitempty"`
	Description  string     `json:"Description,omitempty"`
	CreationDate *time.Time `json:"CreationDate,omitempty"`
}

// keyList pages through ListKeys and describes each key, several at once.
// A key the caller may list but not describe is shown with its ID and ARN
// only.
func keyList(c *cli.Context, _ []string) error {
	state, prefix := c.String("state"), c.String("alias-prefix")
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	var listed []types.KeyListEntry
	for p := kms.NewListKeysPaginator(cl, &kms.ListKeysInput{}); p.HasMorePages(); {
		page, err := p.NextPage(c.Context)
		if err != nil {
			return &callError{"list keys", err}
		}
		listed = append(listed, page.Keys...)
	}
	aliases, err := aliasesByKey(c, cl)
	if err != nil {
		return err
	}
	keys := []keyListEntry{}
	for _, k := range listed {
		e := keyListEntry{KeyId: aws.ToString(k.KeyId), KeyArn: aws.ToString(k.KeyArn), Aliases: aliases[aws.ToString(k.KeyId)]}
		if prefix != "" && !slices.ContainsFunc(e.Aliases, func(a string) bool { return strings.HasPrefix(a, prefix) }) {
			continue
		}
		keys = append(keys, e)
	}
	if err := describeEntries(c.Context, cl, keys); err != nil {
		return err
	}
	if state != "" {
		keys = slices.DeleteFunc(keys, func(e keyListEntry) bool { return !strings.EqualFold(e.KeyState, state) })
	}
	return printOut(c, keys, func(w io.Writer) {
		header(w, "KEY ID", "ALIASES", "STATE", "SPEC", "USAGE", "CREATED", "DESCRIPTION")
		for _, k := range keys {
			row(w, k.KeyId, orDash(strings.Join(k.Aliases, ",")), orDash(k.KeyState), orDash(k.KeySpec), orDash(k.KeyUsage),
				orDash(timeText(k.CreationDate)), orDash(k.Description))
		}
	})
}

// describeConcurrency bounds the DescribeKey calls `key list` has in
// flight: each key costs a round trip, which over a slow link adds up to
// minutes for a few thousand keys; a few at once hide that without being a
// burst a server's throttling would refuse.
const describeConcurrency = 8

// describeEntries fills each entry's metadata from DescribeKey, a few keys
// at a time, in place. A key the caller may not describe keeps its ID and
// ARN only; any other error ends the listing with the first one.
func describeEntries(ctx context.Context, cl *kms.Client, keys []keyListEntry) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(describeConcurrency)
	for i := range keys {
		e := &keys[i]
		g.Go(func() error {
			d, err := cl.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(e.KeyId)})
			switch {
			case err == nil:
				m := d.KeyMetadata
				e.KeyState, e.KeySpec, e.KeyUsage = string(m.KeyState), string(m.KeySpec), string(m.KeyUsage)
				e.Description, e.CreationDate = aws.ToString(m.Description), m.CreationDate
			case apiCode(err) != "AccessDeniedException":
				return keyErr(e.KeyId, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// aliasesByKey maps key IDs to their aliases; a caller that may not list
// aliases gets none.
func aliasesByKey(c *cli.Context, cl *kms.Client) (map[string][]string, error) {
	out := map[string][]string{}
	for p := kms.NewListAliasesPaginator(cl, &kms.ListAliasesInput{}); p.HasMorePages(); {
		page, err := p.NextPage(c.Context)
		if apiCode(err) == "AccessDeniedException" {
			return out, nil
		}
		if err != nil {
			return nil, &callError{"list aliases", err}
		}
		for _, a := range page.Aliases {
			if id := aws.ToString(a.TargetKeyId); id != "" {
				out[id] = append(out[id], aws.ToString(a.AliasName))
			}
		}
	}
	return out, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func keyDescribe(c *cli.Context, args []string) error {
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	out, err := cl.DescribeKey(c.Context, &kms.DescribeKeyInput{KeyId: aws.String(args[0])})
	if err != nil {
		return keyErr(args[0], err)
	}
	// Tags, which show the data key mechanism, are extra: a principal may
	// describe a key without being allowed to list its tags.
	tags := map[string]string{}
	for p := kms.NewListResourceTagsPaginator(cl, &kms.ListResourceTagsInput{KeyId: out.KeyMetadata.KeyId}); p.HasMorePages(); {
		page, err := p.NextPage(c.Context)
		if apiCode(err) == "AccessDeniedException" {
			break
		}
		if err != nil {
			return keyErr(args[0], err)
		}
		for _, t := range page.Tags {
			tags[aws.ToString(t.TagKey)] = aws.ToString(t.TagValue)
		}
	}
	if len(tags) == 0 {
		tags = nil
	}
	return printKey(c, newKeyView(out.KeyMetadata, tags))
}

// keyErr names the key a failed call was about.
func keyErr(key string, err error) error { return &callError{"key " + key, err} }

// keyChange is what the commands that change a key print.
type keyChange struct {
	KeyId    string `json:"KeyId"`
	KeyState string `json:"KeyState,omitempty"`
	// DeletionDate and PendingWindowInDays are set by schedule-deletion.
	DeletionDate        *time.Time `json:"DeletionDate,omitempty"`
	PendingWindowInDays int32      `json:"PendingWindowInDays,omitempty"`
	// Message is the table output.
	Message string `json:"-"`
}

func printChange(c *cli.Context, ch keyChange) error {
	return printOut(c, ch, func(w io.Writer) { fmt.Fprintln(w, ch.Message) })
}

func keyEnable(c *cli.Context, args []string) error {
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	if _, err := cl.EnableKey(c.Context, &kms.EnableKeyInput{KeyId: aws.String(args[0])}); err != nil {
		return keyErr(args[0], err)
	}
	return printChange(c, keyChange{KeyId: args[0], KeyState: string(types.KeyStateEnabled), Message: "key " + args[0] + " enabled"})
}

func keyDisable(c *cli.Context, args []string) error {
	if err := confirm(c, fmt.Sprintf("Disable key %s? Nothing can encrypt or decrypt with it until it is enabled again.", args[0])); err != nil {
		return err
	}
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	if _, err := cl.DisableKey(c.Context, &kms.DisableKeyInput{KeyId: aws.String(args[0])}); err != nil {
		return keyErr(args[0], err)
	}
	return printChange(c, keyChange{KeyId: args[0], KeyState: string(types.KeyStateDisabled), Message: "key " + args[0] + " disabled"})
}

func keySchedule(c *cli.Context, args []string) error {
	days := c.Int("days")
	if days < 7 || days > 30 {
		return usagef("--days must be 7 to 30, not %d", days)
	}
	if err := confirm(c, fmt.Sprintf("Delete key %s in %d days? Whatever it encrypted cannot be decrypted once it is gone.", args[0], days)); err != nil {
		return err
	}
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	out, err := cl.ScheduleKeyDeletion(c.Context, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(args[0]), PendingWindowInDays: aws.Int32(int32(days))})
	if err != nil {
		return keyErr(args[0], err)
	}
	return printChange(c, keyChange{KeyId: aws.ToString(out.KeyId), KeyState: string(out.KeyState), DeletionDate: out.DeletionDate,
		PendingWindowInDays: aws.ToInt32(out.PendingWindowInDays),
		Message:             fmt.Sprintf("key %s will be deleted at %s (cancel with: hsmkms key cancel-deletion %s)", args[0], timeText(out.DeletionDate), args[0])})
}

func keyCancel(c *cli.Context, args []string) error {
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	out, err := cl.CancelKeyDeletion(c.Context, &kms.CancelKeyDeletionInput{KeyId: aws.String(args[0])})
	if err != nil {
		return keyErr(args[0], err)
	}
	return printChange(c, keyChange{KeyId: aws.ToString(out.KeyId), KeyState: string(types.KeyStateDisabled),
		Message: fmt.Sprintf("key %s: deletion cancelled; the key is disabled (enable it with: hsmkms key enable %s)", args[0], args[0])})
}

func keyRotate(c *cli.Context, args []string) error {
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	out, err := cl.RotateKeyOnDemand(c.Context, &kms.RotateKeyOnDemandInput{KeyId: aws.String(args[0])})
	if err != nil {
		return keyErr(args[0], err)
	}
	return printChange(c, keyChange{KeyId: aws.ToString(out.KeyId), Message: "key " + args[0] + " rotated: new key material encrypts from now on"})
}

// rotationView is one rotation of `key rotations`.
type rotationView struct {
	KeyId         string     `json:"KeyId"`
	KeyMaterialId string     `json:"KeyMaterialId"`
	RotationDate  *time.Time `json:"RotationDate,omitempty"`
	RotationType  string     `json:"RotationType"`
}

func keyRotations(c *cli.Context, args []string) error {
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	rots := []rotationView{}
	for p := kms.NewListKeyRotationsPaginator(cl, &kms.ListKeyRotationsInput{KeyId: aws.String(args[0])}); p.HasMorePages(); {
		page, err := p.NextPage(c.Context)
		if err != nil {
			return keyErr(args[0], err)
		}
		for _, r := range page.Rotations {
			rots = append(rots, rotationView{aws.ToString(r.KeyId), aws.ToString(r.KeyMaterialId), r.RotationDate, string(r.RotationType)})
		}
	}
	return printOut(c, rots, func(w io.Writer) {
		header(w, "ROTATED", "TYPE", "KEY MATERIAL")
		for _, r := range rots {
			row(w, timeText(r.RotationDate), r.RotationType, r.KeyMaterialId)
		}
	})
}

// rotationStatusView is what the rotation commands print.
type rotationStatusView struct {
	KeyId                     string     `json:"KeyId"`
	KeyRotationEnabled        bool       `json:"KeyRotationEnabled"`
	RotationPeriodInDays      int32      `json:"RotationPeriodInDays,omitempty"`
	NextRotationDate          *time.Time `json:"NextRotationDate,omitempty"`
	OnDemandRotationStartDate *time.Time `json:"OnDemandRotationStartDate,omitempty"`
}

func printRotation(c *cli.Context, s rotationStatusView) error {
	return printOut(c, s, func(w io.Writer) {
		row(w, "key", s.KeyId)
		row(w, "rotation", map[bool]string{true: "enabled", false: "disabled"}[s.KeyRotationEnabled])
		if s.RotationPeriodInDays != 0 {
			row(w, "period", fmt.Sprintf("%d days", s.RotationPeriodInDays))
		}
		if s.NextRotationDate != nil {
			row(w, "next", timeText(s.NextRotationDate))
		}
	})
}

func rotationEnable(c *cli.Context, args []string) error {
	in := &kms.EnableKeyRotationInput{KeyId: aws.String(args[0])}
	if c.IsSet("days") {
		if c.Int("days") <= 0 {
			return usagef("--days must be positive, not %d", c.Int("days"))
		}
		in.RotationPeriodInDays = aws.Int32(int32(c.Int("days")))
	}
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	if _, err := cl.EnableKeyRotation(c.Context, in); err != nil {
		return keyErr(args[0], err)
	}
	return printRotation(c, rotationStatusView{KeyId: args[0], KeyRotationEnabled: true, RotationPeriodInDays: aws.ToInt32(in.RotationPeriodInDays)})
}

func rotationDisable(c *cli.Context, args []string) error {
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	if _, err := cl.DisableKeyRotation(c.Context, &kms.DisableKeyRotationInput{KeyId: aws.String(args[0])}); err != nil {
		return keyErr(args[0], err)
	}
	return printRotation(c, rotationStatusView{KeyId: args[0]})
}

func rotationStatus(c *cli.Context, args []string) error {
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	out, err := cl.GetKeyRotationStatus(c.Context, &kms.GetKeyRotationStatusInput{KeyId: aws.String(args[0])})
	if err != nil {
		return keyErr(args[0], err)
	}
	return printRotation(c, rotationStatusView{KeyId: aws.ToString(out.KeyId), KeyRotationEnabled: out.KeyRotationEnabled,
		RotationPeriodInDays: aws.ToInt32(out.RotationPeriodInDays), NextRotationDate: out.NextRotationDate,
		OnDemandRotationStartDate: out.OnDemandRotationStartDate})
}

// sortedKeys returns the keys of m in order.
func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

func keyUpdateDescription(c *cli.Context, args []string) error {
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	if _, err := cl.UpdateKeyDescription(c.Context, &kms.UpdateKeyDescriptionInput{KeyId: aws.String(args[0]), Description: aws.String(args[1])}); err != nil {
		return keyErr(args[0], err)
	}
	return printChange(c, keyChange{KeyId: args[0], Message: "key " + args[0] + ": description updated"})
}

func keyTag(c *cli.Context, args []string) error {
	pairs, err := parsePairs("tag", c.StringSlice("tag"))
	if err != nil {
		return err
	}
	if len(pairs) == 0 {
		return usagef("key tag needs at least one --tag KEY=VALUE")
	}
	var tags []types.Tag
	for _, p := range pairs {
		tags = append(tags, types.Tag{TagKey: aws.String(p.k), TagValue: aws.String(p.v)})
	}
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	if _, err := cl.TagResource(c.Context, &kms.TagResourceInput{KeyId: aws.String(args[0]), Tags: tags}); err != nil {
		return keyErr(args[0], err)
	}
	return printChange(c, keyChange{KeyId: args[0], Message: fmt.Sprintf("key %s: %d tags set", args[0], len(tags))})
}

func keyUntag(c *cli.Context, args []string) error {
	keys := c.StringSlice("tag-key")
	if len(keys) == 0 {
		return usagef("key untag needs at least one --tag-key KEY")
	}
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	if _, err := cl.UntagResource(c.Context, &kms.UntagResourceInput{KeyId: aws.String(args[0]), TagKeys: keys}); err != nil {
		return keyErr(args[0], err)
	}
	return printChange(c, keyChange{KeyId: args[0], Message: fmt.Sprintf("key %s: %d tags removed", args[0], len(keys))})
}
