package wasmbin

import "fmt"

// The instruction scanner walks an expression (a function body or a constant
// expression) one instruction at a time, checking that every immediate is
// well formed and that blocks nest, without decoding types or validating the
// operand stack: that is the runtime's job. It is table-driven and does not
// allocate, apart from growing the caller's slice of loop positions.

// Immediate classes of the one-byte opcodes.
const (
	opInvalid  uint8 = iota
	opNone           // no immediate
	opBlock          // block, if, try: block type; opens a block
	opLoop           // loop: block type; opens a block
	opEnd            // end: closes a block or the expression
	opDelegate       // legacy delegate: label; closes the try it ends
	opU32            // one u32 index
	opU32x2          // two u32 indices
	opBrTable        // vec(label) label
	opMemarg         // memarg
	opI32Const       // sleb32
	opI64Const       // sleb64
	opF32Const       // 4 bytes
	opF64Const       // 8 bytes
	opSelectT        // vec(valtype)
	opRefNull        // heap type
	opTryTable       // block type, vec(catch); opens a block
	opTableSet       // table.set: table index; mutates a table
	opPrefixFC       // bulk memory, reference types, saturating truncation
	opPrefixFD       // SIMD
	opPrefixFE       // threads
)

var opClass = func() (t [256]uint8) {
	set := func(c uint8, ops ...int) {
		for _, op := range ops {
			t[op] = c
		}
	}
	span := func(c uint8, lo, hi int) {
		for op := lo; op <= hi; op++ {
			t[op] = c
		}
	}
	set(opNone, 0x00, 0x01, 0x05, 0x0a, 0x0f, 0x19, 0x1a, 0x1b, 0xd1, 0xd4)
	set(opBlock, 0x02, 0x04, 0x06)
	set(opLoop, 0x03)
	set(opEnd, 0x0b)
	set(opDelegate, 0x18)
	// catch, throw, rethrow, br, br_if, call, return_call, call_ref,
	// return_call_ref, table.get, memory.size, memory.grow, ref.func,
	// br_on_null, br_on_non_null.
	set(opU32, 0x07, 0x08, 0x09, 0x0c, 0x0d, 0x10, 0x12, 0x14, 0x15, 0x25, 0x3f, 0x40, 0xd2, 0xd5, 0xd6)
	span(opU32, 0x20, 0x24)  // local.get/set/tee, global.get/set
	set(opU32x2, 0x11, 0x13) // call_indirect, return_call_indirect
	set(opBrTable, 0x0e)
	span(opMemarg, 0x28, 0x3e)
	set(opI32Const, 0x41)
	set(opI64Const, 0x42)
	set(opF32Const, 0x43)
	set(opF64Const, 0x44)
	span(opNone, 0x45, 0xc4) // numeric and sign-extension
	set(opSelectT, 0x1c)
	set(opRefNull, 0xd0)
	set(opTryTable, 0x1f)
	set(opTableSet, 0x26)
	set(opPrefixFC, 0xfc)
	set(opPrefixFD, 0xfd)
	set(opPrefixFE, 0xfe)
	return t
}()

// Immediates of the 0xFD (SIMD) opcodes 0..255.
const (
	simdNone uint8 = iota
	simdMemarg
	simdMemargLane
	simdLane
	simdBytes16
)

var simdClass = func() (t [256]uint8) {
	for op := 0; op <= 11; op++ {
		t[op] = simdMemarg // v128.load*, v128.store
	}
	t[12] = simdBytes16 // v128.const
	t[13] = simdBytes16 // i8x16.shuffle
	for op := 21; op <= 34; op++ {
		t[op] = simdLane // extract_lane, replace_lane
	}
	for op := 84; op <= 91; op++ {
		t[op] = simdMemargLane // v128.load*_lane, v128.store*_lane
	}
	t[92] = simdMemarg // v128.load32_zero
	t[93] = simdMemarg // v128.load64_zero
	return t
}()

// scanError locates a malformed instruction.
type scanError struct {
	off int
	msg string
}

// scanner scans expressions. Its zero value, with numTypes set, scans
// constant expressions; set collect for function bodies.
type scanner struct {
	numTypes uint32
	// collect makes expr append to loops the position just after each loop
	// instruction's block type: where the interrupt check goes.
	collect bool
	loops   []uint32

	mutatesTables bool
	growsTables   bool
	dropsSegments bool

	// numGlobals bounds global.get and global.set indices when checkGlobals
	// is set. Instrument appends globals; a guest naming one of them (an
	// index its own module does not have) would be invalid as uploaded but
	// valid after the rewrite, and could then reset its own interrupt check.
	numGlobals   uint32
	checkGlobals bool

	// refs, if not nil, collects the position of the function index of
	// every call, return_call and ref.func, which must be below numFuncs.
	refs     *[]uint32
	numFuncs uint32
}

// expr scans instructions from b[p] through the end that closes the
// expression and returns the position after that end. b is cut at the end of
// the region the expression must fit in.
func (s *scanner) expr(b []byte, p int) (int, *scanError) {
	depth := 0
	var st lebStatus
	for p < len(b) {
		start := p
		op := b[p]
		p++
		switch opClass[op] {
		case opNone:
		case opEnd:
			if depth == 0 {
				return p, nil
			}
			depth--
		case opU32:
			if s.checkGlobals && (op == 0x23 || op == 0x24) {
				var idx uint32
				if idx, p, st = readU32(b, p); st == lebOK && idx >= s.numGlobals {
					return 0, &scanError{start, fmt.Sprintf("global.%s refers to global %d, but the module has %d globals", map[byte]string{0x23: "get", 0x24: "set"}[op], idx, s.numGlobals)}
				}
				if st != lebOK {
					break
				}
				continue
			}
			if s.refs != nil && (op == 0x10 || op == 0x12 || op == 0xd2) {
				at := p
				var idx uint32
				if idx, p, st = readU32(b, p); st != lebOK {
					break
				}
				if idx >= s.numFuncs {
					return 0, &scanError{start, fmt.Sprintf("refers to function %d, but the module has %d functions", idx, s.numFuncs)}
				}
				*s.refs = append(*s.refs, uint32(at))
				continue
			}
			if p < len(b) && b[p] < 0x80 {
				p++
				continue
			}
			_, p, st = readU32(b, p)
		case opMemarg:
			if p+1 < len(b) && b[p] < 0x40 && b[p+1] < 0x80 {
				p += 2 // one-byte align without a memory index, one-byte offset
				continue
			}
			p, st = skipMemarg(b, p)
		case opBlock:
			if p, st = s.blockType(b, p); st != lebOK {
				return 0, s.blockTypeErr(b, start, st)
			}
			depth++
		case opLoop:
			if p, st = s.blockType(b, p); st != lebOK {
				return 0, s.blockTypeErr(b, start, st)
			}
			depth++
			if s.collect {
				s.loops = append(s.loops, uint32(p))
			}
		case opI32Const:
			if p < len(b) && b[p] < 0x80 {
				p++
				continue
			}
			_, p, st = readSigned(b, p, 32)
		case opI64Const:
			if p < len(b) && b[p] < 0x80 {
				p++
				continue
			}
			_, p, st = readSigned(b, p, 64)
		case opU32x2:
			if _, p, st = readU32(b, p); st == lebOK {
				_, p, st = readU32(b, p)
			}
		case opBrTable:
			var n uint32
			n, p, st = readU32(b, p)
			for i := uint64(0); i <= uint64(n) && st == lebOK; i++ {
				_, p, st = readU32(b, p)
			}
		case opF32Const:
			p, st = skipBytes(b, p, 4)
		case opF64Const:
			p, st = skipBytes(b, p, 8)
		case opDelegate:
			if depth == 0 {
				return 0, &scanError{start, "delegate outside of a try block"}
			}
			_, p, st = readU32(b, p)
			depth--
		case opSelectT:
			var n uint32
			n, p, st = readU32(b, p)
			for i := uint32(0); i < n && st == lebOK; i++ {
				if _, p, st = readValType(b, p); st == lebTooLarge {
					return 0, &scanError{start, "select: invalid value type"}
				}
			}
		case opRefNull:
			var ok bool
			if p, st, ok = readHeapType(b, p); st == lebOK && !ok {
				return 0, &scanError{start, "ref.null: invalid heap type"}
			}
		case opTryTable:
			if p, st = s.blockType(b, p); st != lebOK {
				return 0, s.blockTypeErr(b, start, st)
			}
			depth++
			var n uint32
			n, p, st = readU32(b, p)
			for i := uint32(0); i < n && st == lebOK; i++ {
				if p >= len(b) {
					st = lebEOF
					break
				}
				kind := b[p]
				p++
				switch kind {
				case 0, 1: // catch, catch_ref: tag, label
					if _, p, st = readU32(b, p); st == lebOK {
						_, p, st = readU32(b, p)
					}
				case 2, 3: // catch_all, catch_all_ref: label
					_, p, st = readU32(b, p)
				default:
					return 0, &scanError{p - 1, fmt.Sprintf("try_table: invalid catch kind 0x%02x", kind)}
				}
			}
		case opTableSet:
			s.mutatesTables = true
			_, p, st = readU32(b, p)
		case opPrefixFC:
			var known bool
			var sub uint32
			if p, st, sub, known = s.prefixFC(b, p); st == lebOK && !known {
				return 0, &scanError{start, fmt.Sprintf("unknown opcode 0xfc %d", sub)}
			}
		case opPrefixFD:
			var sub uint32
			if sub, p, st = readCanonicalU32(b, p); st != lebOK {
				break
			}
			if sub > 0xff {
				return 0, &scanError{start, fmt.Sprintf("unknown opcode 0xfd %d", sub)}
			}
			switch simdClass[sub] {
			case simdMemarg:
				p, st = skipMemarg(b, p)
			case simdMemargLane:
				if p, st = skipMemarg(b, p); st == lebOK {
					p, st = skipBytes(b, p, 1)
				}
			case simdLane:
				p, st = skipBytes(b, p, 1)
			case simdBytes16:
				p, st = skipBytes(b, p, 16)
			}
		case opPrefixFE:
			var sub uint32
			if sub, p, st = readCanonicalU32(b, p); st != lebOK {
				break
			}
			switch {
			case sub == 0x03: // atomic.fence
				if p >= len(b) {
					st = lebEOF
				} else if b[p] != 0 {
					return 0, &scanError{start, "atomic.fence: reserved byte must be zero"}
				} else {
					p++
				}
			case sub <= 0x02 || (sub >= 0x10 && sub <= 0x4e):
				p, st = skipMemarg(b, p)
			default:
				return 0, &scanError{start, fmt.Sprintf("unknown opcode 0xfe %d", sub)}
			}
		default:
			return 0, &scanError{start, fmt.Sprintf("unknown opcode 0x%02x", op)}
		}
		switch st {
		case lebOK:
		case lebEOF:
			return 0, &scanError{start, fmt.Sprintf("instruction 0x%02x is cut off by the end of the expression", op)}
		default:
			return 0, &scanError{start, fmt.Sprintf("instruction 0x%02x has a malformed immediate", op)}
		}
	}
	return 0, &scanError{len(b), "expression is missing its final end"}
}

// prefixFC skips a 0xFC instruction's sub-opcode and immediates. known is
// false for a sub-opcode it does not know.
func (s *scanner) prefixFC(b []byte, p int) (int, lebStatus, uint32, bool) {
	sub, p, st := readU32(b, p)
	if st != lebOK {
		return p, st, 0, true
	}
	n := 0 // u32 immediates
	switch sub {
	case 0, 1, 2, 3, 4, 5, 6, 7: // saturating truncation
	case 9, 13: // data.drop, elem.drop
		s.dropsSegments = true
		n = 1
	case 11, 16: // memory.fill, table.size
		n = 1
	case 8, 10: // memory.init, memory.copy
		n = 2
	case 12, 14: // table.init, table.copy
		s.mutatesTables = true
		n = 2
	case 15, 17: // table.grow, table.fill
		s.mutatesTables = true
		s.growsTables = s.growsTables || sub == 15
		n = 1
	default:
		return p, lebOK, sub, false
	}
	for ; n > 0 && st == lebOK; n-- {
		_, p, st = readU32(b, p)
	}
	return p, st, sub, true
}

// blockType skips a block type: 0x40, a value type, or a type index (s33).
// A well-formed number that is not a valid block type comes back as
// lebTooLarge with p at the start, for blockTypeErr to describe.
func (s *scanner) blockType(b []byte, p int) (int, lebStatus) {
	if p < len(b) {
		switch b[p] {
		case 0x40, byte(ValI32), byte(ValI64), byte(ValF32), byte(ValF64), byte(ValV128),
			byte(ValFuncRef), byte(ValExternRef), byte(ValExnRef):
			return p + 1, lebOK
		}
	}
	v, q, st := readSigned(b, p, 33)
	if st != lebOK {
		return p, st
	}
	switch {
	case v >= 0:
		if v >= int64(s.numTypes) {
			return p, lebTooLarge
		}
		return q, lebOK
	case v == -29 || v == -28: // (ref null ht), (ref ht)
		q, st, ok := readHeapType(b, q)
		if st == lebOK && !ok {
			return p, lebTooLarge
		}
		return q, st
	case v == -64 || (v >= -5 && v <= -1) || v == -16 || v == -17 || v == -23:
		return q, lebOK // non-canonical encoding of a one-byte type
	}
	return p, lebTooLarge
}

func (s *scanner) blockTypeErr(b []byte, start int, st lebStatus) *scanError {
	if st == lebEOF {
		return &scanError{start, fmt.Sprintf("instruction 0x%02x is cut off by the end of the expression", b[start])}
	}
	return &scanError{start, fmt.Sprintf("instruction 0x%02x has an invalid block type", b[start])}
}

// skipMemarg skips align, an optional memory index (multi-memory: bit 6 of
// align) and offset (u64, which covers memory64).
func skipMemarg(b []byte, p int) (int, lebStatus) {
	align, p, st := readU32(b, p)
	if st != lebOK {
		return p, st
	}
	if align&0x40 != 0 {
		if _, p, st = readU32(b, p); st != lebOK {
			return p, st
		}
	}
	if p < len(b) && b[p] < 0x80 {
		return p + 1, lebOK
	}
	_, p, st = readU64(b, p)
	return p, st
}

func skipBytes(b []byte, p, n int) (int, lebStatus) {
	if len(b)-p < n {
		return p, lebEOF
	}
	return p + n, lebOK
}

// readCanonicalU32 reads a u32 that must be in its shortest encoding. The
// SIMD and atomic sub-opcodes are read this way: runtimes that decode them
// as a single byte agree with us on every shortest encoding.
func readCanonicalU32(b []byte, p int) (uint32, int, lebStatus) {
	v, q, st := readU32(b, p)
	if st == lebOK && q-p != sizeU32(v) {
		return 0, p, lebTooLarge
	}
	return v, q, st
}

// readValType reads a value type. A byte that is not a value type is
// reported as lebTooLarge with p left at it.
func readValType(b []byte, p int) (ValType, int, lebStatus) {
	if p >= len(b) {
		return 0, p, lebEOF
	}
	switch v := ValType(b[p]); v {
	case ValI32, ValI64, ValF32, ValF64, ValV128, ValFuncRef, ValExternRef, ValExnRef:
		return v, p + 1, lebOK
	case ValRefNull, ValRef:
		q, st, ok := readHeapType(b, p+1)
		if st != lebOK {
			return 0, q, st
		}
		if !ok {
			return 0, p, lebTooLarge
		}
		if v == ValRefNull {
			switch b[p+1] {
			case byte(ValFuncRef), byte(ValExternRef), byte(ValExnRef):
				return ValType(b[p+1]), q, lebOK
			}
		}
		return v, q, lebOK
	}
	return 0, p, lebTooLarge
}

// readHeapType reads an s33 heap type: func, extern, exn, or a type index.
// ok is false for other abstract heap types.
func readHeapType(b []byte, p int) (int, lebStatus, bool) {
	v, q, st := readSigned(b, p, 33)
	if st != lebOK {
		return q, st, false
	}
	return q, lebOK, v >= 0 || v == -16 || v == -17 || v == -23
}
