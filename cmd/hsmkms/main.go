// Command hsmkms is the hsmkms server and command-line tool; all of it
// lives in package cli.
package main

import (
	"os"

	"github.com/hsmkms/hsmkms/cli"
)

func main() { os.Exit(cli.Main()) }
