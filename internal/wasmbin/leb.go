package wasmbin

// LEB128 decoding. Every reader takes the buffer already cut at the end of
// the region being decoded (a section or a function body), so running off the
// end of the region is reported as lebEOF rather than read from the next one.
// The encodings are checked the way the spec asks: no more bytes than the
// type needs, and the unused bits of the last byte must be zero (unsigned) or
// copies of the sign bit (signed).

type lebStatus uint8

const (
	lebOK       lebStatus = iota
	lebEOF                // the region ended inside the number
	lebTooLarge           // too many bytes, or bits set beyond the type's width
)

func (s lebStatus) String() string {
	switch s {
	case lebEOF:
		return "unexpected end"
	case lebTooLarge:
		return "integer too large or too long"
	}
	return "ok"
}

// readU32 decodes an unsigned 32-bit LEB128 number at b[p] and returns it and
// the position just after it.
func readU32(b []byte, p int) (uint32, int, lebStatus) {
	if p < len(b) && b[p] < 0x80 {
		return uint32(b[p]), p + 1, lebOK
	}
	return readU32Slow(b, p)
}

func readU32Slow(b []byte, p int) (uint32, int, lebStatus) {
	var v uint32
	for i := 0; i < 5; i++ {
		if p+i >= len(b) {
			return 0, p, lebEOF
		}
		c := b[p+i]
		if i == 4 {
			// Bits 28..31 only; no continuation.
			if c&0xf0 != 0 {
				return 0, p, lebTooLarge
			}
			return v | uint32(c)<<28, p + 5, lebOK
		}
		v |= uint32(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, p + i + 1, lebOK
		}
	}
	panic("unreachable")
}

// readU64 decodes an unsigned 64-bit LEB128 number.
func readU64(b []byte, p int) (uint64, int, lebStatus) {
	var v uint64
	for i := 0; i < 10; i++ {
		if p+i >= len(b) {
			return 0, p, lebEOF
		}
		c := b[p+i]
		if i == 9 {
			if c&0xfe != 0 {
				return 0, p, lebTooLarge
			}
			return v | uint64(c)<<63, p + 10, lebOK
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, p + i + 1, lebOK
		}
	}
	panic("unreachable")
}

// readSigned decodes a signed LEB128 number of the given bit width (32, 33
// or 64) into an int64.
func readSigned(b []byte, p int, bits uint) (int64, int, lebStatus) {
	if p < len(b) && b[p] < 0x80 {
		// One byte: bit 6 is the sign.
		return int64(b[p]) << 57 >> 57, p + 1, lebOK
	}
	maxBytes := int((bits + 6) / 7)
	var v int64
	for i := 0; i < maxBytes; i++ {
		if p+i >= len(b) {
			return 0, p, lebEOF
		}
		c := b[p+i]
		shift := uint(7 * i)
		if i == maxBytes-1 {
			if c&0x80 != 0 {
				return 0, p, lebTooLarge
			}
			// The bits of c from the sign bit of the type upward must all
			// equal that sign bit.
			used := bits - shift // value bits this byte carries, sign included
			mask := byte(0x7f) &^ (byte(1)<<(used-1) - 1)
			if c&mask != 0 && c&mask != mask {
				return 0, p, lebTooLarge
			}
			v |= int64(c&0x7f) << shift
			return v << (64 - bits) >> (64 - bits), p + i + 1, lebOK
		}
		v |= int64(c&0x7f) << shift
		if c < 0x80 {
			// Sign-extend from bit shift+6.
			s := 64 - shift - 7
			return v << s >> s, p + i + 1, lebOK
		}
	}
	panic("unreachable")
}

// appendU32 appends v as unsigned LEB128 in its shortest form.
func appendU32(dst []byte, v uint32) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

// sizeU32 is the length of appendU32's encoding of v.
func sizeU32(v uint32) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// appendSigned32 appends v as signed LEB128 in its shortest form.
func appendSigned32(dst []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(dst, c)
		}
		dst = append(dst, c|0x80)
	}
}

// appendName appends s as a Wasm name: its length, then its bytes.
func appendName(dst []byte, s string) []byte {
	return append(appendU32(dst, uint32(len(s))), s...)
}
