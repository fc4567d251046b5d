package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"syscall"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/hsmkms/hsmkms/hsm"
	"github.com/hsmkms/hsmkms/service/api/adminclient"
	"github.com/hsmkms/hsmkms/service/store"
	"github.com/urfave/cli/v2"
)

// exitCode prints err on one line and maps it to one of the Exit codes.
func exitCode(err error, stderr io.Writer) int {
	msg, code := exitOf(err)
	if msg != "" {
		// Errors from libraries (pgx's per-address dial errors, say) may
		// span several lines; a script reading hsmkms's standard error
		// expects one line per failure.
		io.WriteString(stderr, oneLine(msg)+"\n")
	}
	return code
}

// exitOf is the message exitCode prints for err and its exit code.
func exitOf(err error) (string, int) {
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return err.Error(), ec.ExitCode()
	}
	if certificateError(err) {
		return fmt.Sprintf("hsmkms: the server's TLS certificate is not trusted (%v): give --ca-bundle FILE with the CA that signed it, or use the host name the certificate names", certificateCause(err)), ExitUnavailable
	}
	if noCredentials(err) {
		return "hsmkms: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give --credentials-file or --profile", ExitAuth
	}
	msg := fmt.Sprintf("hsmkms: %v", err)
	code := apiCode(err)
	switch {
	case errors.Is(err, hsm.ErrLogin), authCodes[code]:
		return msg, ExitAuth
	case errors.Is(err, hsm.ErrKeyNotFound), code == "NotFoundException", errors.Is(err, fs.ErrNotExist):
		return msg, ExitNotFound
	case errors.Is(err, hsm.ErrUnavailable), errors.Is(err, store.ErrUnavailable),
		code == "DependencyTimeoutException", unreachable(err), isNotKMS(err):
		return msg, ExitUnavailable
	}
	return msg, ExitError
}

// noCredentials reports a request the SDK did not send for want of
// credentials. The SDK has no type for it: older versions fail signing
// (v4.SigningError), newer ones resolving the identity ("get identity: get
// credentials").
func noCredentials(err error) bool {
	var se *v4.SigningError
	return errors.As(err, &se) || strings.Contains(err.Error(), "get identity: get credentials")
}

// authCodes are the error codes of a server that refuses the credentials
// or what they ask for.
var authCodes = map[string]bool{
	"UnrecognizedClientException":         true,
	"InvalidSignatureException":           true,
	"IncompleteSignatureException":        true,
	"MissingAuthenticationTokenException": true,
	"AccessDeniedException":               true,
}

// apiCode returns the AWS error code of a server's answer, from the AWS
// SDK or from adminclient, or "" when err is no such answer.
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	var ce *adminclient.Error
	if errors.As(err, &ce) {
		return ce.Type
	}
	return ""
}

// notKMS describes an answer that is not the KMS protocol's (a web
// server, a proxy's error page): the SDK calls it "UnknownError".
func notKMS(err error) (string, bool) {
	var re *smithyhttp.ResponseError
	// A failure before any answer (nothing listening) has status 0.
	if !errors.As(err, &re) || re.Response == nil || re.HTTPStatusCode() == 0 {
		return "", false
	}
	ct := re.Response.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "application/x-amz-json") || strings.HasPrefix(ct, "application/json") {
		return "", false
	}
	if ct == "" {
		ct = "no content type"
	}
	return fmt.Sprintf("the endpoint did not answer as a KMS server (HTTP %d, %s): check --endpoint", re.HTTPStatusCode(), ct), true
}

func isNotKMS(err error) bool { _, ok := notKMS(err); return ok }

// unreachable reports whether err is a failure to connect to the server.
func unreachable(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// callError is a failed server call, named by what it was about: "key
// alias/foo", "alias alias/foo", "principal AKIA…", or the operation, such
// as "list keys".
type callError struct {
	what string
	err  error
}

func (e *callError) Error() string { return e.what + ": " + brief(e.err) }

// Unwrap returns the SDK's or adminclient's error.
func (e *callError) Unwrap() error { return e.err }

// brief shortens a server's answer to its code and message, and a failed
// connection to the connection's error, leaving out the SDK's wrapping
// (operation, request ID, attempts).
func brief(err error) string {
	if msg, ok := notKMS(err); ok {
		return msg
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if msg := ae.ErrorMessage(); msg != "" {
			return ae.ErrorCode() + ": " + msg
		}
		return ae.ErrorCode()
	}
	var ce *adminclient.Error
	if errors.As(err, &ce) {
		return ce.Error()
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return "cannot reach the server: " + oe.Error()
	}
	return err.Error()
}

// oneLine joins the lines of msg with "; ", dropping each line's leading
// whitespace and empty lines.
func oneLine(msg string) string {
	lines := strings.FieldsFunc(msg, func(r rune) bool { return r == '\n' || r == '\r' })
	kept := lines[:0]
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			kept = append(kept, strings.TrimSuffix(l, ":"))
		}
	}
	return strings.Join(kept, "; ")
}
