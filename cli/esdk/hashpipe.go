package esdk

import (
	"hash"
)

// hashChunk is the unit a hashPipe hands to its goroutine. Large enough
// that the hand-off (a channel send and a wake-up) is small beside
// hashing it (about 280 µs of SHA-384), small enough that the buffers
// stay out of the way of a file's memory bound.
const hashChunk = 256 << 10

// hashBuffers is how many chunks exist: one being filled, one being
// hashed, one spare so the writer does not wait when both sides run at
// the same speed.
const hashBuffers = 3

// hashPipe computes a running hash on a second goroutine. A signed
// suite's SHA-384 over the whole message costs five times what AES-GCM
// does on CPUs with AES instructions and without SHA-512 ones. Hashing
// beside the cipher instead of after it, the two overlap on a second
// core, and a message costs what its hash costs rather than the sum.
//
// Write copies into a chunk and returns; Sum waits for every chunk
// written before it. close must be called once the pipe is no longer
// needed, on every path, to end the goroutine.
type hashPipe struct {
	h    hash.Hash
	cur  []byte
	full chan []byte // chunks to hash, in order
	free chan []byte // chunks hashed, ready to be filled again
	idle chan struct{}
}

func newHashPipe(h hash.Hash) *hashPipe {
	p := &hashPipe{
		h:    h,
		full: make(chan []byte, hashBuffers),
		free: make(chan []byte, hashBuffers),
		idle: make(chan struct{}),
	}
	for range hashBuffers - 1 {
		p.free <- make([]byte, 0, hashChunk)
	}
	p.cur = make([]byte, 0, hashChunk)
	go p.run()
	return p
}

// run hashes chunks until full is closed. A nil chunk is a flush
// marker: run answers it on idle once every chunk before it is hashed.
func (p *hashPipe) run() {
	for c := range p.full {
		if c == nil {
			p.idle <- struct{}{}
			continue
		}
		p.h.Write(c)
		p.free <- c[:0]
	}
}

// Write adds b to the hash. It never fails.
func (p *hashPipe) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		k := copy(p.cur[len(p.cur):cap(p.cur)], b)
		p.cur, b = p.cur[:len(p.cur)+k], b[k:]
		if len(p.cur) == cap(p.cur) {
			p.send()
		}
	}
	return n, nil
}

// send hands the current chunk to the goroutine and takes a free one.
func (p *hashPipe) send() {
	p.full <- p.cur
	p.cur = <-p.free
}

// Sum appends the hash of everything written so far to b.
func (p *hashPipe) Sum(b []byte) []byte {
	if len(p.cur) > 0 {
		p.send()
	}
	p.full <- nil
	<-p.idle
	return p.h.Sum(b)
}

// close ends the goroutine. The pipe must not be used after.
func (p *hashPipe) close() {
	close(p.full)
}
