package hsm

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// PIN is a token user PIN. It prints, formats and marshals as "[redacted]"
// so that it cannot reach a log line, an error or a config dump by accident;
// only the login code reads its value. The value sits behind a pointer: fmt
// cannot call Format on a PIN inside an unexported field (a Token's Config,
// say) and prints the field raw, which then shows an address, not the PIN.
type PIN struct{ value *string }

const redacted = "[redacted]"

// NewPIN wraps a PIN value.
func NewPIN(value string) PIN { return PIN{value: &value} }

// PINFromFile reads a PIN from the first line of a file. The file should be
// readable by the service user only.
func PINFromFile(path string) (PIN, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return PIN{}, fmt.Errorf("hsm: reading PIN file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimRight(line, "\r")
	if line == "" {
		return PIN{}, fmt.Errorf("hsm: PIN file %s is empty", path)
	}
	return PIN{value: &line}, nil
}

// PINFromEnv reads a PIN from an environment variable.
func PINFromEnv(name string) (PIN, error) {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return PIN{}, fmt.Errorf("hsm: environment variable %s is not set", name)
	}
	return PIN{value: &v}, nil
}

// errNoPIN reports a token configuration without a PIN.
var errNoPIN = errors.New("hsm: no PIN given (use a PIN file or an environment variable)")

// IsZero reports whether no PIN was given.
func (p PIN) IsZero() bool { return p.Reveal() == "" }

// Reveal returns the PIN's value, for C_Login and for the few programs
// that take PINs as arguments (softhsm2-util). Never log what it returns.
func (p PIN) Reveal() string {
	if p.value == nil {
		return ""
	}
	return *p.value
}

// String returns "[redacted]".
func (p PIN) String() string { return redacted }

// GoString returns "[redacted]", so that %#v hides the value too.
func (p PIN) GoString() string { return redacted }

// Format prints "[redacted]" for every verb.
func (p PIN) Format(f fmt.State, _ rune) { f.Write([]byte(redacted)) }

// MarshalText returns "[redacted]", for JSON and other encoders.
func (p PIN) MarshalText() ([]byte, error) { return []byte(redacted), nil }
