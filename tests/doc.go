// Package tests holds hsmkms's end-to-end tests: they build and run the
// hsmkms binary against a private SoftHSM2 token and drive it with real
// clients.
package tests
