// Package nss sets up NSS's softoken (libsoftokn3) for tests: a third
// PKCS#11 implementation beside SoftHSM2 and openCryptoki, with AES-GCM,
// AES key wrap, EC and HMAC, and one trait the others lack: it reads its
// configuration only from C_Initialize's pReserved (the database
// directory, token labels), so it tests hsm's module initialisation
// parameters.
//
// A token is a database directory: New makes cert9.db and key4.db in a
// directory of the caller's, labels the key database's token and sets its
// user PIN. Nothing outside the directory is touched, so runs in parallel
// need no lock.
package nss

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"unsafe"

	"github.com/miekg/pkcs11"
)

// ModulePaths lists where distributions install the softoken.
var ModulePaths = []string{
	"/usr/lib/x86_64-linux-gnu/libsoftokn3.so",
	"/usr/lib/aarch64-linux-gnu/libsoftokn3.so",
	"/usr/lib64/libsoftokn3.so",
	"/usr/lib/libsoftokn3.so",
}

// FindModule returns the first of ModulePaths that exists.
func FindModule() (string, error) {
	for _, p := range ModulePaths {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("nss: the softoken is not installed (looked in %s): run softhsm/deps.sh as root, or apt-get install libnss3", strings.Join(ModulePaths, ", "))
}

// FastPBE is the environment setting (NAME=VALUE) that makes the
// softoken derive its database key with one PBKDF2 iteration instead of
// its default: it derives it again on every use of a token key, which
// bounds a database with the default to about 120 operations a second on
// a 2-core machine (3,100 with this). Tests set it in their own process
// before the module is loaded; a real database keeps the default.
const FastPBE = "NSS_MAX_MP_PBE_ITERATION_COUNT=1"

// Token is a softoken database set up by New.
type Token struct {
	ModulePath string
	// InitParams is what hsm passes to C_Initialize for this database.
	InitParams string
	Label      string
	PIN        string
	Dir        string
}

// Params is the softoken's initialisation string for the database in dir,
// whose key token is labelled label; the empty prefixes and secmod mean no
// legacy files.
func Params(dir, label string) string {
	return fmt.Sprintf("configdir='sql:%s' certPrefix='' keyPrefix='' secmod='' dbTokenDescription='%s'", dir, label)
}

// dbSlot is the softoken's slot whose token keeps objects (slot 1 is the
// session-only "Generic Crypto Services").
const dbSlot = 2

// New makes a database in dir (which must exist), labels its key token
// label and sets its user PIN to pin. NSS labels are at most 32 bytes.
func New(dir, label, pin string) (*Token, error) {
	if strings.ContainsAny(dir+label, "'\x00") {
		return nil, errors.New("nss: the directory and label may not contain ' or NUL")
	}
	module, err := FindModule()
	if err != nil {
		return nil, err
	}
	tok := &Token{ModulePath: module, InitParams: Params(dir, label), Label: label, PIN: pin, Dir: dir}
	if err := tok.initPIN(); err != nil {
		return nil, fmt.Errorf("nss: setting up the database in %s: %w", dir, err)
	}
	return tok, nil
}

// initPIN opens the new database and sets its user PIN: a fresh key
// database lets the SO log in with an empty PIN, once.
func (tok *Token) initPIN() error {
	p := pkcs11.New(tok.ModulePath)
	if p == nil {
		return fmt.Errorf("cannot load %s", tok.ModulePath)
	}
	defer p.Destroy()
	params := append([]byte(tok.InitParams), 0)
	if err := p.Initialize(pkcs11.InitializeWithReserved(unsafe.Pointer(&params[0]))); err != nil {
		return fmt.Errorf("C_Initialize: %w", err)
	}
	defer p.Finalize()
	s, err := p.OpenSession(dbSlot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return fmt.Errorf("C_OpenSession: %w", err)
	}
	defer p.CloseSession(s)
	if err := p.Login(s, pkcs11.CKU_SO, ""); err != nil {
		return fmt.Errorf("C_Login as SO: %w", err)
	}
	if err := p.InitPIN(s, tok.PIN); err != nil {
		return fmt.Errorf("C_InitPIN: %w", err)
	}
	return p.Logout(s)
}
