package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
)

// printOut writes v as indented JSON with --output json, or else calls table
// with a tab-aligned writer.
func printOut(c *cli.Context, v any, table func(w io.Writer)) error {
	switch outputFormat(c) {
	case "json":
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "table", "":
		tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
		table(tw)
		return tw.Flush()
	}
	return cli.Exit(fmt.Sprintf("hsmkms: --output must be table or json, not %q", outputFormat(c)), ExitUsage)
}

func row(w io.Writer, cols ...any) {
	s := make([]string, len(cols))
	for i, c := range cols {
		s[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(w, strings.Join(s, "\t"))
}
