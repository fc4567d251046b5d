package hsm

import (
	"strings"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"
)

// faulty wraps the real module of the token under test and, on demand,
// makes chosen calls fail with the return codes real HSMs produce and the
// software tokens never do (CKR_DEVICE_REMOVED, CKR_SESSION_HANDLE_INVALID,
// …). Calls without an injected fault go to the real module. It also counts
// calls, so tests can prove that bad input never reached the token.
type faulty struct {
	PKCS11
	mu     sync.Mutex
	faults map[string][]error
	calls  map[string]int
	// hide removes mechanisms from GetMechanismList, as a token lacking
	// them would.
	hide map[uint]bool
	// gate, when set for a method, is received from before the call
	// proceeds: a test holds a session busy by not sending.
	gate map[string]chan struct{}
	// nulPad, when set, pads the strings of C_GetTokenInfo and
	// C_GetSlotInfo with NULs instead of blanks, as some modules do.
	nulPad bool
}

// newFaulty returns a faulty wrapper hiding the mechanisms in hide (nil:
// none); its wrap method goes in Config.Wrap.
func newFaulty(hide map[uint]bool) *faulty {
	if hide == nil {
		hide = map[uint]bool{}
	}
	return &faulty{faults: map[string][]error{}, calls: map[string]int{}, hide: hide, gate: map[string]chan struct{}{}}
}

func (f *faulty) wrap(p PKCS11) PKCS11 { f.PKCS11 = p; return f }

// openFaulty opens the package's token through a faulty wrapper.
func openFaulty(t testing.TB, change ...func(*Config)) (*Token, *faulty) {
	t.Helper()
	f := newFaulty(nil)
	change = append([]func(*Config){func(c *Config) { c.Wrap = f.wrap }}, change...)
	return openToken(t, change...), f
}

// inject makes the next len(errs) calls of method fail with errs in turn.
func (f *faulty) inject(method string, errs ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[method] = append(f.faults[method], errs...)
}

// count returns how many times method was called.
func (f *faulty) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

// pending returns how many injected faults of method are still unused.
func (f *faulty) pending(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.faults[method])
}

// setGate makes calls of method wait for a receive on the returned channel.
func (f *faulty) setGate(method string) chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan struct{})
	f.gate[method] = ch
	return ch
}

func (f *faulty) hook(method string) error {
	f.mu.Lock()
	f.calls[method]++
	gate := f.gate[method]
	var err error
	if q := f.faults[method]; len(q) > 0 {
		err, f.faults[method] = q[0], q[1:]
	}
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return err
}

func (f *faulty) Initialize(opts ...pkcs11.InitializeOption) error {
	if err := f.hook("Initialize"); err != nil {
		return err
	}
	return f.PKCS11.Initialize(opts...)
}

func (f *faulty) GetTokenInfo(slot uint) (pkcs11.TokenInfo, error) {
	if err := f.hook("GetTokenInfo"); err != nil {
		return pkcs11.TokenInfo{}, err
	}
	ti, err := f.PKCS11.GetTokenInfo(slot)
	if f.nulPad {
		ti.Label, ti.SerialNumber, ti.ManufacturerID, ti.Model = nulPadded(ti.Label, 32), nulPadded(ti.SerialNumber, 16),
			nulPadded(ti.ManufacturerID, 32), nulPadded(ti.Model, 16)
	}
	return ti, err
}

func (f *faulty) GetSlotInfo(slot uint) (pkcs11.SlotInfo, error) {
	si, err := f.PKCS11.GetSlotInfo(slot)
	if f.nulPad {
		si.SlotDescription, si.ManufacturerID = nulPadded(si.SlotDescription, 64), nulPadded(si.ManufacturerID, 32)
	}
	return si, err
}

// nulPadded is s without its blanks, padded to n bytes with NULs.
func nulPadded(s string, n int) string {
	s = strings.TrimRight(s, " ")
	if len(s) >= n {
		return s
	}
	return s + strings.Repeat("\x00", n-len(s))
}

func (f *faulty) GetMechanismList(slot uint) ([]*pkcs11.Mechanism, error) {
	if err := f.hook("GetMechanismList"); err != nil {
		return nil, err
	}
	list, err := f.PKCS11.GetMechanismList(slot)
	f.mu.Lock()
	defer f.mu.Unlock()
	out := list[:0]
	for _, m := range list {
		if !f.hide[m.Mechanism] {
			out = append(out, m)
		}
	}
	return out, err
}

func (f *faulty) OpenSession(slot uint, flags uint) (pkcs11.SessionHandle, error) {
	if err := f.hook("OpenSession"); err != nil {
		return 0, err
	}
	return f.PKCS11.OpenSession(slot, flags)
}

func (f *faulty) CloseSession(s pkcs11.SessionHandle) error {
	if err := f.hook("CloseSession"); err != nil {
		return err
	}
	return f.PKCS11.CloseSession(s)
}

func (f *faulty) Login(s pkcs11.SessionHandle, userType uint, pin string) error {
	if err := f.hook("Login"); err != nil {
		return err
	}
	return f.PKCS11.Login(s, userType, pin)
}

func (f *faulty) FindObjectsInit(s pkcs11.SessionHandle, t []*pkcs11.Attribute) error {
	if err := f.hook("FindObjectsInit"); err != nil {
		return err
	}
	return f.PKCS11.FindObjectsInit(s, t)
}

func (f *faulty) EncryptInit(s pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error {
	if err := f.hook("EncryptInit"); err != nil {
		return err
	}
	return f.PKCS11.EncryptInit(s, m, o)
}

func (f *faulty) Encrypt(s pkcs11.SessionHandle, msg []byte) ([]byte, error) {
	if err := f.hook("Encrypt"); err != nil {
		return nil, err
	}
	return f.PKCS11.Encrypt(s, msg)
}

func (f *faulty) DecryptInit(s pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error {
	if err := f.hook("DecryptInit"); err != nil {
		return err
	}
	return f.PKCS11.DecryptInit(s, m, o)
}

func (f *faulty) Decrypt(s pkcs11.SessionHandle, c []byte) ([]byte, error) {
	if err := f.hook("Decrypt"); err != nil {
		return nil, err
	}
	return f.PKCS11.Decrypt(s, c)
}

func (f *faulty) GenerateRandom(s pkcs11.SessionHandle, n int) ([]byte, error) {
	if err := f.hook("GenerateRandom"); err != nil {
		return nil, err
	}
	return f.PKCS11.GenerateRandom(s, n)
}

func (f *faulty) GenerateKey(s pkcs11.SessionHandle, m []*pkcs11.Mechanism, t []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	if err := f.hook("GenerateKey"); err != nil {
		return 0, err
	}
	return f.PKCS11.GenerateKey(s, m, t)
}

func (f *faulty) GenerateKeyPair(s pkcs11.SessionHandle, m []*pkcs11.Mechanism, pub, priv []*pkcs11.Attribute) (pkcs11.ObjectHandle, pkcs11.ObjectHandle, error) {
	if err := f.hook("GenerateKeyPair"); err != nil {
		return 0, 0, err
	}
	return f.PKCS11.GenerateKeyPair(s, m, pub, priv)
}

func (f *faulty) GetAttributeValue(s pkcs11.SessionHandle, o pkcs11.ObjectHandle, a []*pkcs11.Attribute) ([]*pkcs11.Attribute, error) {
	if err := f.hook("GetAttributeValue"); err != nil {
		return nil, err
	}
	return f.PKCS11.GetAttributeValue(s, o, a)
}

func (f *faulty) DestroyObject(s pkcs11.SessionHandle, o pkcs11.ObjectHandle) error {
	if err := f.hook("DestroyObject"); err != nil {
		return err
	}
	return f.PKCS11.DestroyObject(s, o)
}

func (f *faulty) WrapKey(s pkcs11.SessionHandle, m []*pkcs11.Mechanism, w, k pkcs11.ObjectHandle) ([]byte, error) {
	if err := f.hook("WrapKey"); err != nil {
		return nil, err
	}
	return f.PKCS11.WrapKey(s, m, w, k)
}

func (f *faulty) UnwrapKey(s pkcs11.SessionHandle, m []*pkcs11.Mechanism, u pkcs11.ObjectHandle, w []byte, a []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	if err := f.hook("UnwrapKey"); err != nil {
		return 0, err
	}
	return f.PKCS11.UnwrapKey(s, m, u, w, a)
}

func (f *faulty) SignInit(s pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error {
	if err := f.hook("SignInit"); err != nil {
		return err
	}
	return f.PKCS11.SignInit(s, m, o)
}

func (f *faulty) Sign(s pkcs11.SessionHandle, msg []byte) ([]byte, error) {
	if err := f.hook("Sign"); err != nil {
		return nil, err
	}
	return f.PKCS11.Sign(s, msg)
}

func (f *faulty) Verify(s pkcs11.SessionHandle, data, sig []byte) error {
	if err := f.hook("Verify"); err != nil {
		return err
	}
	return f.PKCS11.Verify(s, data, sig)
}

func (f *faulty) VerifyInit(s pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error {
	if err := f.hook("VerifyInit"); err != nil {
		return err
	}
	return f.PKCS11.VerifyInit(s, m, o)
}

// raw returns the real module under tok, with the calls the hsm package
// deliberately does not make (C_CopyObject, C_SetAttributeValue,
// C_CreateObject of key values): tests use them to attack master keys and
// to import known-answer keys.
func raw(t testing.TB, tok *Token) *pkcs11.Ctx {
	t.Helper()
	p := tok.p
	if f, ok := p.(*faulty); ok {
		p = f.PKCS11
	}
	ctx, ok := p.(*pkcs11.Ctx)
	if !ok {
		t.Fatalf("module is a %T, not *pkcs11.Ctx", p)
	}
	return ctx
}

// session borrows a session from tok's pool for a test's raw calls and
// returns it when the test ends.
func session(t testing.TB, tok *Token) pkcs11.SessionHandle {
	t.Helper()
	tok.mu.RLock()
	defer tok.mu.RUnlock()
	s, err := tok.pool.get(t.Context())
	if err != nil {
		t.Fatalf("borrowing a session: %v", err)
	}
	p := tok.pool
	t.Cleanup(func() { p.put(s) })
	return s
}

// total counts every call made through f.
func (f *faulty) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}
