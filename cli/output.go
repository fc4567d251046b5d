package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
)

// printOut writes v as indented JSON with --output json; else it calls
// table with a tab-aligned writer (table), or with one that writes the rows
// as they are, tab-separated, without the header (text, for shell loops).
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
	case "text":
		table(textWriter{c.App.Writer})
		return nil
	}
	return cli.Exit(fmt.Sprintf("hsmkms: --output must be table, text or json, not %q", outputFormat(c)), ExitUsage)
}

// textWriter is --output text's: header drops the header row.
type textWriter struct{ io.Writer }

// header writes a list's column names, except with --output text.
func header(w io.Writer, cols ...any) {
	if _, ok := w.(textWriter); ok {
		return
	}
	row(w, cols...)
}

func row(w io.Writer, cols ...any) {
	s := make([]string, len(cols))
	for i, c := range cols {
		s[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(w, strings.Join(s, "\t"))
}
