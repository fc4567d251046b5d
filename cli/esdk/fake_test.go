package esdk

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"maps"
	"sync"
)

const testARN = "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-4000-8000-000000000001"

// fakeKMS is an in-memory KMS: GenerateDataKey makes a random data key and
// a random blob that names it; Decrypt returns the key only for the same
// blob, ARN and encryption context. It keeps every plaintext key slice it
// hands out, so that tests can check the package zeroed them.
type fakeKMS struct {
	mu      sync.Mutex
	arn     string
	fixed   []byte // when set, the data key GenerateDataKey returns
	blob    []byte // when set, the blob GenerateDataKey returns
	entries map[string]fakeEntry
	handed  [][]byte
	fail    error
}

type fakeEntry struct {
	key    []byte
	arn    string
	encCtx map[string]string
}

func newFakeKMS() *fakeKMS { return &fakeKMS{arn: testARN, entries: map[string]fakeEntry{}} }

func (f *fakeKMS) GenerateDataKey(_ context.Context, _ string, encCtx map[string]string) ([]byte, []byte, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, nil, "", f.fail
	}
	key := bytes.Clone(f.fixed)
	if key == nil {
		key = make([]byte, 32)
		rand.Read(key)
	}
	blob := bytes.Clone(f.blob)
	if blob == nil {
		blob = make([]byte, 40)
		rand.Read(blob)
	}
	f.entries[string(blob)] = fakeEntry{key: bytes.Clone(key), arn: f.arn, encCtx: maps.Clone(encCtx)}
	f.handed = append(f.handed, key)
	return key, blob, f.arn, nil
}

// Encrypt stores dataKey under a random blob for keyID: its ARN when it is
// one, the fake's ARN otherwise.
func (f *fakeKMS) Encrypt(_ context.Context, keyID string, dataKey []byte, encCtx map[string]string) ([]byte, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, "", f.fail
	}
	arn := f.arn
	if validKeyARN(keyID) {
		arn = keyID
	}
	blob := make([]byte, 40)
	rand.Read(blob)
	f.entries[string(blob)] = fakeEntry{key: bytes.Clone(dataKey), arn: arn, encCtx: maps.Clone(encCtx)}
	return blob, arn, nil
}

func (f *fakeKMS) Decrypt(_ context.Context, blob []byte, keyARN string, encCtx map[string]string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.entries[string(blob)]
	switch {
	case !ok:
		return nil, errors.New("fake KMS: InvalidCiphertextException")
	case e.arn != keyARN:
		return nil, errors.New("fake KMS: IncorrectKeyException")
	case !maps.Equal(e.encCtx, encCtx) && (len(e.encCtx) != 0 || len(encCtx) != 0):
		return nil, errors.New("fake KMS: InvalidCiphertextException (encryption context)")
	}
	key := bytes.Clone(e.key)
	f.handed = append(f.handed, key)
	return key, nil
}

// allZeroed reports whether every data key slice handed out is zero now.
func (f *fakeKMS) allZeroed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range f.handed {
		if !bytes.Equal(k, make([]byte, len(k))) {
			return false
		}
	}
	return len(f.handed) > 0
}
