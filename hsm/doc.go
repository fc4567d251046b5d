// Package hsm owns the PKCS#11 boundary of hsmkms: loading a module,
// selecting a token by label, logging in, a bounded pool of sessions, and
// every operation that touches key material on the token.
//
// Master keys are AES-256 secret keys generated inside the token as
// sensitive, non-extractable, non-copyable objects; nothing in this package
// reads, wraps or copies them out. Data keys are sealed under a master key
// with AES-GCM (C_Encrypt, an IV the caller makes) or wrapped with AES key
// wrap (RFC 3394). Key pairs for signing are generated on the token with a
// non-extractable private half.
//
// The package survives the ways tokens misbehave: object handles are cached
// by CKA_ID and re-found when stale, a session that failed with a session
// error is evicted, and when the token or module is lost the Token reports
// itself unavailable, fails fast, and re-initialises the module in the
// background (rate-limited) until the token is back.
//
// Every length a caller controls is checked before any cgo call: some
// miekg/pkcs11 calls panic on empty input, and SoftHSM2 accepts an empty GCM
// IV and then encrypts deterministically.
package hsm
