package repo

import (
	"bytes"
	"encoding/binary"
)

// x86 code filter. x86 machine code calls a function with E8 followed by a
// 32-bit displacement relative to the next instruction, and x86-64 code
// takes a global's address the same way (lea with a REX.W prefix and
// RIP-relative addressing), so the many calls of one function, or uses of
// one variable, from different places carry different bytes and zstd finds
// no match between them. Rewriting each displacement into a position
// within the frame (the next instruction's offset + displacement) makes
// them identical. On the bench source (ext4 of /usr/lib) this shrinks the
// compressed data by 2.9% (calls 2.2%, lea 0.7%); rewriting RIP-relative
// mov as well gained under 0.1% for twice the scanning, and jumps and
// conditional jumps made the data larger (their targets are near already).
// Both passes find their opcode with bytes.IndexByte, so they cost about a
// hundredth of the compression's time. Measurements: docs/BENCHMARKS.md.
//
// Data that is not x86 code has few such patterns, and a wrongly rewritten
// one only costs a little compression, never correctness: each pass is a
// bijection on every input, undone (in reverse order) after decompression,
// and a chunk's id is still checked on the bytes it restores.
//
// The passes, each applied the same way in both directions so that the
// decoder makes exactly the encoder's choices, scanning from the start:
//
//   - calls: E8 at i with 4 bytes after it. When the last of them, b[i+4],
//     is 0x00 or 0xFF (a displacement within ±16 MiB), the displacement d
//     at i+1 becomes (d + i + 5) mod 2^25, sign extended to 32 bits; then,
//     rewritten or not, the scan goes on at i+5.
//   - lea: 8D at i after 48 or 4C (b[i-1]) and before a RIP-relative ModRM
//     byte (b[i+1]&0xC7 == 0x05), with the displacement at i+2 and the next
//     instruction at i+6: the same rewrite when b[i+5] is 0x00 or 0xFF, and
//     the scan goes on at i+7, so that the next match's b[i-1] lies outside
//     the bytes just rewritten.
//
// Every byte a decision reads is one that no other rewrite of the pass
// changes, and a rewritten top byte is again 0x00 or 0xFF, so decoding
// sees the encoder's choices.

// filterCalls applies the filter to frame in place (encode true) or undoes
// it (encode false).
func filterCalls(frame []byte, encode bool) {
	if encode {
		filterCallPass(frame, true)
		filterLeaPass(frame, true)
		return
	}
	filterLeaPass(frame, false)
	filterCallPass(frame, false)
}

func filterCallPass(frame []byte, encode bool) {
	for i := 0; ; i += 5 {
		j := bytes.IndexByte(frame[i:], 0xE8)
		if j < 0 {
			return
		}
		i += j
		if i+5 > len(frame) {
			return
		}
		rewrite(frame, i+1, i+5, encode)
	}
}

func filterLeaPass(frame []byte, encode bool) {
	for i := 1; i < len(frame); {
		j := bytes.IndexByte(frame[i:], 0x8D)
		if j < 0 {
			return
		}
		i += j
		if i+6 > len(frame) {
			return
		}
		if frame[i-1]&^0x04 != 0x48 || frame[i+1]&0xC7 != 0x05 {
			i++
			continue
		}
		rewrite(frame, i+2, i+6, encode)
		i += 7
	}
}

// rewrite turns the displacement at frame[at:at+4] into a position (next is
// the offset of the instruction after it) or back, when its top byte says
// it lies within ±16 MiB.
func rewrite(frame []byte, at, next int, encode bool) {
	if top := frame[at+3]; top != 0 && top != 0xFF {
		return
	}
	v := binary.LittleEndian.Uint32(frame[at:])
	if encode {
		v += uint32(next)
	} else {
		v -= uint32(next)
	}
	v &= 1<<25 - 1
	if v&(1<<24) != 0 {
		v |= ^uint32(1<<25 - 1)
	}
	binary.LittleEndian.PutUint32(frame[at:], v)
}
