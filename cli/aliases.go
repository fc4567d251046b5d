package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/urfave/cli/v2"
)

// aliasDoc says what ALIAS and KEY may be.
const aliasDoc = "ALIAS is alias/NAME (the alias/ prefix may be left out). " + keyArgDoc

func aliasCommand() *cli.Command {
	return &cli.Command{
		Name:  "alias",
		Usage: "manage aliases, the names of keys",
		Subcommands: []*cli.Command{
			leaf{name: "create", usage: "name a key", description: aliasDoc, args: []string{"ALIAS", "KEY"}, run: aliasCreate}.command(),
			leaf{name: "update", usage: "point an alias at another key", description: aliasDoc, args: []string{"ALIAS", "KEY"}, run: aliasUpdate}.command(),
			leaf{name: "delete", usage: "delete an alias (the key stays)", description: aliasDoc, args: []string{"ALIAS"},
				flags: []cli.Flag{yesFlag()}, run: aliasDelete}.command(),
			leaf{name: "list", usage: "list aliases", run: aliasList, flags: []cli.Flag{
				&cli.StringFlag{Name: "key", Aliases: []string{"key-id"}, EnvVars: envVars("key"), Usage: "list only the aliases of this key (ID or ARN)"},
			}}.command(),
		},
	}
}

// aliasName adds the alias/ prefix that AWS requires when it is missing.
func aliasName(s string) string {
	if strings.HasPrefix(s, "alias/") {
		return s
	}
	return "alias/" + s
}

// aliasErr names the alias a failed call was about.
func aliasErr(alias string, err error) error { return &callError{"alias " + alias, err} }

// aliasView is how the alias commands print an alias.
type aliasView struct {
	AliasName       string     `json:"AliasName"`
	AliasArn        string     `json:"AliasArn,omitempty"`
	TargetKeyId     string     `json:"TargetKeyId"`
	KeyState        string     `json:"KeyState,omitempty"`
	CreationDate    *time.Time `json:"CreationDate,omitempty"`
	LastUpdatedDate *time.Time `json:"LastUpdatedDate,omitempty"`
	// Deleted is set by alias delete.
	Deleted bool `json:"Deleted,omitempty"`
}

func aliasCreate(c *cli.Context, args []string) error {
	alias, key := aliasName(args[0]), args[1]
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	if _, err := cl.CreateAlias(c.Context, &kms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(key)}); err != nil {
		return aliasErr(alias, err)
	}
	v := aliasView{AliasName: alias, TargetKeyId: key}
	return printOut(c, v, func(w io.Writer) { fmt.Fprintf(w, "alias %s created for key %s\n", alias, key) })
}

func aliasUpdate(c *cli.Context, args []string) error {
	alias, key := aliasName(args[0]), args[1]
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	if _, err := cl.UpdateAlias(c.Context, &kms.UpdateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(key)}); err != nil {
		return aliasErr(alias, err)
	}
	v := aliasView{AliasName: alias, TargetKeyId: key}
	return printOut(c, v, func(w io.Writer) { fmt.Fprintf(w, "alias %s now names key %s\n", alias, key) })
}

func aliasDelete(c *cli.Context, args []string) error {
	alias := aliasName(args[0])
	if err := confirm(c, fmt.Sprintf("Delete alias %s? Whatever names its key by it stops working.", alias)); err != nil {
		return err
	}
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	if _, err := cl.DeleteAlias(c.Context, &kms.DeleteAliasInput{AliasName: aws.String(alias)}); err != nil {
		return aliasErr(alias, err)
	}
	v := aliasView{AliasName: alias, Deleted: true}
	return printOut(c, v, func(w io.Writer) { fmt.Fprintf(w, "alias %s deleted\n", alias) })
}

func aliasList(c *cli.Context, _ []string) error {
	cl, err := kmsClient(c)
	if err != nil {
		return err
	}
	in, what := &kms.ListAliasesInput{}, "list aliases"
	if k := c.String("key"); k != "" {
		in.KeyId, what = aws.String(k), "key "+k
	}
	aliases := []aliasView{}
	for p := kms.NewListAliasesPaginator(cl, in); p.HasMorePages(); {
		page, err := p.NextPage(c.Context)
		if err != nil {
			return &callError{what, err}
		}
		for _, a := range page.Aliases {
			aliases = append(aliases, aliasView{AliasName: aws.ToString(a.AliasName), AliasArn: aws.ToString(a.AliasArn),
				TargetKeyId: aws.ToString(a.TargetKeyId), CreationDate: a.CreationDate, LastUpdatedDate: a.LastUpdatedDate})
		}
	}
	// The target key's state, where the caller may describe it: an alias
	// of a disabled key or one pending deletion is worth seeing.
	states := map[string]string{}
	for i, a := range aliases {
		if a.TargetKeyId == "" {
			continue
		}
		if _, ok := states[a.TargetKeyId]; !ok {
			d, err := cl.DescribeKey(c.Context, &kms.DescribeKeyInput{KeyId: aws.String(a.TargetKeyId)})
			switch {
			case err == nil:
				states[a.TargetKeyId] = string(d.KeyMetadata.KeyState)
			case apiCode(err) == "AccessDeniedException":
				states[a.TargetKeyId] = ""
			default:
				return keyErr(a.TargetKeyId, err)
			}
		}
		aliases[i].KeyState = states[a.TargetKeyId]
	}
	return printOut(c, aliases, func(w io.Writer) {
		header(w, "ALIAS", "KEY ID", "KEY STATE", "UPDATED")
		for _, a := range aliases {
			updated := a.LastUpdatedDate
			if updated == nil {
				updated = a.CreationDate
			}
			row(w, a.AliasName, a.TargetKeyId, orDash(a.KeyState), timeText(updated))
		}
	})
}
