package nfs

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The XDR encoding (RFC 4506) of what this client sends and reads: big
// endian 32-bit units, opaque data and strings padded to four bytes.

// errShort is wrapped by every decoding error: the server's reply ended
// early or announced more than it holds.
var errShort = errors.New("malformed reply: truncated")

// encoder appends XDR values to a buffer.
type encoder struct{ b []byte }

func (e *encoder) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }

func (e *encoder) boolean(v bool) {
	if v {
		e.u32(1)
	} else {
		e.u32(0)
	}
}

// opaque appends variable-length opaque data (also strings).
func (e *encoder) opaque(p []byte) {
	e.u32(uint32(len(p)))
	e.fixed(p)
}

// fixed appends fixed-length opaque data.
func (e *encoder) fixed(p []byte) {
	e.b = append(e.b, p...)
	for len(e.b)%4 != 0 {
		e.b = append(e.b, 0)
	}
}

func (e *encoder) str(s string) { e.opaque([]byte(s)) }

// decoder reads XDR values from a reply. Every read checks the remaining
// length first; the first failure sticks, so a caller may read a whole
// structure and check err once.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w (reading %s)", errShort, what)
	}
}

func (d *decoder) u32() uint32 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 4 {
		d.fail("a 32-bit value")
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) u64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail("a 64-bit value")
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) boolean() bool { return d.u32() != 0 }

// fixed returns n bytes, skipping their padding.
func (d *decoder) fixed(n int) []byte {
	if d.err != nil {
		return nil
	}
	padded := n + (4-n%4)%4
	if n < 0 || padded > len(d.b) {
		d.fail("opaque data")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[padded:]
	return v
}

// opaque returns variable-length opaque data of at most max bytes.
func (d *decoder) opaque(max int) []byte {
	n := d.u32()
	if d.err != nil {
		return nil
	}
	if n > uint32(max) {
		d.err = fmt.Errorf("malformed reply: %d bytes of opaque data, at most %d expected", n, max)
		return nil
	}
	return d.fixed(int(n))
}

func (d *decoder) skip(n int) { d.fixed(n) }
