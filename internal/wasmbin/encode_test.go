package wasmbin

// A tiny module encoder for tests: each helper returns the bytes of one piece
// of the binary format, and pieces are concatenated with cat.

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func u32(v int) []byte { return appendU32(nil, uint32(v)) }

// sleb encodes a signed LEB128 number, independently of the package's
// decoder.
func sleb(v int64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func str(s string) []byte { return cat(u32(len(s)), []byte(s)) }

func vec(items ...[]byte) []byte { return cat(u32(len(items)), cat(items...)) }

func sec(id byte, content []byte) []byte { return cat([]byte{id}, u32(len(content)), content) }

func module(sections ...[]byte) []byte {
	return cat([]byte{0x00, 'a', 's', 'm', 1, 0, 0, 0}, cat(sections...))
}

func custom(name string, data []byte) []byte { return sec(secCustom, cat(str(name), data)) }

func vals(ts ...ValType) []byte {
	b := u32(len(ts))
	for _, t := range ts {
		b = append(b, byte(t))
	}
	return b
}

func functype(params, results []ValType) []byte {
	return cat([]byte{0x60}, vals(params...), vals(results...))
}

// fn encodes a function body with its size. locals is a list of
// (count, type) pairs.
func fn(locals [][2]int, code ...[]byte) []byte {
	l := u32(len(locals))
	for _, g := range locals {
		l = cat(l, u32(g[0]), []byte{byte(g[1])})
	}
	body := cat(l, cat(code...))
	return cat(u32(len(body)), body)
}

func export(name string, kind ExternKind, idx int) []byte {
	return cat(str(name), []byte{byte(kind)}, u32(idx))
}

func importEntry(mod, name string, kind ExternKind, desc ...byte) []byte {
	return cat(str(mod), str(name), []byte{byte(kind)}, desc)
}

// Instructions.
func op(b ...byte) []byte    { return b }
func i32c(v int32) []byte    { return cat([]byte{0x41}, sleb(int64(v))) }
func i64c(v int64) []byte    { return cat([]byte{0x42}, sleb(v)) }
func globalGet(i int) []byte { return cat([]byte{0x23}, u32(i)) }
func globalSet(i int) []byte { return cat([]byte{0x24}, u32(i)) }
func localGet(i int) []byte  { return cat([]byte{0x20}, u32(i)) }
func localSet(i int) []byte  { return cat([]byte{0x21}, u32(i)) }
func call(i int) []byte      { return cat([]byte{0x10}, u32(i)) }
func fc(sub int, imm ...int) []byte {
	b := cat([]byte{0xfc}, u32(sub))
	for _, v := range imm {
		b = append(b, u32(v)...)
	}
	return b
}
func simd(sub int, imm ...byte) []byte { return cat([]byte{0xfd}, u32(sub), imm) }

var (
	end         = []byte{0x0b}
	loopEmpty   = []byte{0x03, 0x40}
	blockEmpty  = []byte{0x02, 0x40}
	unreachable = []byte{0x00}
)

func br(l int) []byte   { return cat([]byte{0x0c}, u32(l)) }
func brIf(l int) []byte { return cat([]byte{0x0d}, u32(l)) }

// constGlobal encodes a global with a one-instruction initializer.
func global(t ValType, mutable bool, init []byte) []byte {
	m := byte(0)
	if mutable {
		m = 1
	}
	return cat([]byte{byte(t), m}, init, end)
}
