package hsm

import (
	"bytes"
	"errors"
	"testing"

	"github.com/miekg/pkcs11"
)

// TestRandomPool proves that data keys and XKS IVs of up to maxPooled
// bytes come from one C_GenerateRandom of randomBlock bytes per block, each
// byte handed out once, and that larger draws go to the token directly:
// counted through the fault wrapper, on the real token.
func TestRandomPool(t *testing.T) {
	tok, f := openFaulty(t)
	id := newVersionKey(t, tok)
	eachSealMech(t, tok, f, func(t *testing.T, m sealMech) { testRandomPool(t, tok, f, id, m) })
}

func testRandomPool(t *testing.T, tok *Token, f *faulty, id ObjectID, m sealMech) {
	ctx := t.Context()
	iv := m.iv(t)
	aad := []byte("aad")
	tok.random.clear()

	seen := map[string]bool{}
	draw := func(n int) {
		t.Helper()
		dk, _, err := m.sealDataKey(ctx, tok, id, n, iv, aad)
		if err != nil {
			t.Fatal(err)
		}
		if len(dk) != n || seen[string(dk)] {
			t.Fatalf("data key of %d bytes: %x, drawn before: %v", n, dk, seen[string(dk)])
		}
		seen[string(dk)] = true
	}
	before := f.count("GenerateRandom")
	const keys = 100 // 3200 bytes: four blocks of 1024
	for range keys {
		draw(32)
	}
	if got := f.count("GenerateRandom") - before; got != (keys*32+randomBlock-1)/randomBlock {
		t.Errorf("%d data keys of 32 bytes made %d C_GenerateRandom calls, want %d", keys, got, (keys*32+randomBlock-1)/randomBlock)
	}

	// A draw that does not fit what is left starts a new block: the
	// leftover is dropped, never handed out with the new block's bytes.
	tok.random.mu.Lock()
	left := len(tok.random.buf) - tok.random.off
	tok.random.mu.Unlock()
	before = f.count("GenerateRandom")
	draw(left + 1)
	if got := f.count("GenerateRandom") - before; got != 1 {
		t.Errorf("a draw of %d bytes with %d left made %d C_GenerateRandom calls, want 1", left+1, left, got)
	}

	before = f.count("GenerateRandom")
	for range 3 {
		if m.feature == "aes-gcm" {
			if _, _, err := tok.SealWithTokenIV(ctx, id, aad, []byte("plaintext")); err != nil {
				t.Fatal(err)
			}
		}
		draw(maxPooled + 1)
	}
	if got := f.count("GenerateRandom") - before; got != 3 {
		t.Errorf("3 data keys of %d bytes (and on aes-gcm 3 XKS IVs) made %d C_GenerateRandom calls, want 3 (the keys')", maxPooled+1, got)
	}

	// Every byte handed out is zeroed in the pool.
	tok.random.mu.Lock()
	used := tok.random.buf[:tok.random.off]
	tok.random.mu.Unlock()
	if len(used) == 0 || !bytes.Equal(used, make([]byte, len(used))) {
		t.Errorf("the pool keeps %d bytes it handed out, not all zero: %x", len(used), used)
	}
}

// TestRandomPoolRefillFails proves that a refill the token refuses fails
// the data key it was for with the token's error, hands out nothing, and
// that the next draw refills and works.
func TestRandomPoolRefillFails(t *testing.T) {
	tok, f := openFaulty(t)
	id := newVersionKey(t, tok)
	eachSealMech(t, tok, f, func(t *testing.T, m sealMech) {
		ctx := t.Context()
		iv := m.iv(t)
		tok.random.clear()
		f.inject("GenerateRandom", pkcs11.Error(pkcs11.CKR_FUNCTION_FAILED))
		before := allCounts(f)
		dk, sealed, err := m.sealDataKey(ctx, tok, id, 32, iv, []byte("aad"))
		if !errors.Is(err, ErrToken) || dk != nil || sealed != nil {
			t.Fatalf("SealDataKey%s with the refill refused = %x, %x, %v; want nothing and ErrToken", m.suffix, dk, sealed, err)
		}
		after := allCounts(f)
		for _, op := range []string{"EncryptInit", "SignInit"} {
			if after[op] != before[op] {
				t.Errorf("C_%s called after the refill failed", op)
			}
		}
		if dk, _, err := m.sealDataKey(ctx, tok, id, 32, iv, []byte("aad")); err != nil || len(dk) != 32 {
			t.Fatalf("SealDataKey%s after the failed refill = %d bytes, %v", m.suffix, len(dk), err)
		}
	})
}

// TestRandomPoolClearedOnClose proves that closing the token zeroes and
// drops the bytes drawn ahead.
func TestRandomPoolClearedOnClose(t *testing.T) {
	tok, err := Open(t.Context(), testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.GenerateRandom(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	// A token's own draw: the pool is the same for every mechanism.
	tok.mu.RLock()
	s, err := tok.pool.get(t.Context())
	tok.mu.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	_, err = tok.drawRandom(s, 32)
	tok.pool.put(s)
	if err != nil {
		t.Fatal(err)
	}
	tok.random.mu.Lock()
	held := tok.random.buf
	tok.random.mu.Unlock()
	if len(held) != randomBlock {
		t.Fatalf("the pool holds %d bytes after a draw, want %d", len(held), randomBlock)
	}
	if err := tok.Close(); err != nil {
		t.Fatal(err)
	}
	if tok.random.buf != nil || !bytes.Equal(held, make([]byte, len(held))) {
		t.Errorf("after Close the pool holds %d bytes; its old block is all zero: %v", len(tok.random.buf), bytes.Equal(held, make([]byte, len(held))))
	}
}
