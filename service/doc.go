// Package service owns hsmkms's keys as clients see them: the key registry,
// versions and rotation, aliases, policies, audit, the stores that persist
// them and the HTTP APIs. It never touches PKCS#11 directly; every operation
// with key material goes through package hsm.
package service
