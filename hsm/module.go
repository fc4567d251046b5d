package hsm

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"github.com/miekg/pkcs11"
)

// ModuleConfig says which PKCS#11 library to load.
type ModuleConfig struct {
	// Path of the PKCS#11 shared library.
	Path string
	// InitParams, when not empty, is passed to C_Initialize as a
	// NUL-terminated string in CK_C_INITIALIZE_ARGS.pReserved, which the
	// standard reserves but some modules read their configuration from:
	// NSS's softoken takes "configdir='sql:DIR' …" there and nothing else.
	// It is not a secret: it is logged and shown by diagnostics.
	InitParams string
	// Logger receives the module's events; nil means no logging.
	Logger hclog.Logger
	// Wrap, when set, wraps the loaded library before any call. Tests use it
	// to inject the faults a real token produces but SoftHSM2 does not.
	Wrap func(PKCS11) PKCS11
}

// Module is a loaded and initialised PKCS#11 library. A process has one
// Module per library: it alone initialises and finalises the library, and
// OpenModule refuses a library that something else in the process already
// initialised (C_Finalize by one owner would pull the sessions from under
// the other).
type Module struct {
	path string
	p    PKCS11
	log  hclog.Logger
	// params is InitParams with its NUL, kept for every C_Initialize.
	params []byte
}

// OpenModule loads the library at cfg.Path and initialises it.
func OpenModule(cfg ModuleConfig) (*Module, error) {
	if cfg.Path == "" {
		return nil, errors.New("hsm: no PKCS#11 module path given")
	}
	ctx := pkcs11.New(cfg.Path)
	if ctx == nil {
		return nil, loadError{cfg.Path}
	}
	var p PKCS11 = ctx
	if cfg.Wrap != nil {
		p = cfg.Wrap(p)
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if strings.ContainsRune(cfg.InitParams, 0) {
		p.Destroy()
		return nil, errors.New("hsm: the module's initialisation parameters contain a NUL byte")
	}
	m := &Module{path: cfg.Path, p: p, log: log.Named("pkcs11")}
	if cfg.InitParams != "" {
		m.params = append([]byte(cfg.InitParams), 0)
	}
	if err := m.initialize(); err != nil {
		p.Destroy()
		if isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			return nil, fmt.Errorf("hsm: module %s is already initialised in this process by another owner", cfg.Path)
		}
		// Modules fronting a daemon or a network device fail here when it is
		// away: openCryptoki without pkcsslotd says CKR_FUNCTION_FAILED.
		return nil, newError("initialise module", ErrUnavailable, fmt.Errorf(
			"C_Initialize of %s failed (%w): is the service the module needs running (openCryptoki's pkcsslotd, Luna's NTLS link, nShield's hardserver)?", cfg.Path, err))
	}
	return m, nil
}

// Path is the library's file path.
func (m *Module) Path() string { return m.path }

// Close finalises and unloads the library.
func (m *Module) Close() error {
	err := m.p.Finalize()
	m.p.Destroy()
	if err != nil && !isCode(err, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED) {
		return fmt.Errorf("hsm: finalising module: %w", err)
	}
	return nil
}

// reinitialize finalises and initialises the library again: the only way a
// PKCS#11 application sees a token that was removed, re-created or
// re-initialised by another process. Every session and handle is lost.
func (m *Module) reinitialize() error {
	if err := m.p.Finalize(); err != nil && !isCode(err, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED) {
		m.log.Warn("finalize before re-initialise failed", "error", err)
	}
	if err := m.initialize(); err != nil && !isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		return err
	}
	return nil
}

// initialize calls C_Initialize with OS locking and, when given, the
// module's initialisation parameters. The parameters are Go memory passed
// for the call's duration only: modules that read them (NSS) copy what
// they parse.
func (m *Module) initialize() error {
	if m.params == nil {
		return m.p.Initialize()
	}
	return m.p.Initialize(pkcs11.InitializeWithReserved(unsafe.Pointer(&m.params[0])))
}

// ModuleInfo describes the library (C_GetInfo).
type ModuleInfo struct {
	Path               string `json:"path"`
	CryptokiVersion    string `json:"cryptoki_version"`
	Manufacturer       string `json:"manufacturer"`
	LibraryDescription string `json:"library_description"`
	LibraryVersion     string `json:"library_version"`
}

// Info returns what the library says of itself.
func (m *Module) Info() (ModuleInfo, error) {
	i, err := m.p.GetInfo()
	if err != nil {
		return ModuleInfo{}, fmt.Errorf("hsm: C_GetInfo: %w", err)
	}
	return ModuleInfo{
		Path:               m.path,
		CryptokiVersion:    fmt.Sprintf("%d.%d", i.CryptokiVersion.Major, i.CryptokiVersion.Minor),
		Manufacturer:       unpad(i.ManufacturerID),
		LibraryDescription: unpad(i.LibraryDescription),
		LibraryVersion:     fmt.Sprintf("%d.%d", i.LibraryVersion.Major, i.LibraryVersion.Minor),
	}, nil
}

// Slot is one slot of the module and, when present, its token.
type Slot struct {
	ID           uint       `json:"slot_id"`
	Description  string     `json:"description"`
	Manufacturer string     `json:"manufacturer"`
	Flags        []string   `json:"flags"`
	Token        *TokenInfo `json:"token,omitempty"`
}

// TokenInfo is what a token says of itself (C_GetTokenInfo).
type TokenInfo struct {
	SlotID             uint     `json:"slot_id"`
	Label              string   `json:"label"`
	Serial             string   `json:"serial"`
	Manufacturer       string   `json:"manufacturer"`
	Model              string   `json:"model"`
	Flags              []string `json:"flags"`
	Initialized        bool     `json:"initialized"`
	SessionCount       uint     `json:"session_count"`
	MaxSessionCount    uint     `json:"max_session_count"`
	RwSessionCount     uint     `json:"rw_session_count"`
	MaxRwSessionCount  uint     `json:"max_rw_session_count"`
	HardwareVersion    string   `json:"hardware_version"`
	FirmwareVersion    string   `json:"firmware_version"`
	FreePrivateMemory  uint     `json:"free_private_memory"`
	TotalPrivateMemory uint     `json:"total_private_memory"`
}

// Slots lists every slot of the module with its token, if any.
func (m *Module) Slots() ([]Slot, error) {
	ids, err := m.p.GetSlotList(false)
	if err != nil {
		return nil, fmt.Errorf("hsm: C_GetSlotList: %w", err)
	}
	slots := make([]Slot, 0, len(ids))
	for _, id := range ids {
		si, err := m.p.GetSlotInfo(id)
		if err != nil {
			return nil, fmt.Errorf("hsm: C_GetSlotInfo(%d): %w", id, err)
		}
		s := Slot{
			ID:           id,
			Description:  unpad(si.SlotDescription),
			Manufacturer: unpad(si.ManufacturerID),
			Flags:        flagNames(si.Flags, slotFlagNames),
		}
		if si.Flags&pkcs11.CKF_TOKEN_PRESENT != 0 {
			ti, err := m.tokenInfo(id)
			if err != nil {
				return nil, err
			}
			s.Token = &ti
		}
		slots = append(slots, s)
	}
	return slots, nil
}

func (m *Module) tokenInfo(slot uint) (TokenInfo, error) {
	ti, err := getTokenInfo(m.p, slot)
	if err != nil {
		return TokenInfo{}, fmt.Errorf("hsm: C_GetTokenInfo(%d): %w", slot, err)
	}
	return TokenInfo{
		SlotID:             slot,
		Label:              unpad(ti.Label),
		Serial:             unpad(ti.SerialNumber),
		Manufacturer:       unpad(ti.ManufacturerID),
		Model:              unpad(ti.Model),
		Flags:              flagNames(ti.Flags, tokenFlagNames),
		Initialized:        ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0,
		SessionCount:       ti.SessionCount,
		MaxSessionCount:    ti.MaxSessionCount,
		RwSessionCount:     ti.RwSessionCount,
		MaxRwSessionCount:  ti.MaxRwSessionCount,
		HardwareVersion:    fmt.Sprintf("%d.%d", ti.HardwareVersion.Major, ti.HardwareVersion.Minor),
		FirmwareVersion:    fmt.Sprintf("%d.%d", ti.FirmwareVersion.Major, ti.FirmwareVersion.Minor),
		FreePrivateMemory:  ti.FreePrivateMemory,
		TotalPrivateMemory: ti.TotalPrivateMemory,
	}, nil
}

// findToken returns the slot holding the initialised token labelled label
// (and with serial serial, when that is not empty). Labels are what
// operators name tokens by: slot IDs change when SoftHSM2 re-initialises a
// token, and differ between HSM partitions.
func (m *Module) findToken(label, serial string) (uint, TokenInfo, error) {
	ids, err := m.p.GetSlotList(true)
	if err != nil {
		return 0, TokenInfo{}, fmt.Errorf("C_GetSlotList: %w", err)
	}
	var found []TokenInfo
	for _, id := range ids {
		ti, err := m.tokenInfo(id)
		if err != nil {
			continue // a token that cannot describe itself cannot be the one asked for
		}
		if ti.Label == label && (serial == "" || ti.Serial == serial) && ti.Initialized {
			found = append(found, ti)
		}
	}
	switch len(found) {
	case 0:
		if serial != "" {
			return 0, TokenInfo{}, fmt.Errorf("no token labelled %q with serial %q", label, serial)
		}
		return 0, TokenInfo{}, fmt.Errorf("no token labelled %q", label)
	case 1:
		return found[0].SlotID, found[0], nil
	}
	return 0, TokenInfo{}, fmt.Errorf("%d tokens are labelled %q: give the serial too", len(found), label)
}

// Mechanism is one mechanism a token supports, with its flags.
type Mechanism struct {
	Type       uint     `json:"type"`
	Name       string   `json:"name"`
	MinKeySize uint     `json:"min_key_size"`
	MaxKeySize uint     `json:"max_key_size"`
	Flags      []string `json:"flags"`
	flags      uint
}

// Mechanisms lists the mechanisms of the token in slot.
func (m *Module) Mechanisms(slot uint) ([]Mechanism, error) {
	list, err := m.p.GetMechanismList(slot)
	if err != nil {
		return nil, fmt.Errorf("hsm: C_GetMechanismList(%d): %w", slot, err)
	}
	out := make([]Mechanism, 0, len(list))
	for _, mech := range list {
		info, err := m.p.GetMechanismInfo(slot, []*pkcs11.Mechanism{mech})
		if err != nil {
			return nil, fmt.Errorf("hsm: C_GetMechanismInfo(%s): %w", MechanismName(mech.Mechanism), err)
		}
		out = append(out, Mechanism{
			Type:       mech.Mechanism,
			Name:       MechanismName(mech.Mechanism),
			MinKeySize: info.MinKeySize,
			MaxKeySize: info.MaxKeySize,
			Flags:      flagNames(info.Flags, mechanismFlagNames),
			flags:      info.Flags,
		})
	}
	return out, nil
}

// tokenInfoRetries are the pauses before asking C_GetTokenInfo again after
// CKR_GENERAL_ERROR. SoftHSM2 answers that while another process sharing
// the token directory rewrites the token's file (measured: a replica of
// TestReplicas failed to start so in about 1 run in 16, three replicas
// starting at once).
var tokenInfoRetries = [...]time.Duration{10 * time.Millisecond, 50 * time.Millisecond, 200 * time.Millisecond}

// getTokenInfo is C_GetTokenInfo, asked again after a transient
// CKR_GENERAL_ERROR.
func getTokenInfo(p PKCS11, slot uint) (pkcs11.TokenInfo, error) {
	ti, err := p.GetTokenInfo(slot)
	for _, d := range tokenInfoRetries {
		if !errors.Is(err, pkcs11.Error(pkcs11.CKR_GENERAL_ERROR)) {
			break
		}
		time.Sleep(d)
		ti, err = p.GetTokenInfo(slot)
	}
	return ti, err
}
