package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/hsmkms/hsmkms/hsm"
	"github.com/urfave/cli/v2"
)

// exitCode prints err and maps it to one of the Exit codes.
func exitCode(err error, stderr io.Writer) int {
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(stderr, msg)
		}
		return ec.ExitCode()
	}
	fmt.Fprintf(stderr, "hsmkms: %v\n", err)
	switch {
	case errors.Is(err, hsm.ErrLogin):
		return ExitAuth
	case errors.Is(err, hsm.ErrKeyNotFound), errors.Is(err, errTokenNotFound):
		return ExitNotFound
	case errors.Is(err, hsm.ErrUnavailable):
		return ExitUnavailable
	}
	return ExitError
}

var errTokenNotFound = errors.New("token not found")
