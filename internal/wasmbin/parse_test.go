package wasmbin

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestReadU32(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want uint32
		n    int
		st   lebStatus
	}{
		{[]byte{0x00}, 0, 1, lebOK},
		{[]byte{0x7f}, 127, 1, lebOK},
		{[]byte{0x80, 0x01}, 128, 2, lebOK},
		{[]byte{0x80, 0x00}, 0, 2, lebOK}, // non-minimal is allowed
		{[]byte{0xe5, 0x8e, 0x26}, 624485, 3, lebOK},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, math.MaxUint32, 5, lebOK},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x1f}, 0, 0, lebTooLarge}, // bit 32
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 0, 0, lebTooLarge},
		{[]byte{0x80, 0x80}, 0, 0, lebEOF},
		{nil, 0, 0, lebEOF},
	} {
		v, p, st := readU32(tc.in, 0)
		if st != tc.st || (st == lebOK && (v != tc.want || p != tc.n)) {
			t.Errorf("readU32(% x) = %d, %d, %v; want %d, %d, %v", tc.in, v, p, st, tc.want, tc.n, tc.st)
		}
	}
}

func TestReadSigned(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		bits uint
		want int64
		st   lebStatus
	}{
		{[]byte{0x00}, 32, 0, lebOK},
		{[]byte{0x7f}, 32, -1, lebOK},
		{[]byte{0x40}, 33, -64, lebOK},
		{[]byte{0x3f}, 32, 63, lebOK},
		{[]byte{0xc0, 0x00}, 32, 64, lebOK},
		{[]byte{0xff, 0x7e}, 32, -129, lebOK},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x78}, 32, math.MinInt32, lebOK},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x07}, 32, math.MaxInt32, lebOK},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, 32, 0, lebTooLarge}, // 2^32-1 does not fit
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x70}, 32, 0, lebTooLarge}, // sign bits disagree
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, 33, math.MaxUint32, lebOK},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x70}, 33, -1 << 32, lebOK},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f}, 64, math.MinInt64, lebOK},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00}, 64, math.MaxInt64, lebOK},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 64, 0, lebTooLarge},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 64, 0, lebTooLarge},
		{[]byte{0x80}, 64, 0, lebEOF},
	} {
		v, _, st := readSigned(tc.in, 0, tc.bits)
		if st != tc.st || (st == lebOK && v != tc.want) {
			t.Errorf("readSigned(% x, %d) = %d, %v; want %d, %v", tc.in, tc.bits, v, st, tc.want, tc.st)
		}
	}
	// Round trip against the test encoder.
	for _, v := range []int64{0, 1, -1, 63, 64, -64, -65, 1 << 20, math.MinInt32, math.MaxInt32, math.MinInt64, math.MaxInt64} {
		got, p, st := readSigned(sleb(v), 0, 64)
		if st != lebOK || got != v || p != len(sleb(v)) {
			t.Errorf("round trip %d: got %d, %v", v, got, st)
		}
		if v >= math.MinInt32 && v <= math.MaxInt32 {
			if b := appendSigned32(nil, int32(v)); string(b) != string(sleb(v)) {
				t.Errorf("appendSigned32(%d) = % x, want % x", v, b, sleb(v))
			}
		}
	}
}

func TestParseFeatureModule(t *testing.T) {
	m, err := Parse(featureModule())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Types) != 6 || len(m.Funcs) != 10 || len(m.Tables) != 1 || len(m.Memories) != 1 ||
		len(m.Tags) != 1 || len(m.Globals) != 4 || len(m.Exports) != 13 {
		t.Fatalf("counts: %d types, %d funcs, %d tables, %d memories, %d tags, %d globals, %d exports",
			len(m.Types), len(m.Funcs), len(m.Tables), len(m.Memories), len(m.Tags), len(m.Globals), len(m.Exports))
	}
	if got := m.Types[3].String(); got != "(i32, i32) -> (i32, i32)" {
		t.Errorf("type 3 = %s", got)
	}
	if mem := m.Memories[0]; mem != (Limits{Min: 1, Max: 2, HasMax: true, Shared: true}) {
		t.Errorf("memory = %+v", mem)
	}
	if tab := m.Tables[0]; tab != (TableType{ValFuncRef, Limits{Min: 8, Max: 16, HasMax: true}}) {
		t.Errorf("table = %+v", tab)
	}
	wantGlobals := []GlobalType{{ValI32, true}, {ValFuncRef, false}, {ValV128, true}, {ValI64, true}}
	if !slices.Equal(m.Globals, wantGlobals) {
		t.Errorf("globals = %v", m.Globals)
	}
	if m.NumElemSegments != 8 || m.NumDataSegments != 2 || !m.HasDataCount {
		t.Errorf("segments: %d elem, %d data, datacount %v", m.NumElemSegments, m.NumDataSegments, m.HasDataCount)
	}
	var names []string
	for _, c := range m.Custom {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, []string{"before.type", "after.code", "name"}) || string(m.Custom[0].Data) != "hello" {
		t.Errorf("custom sections = %q", names)
	}
	if ft, ok := m.ExportedFunc("swap"); !ok || !ft.Equal([]ValType{ValI32, ValI32}, []ValType{ValI32, ValI32}) {
		t.Errorf("ExportedFunc(swap) = %v, %v", ft, ok)
	}
	if _, ok := m.ExportedFunc("mem"); ok {
		t.Error("ExportedFunc(mem) found a function")
	}
	// Loops: loopsum, swap and spin have one each.
	var loops []uint32
	for _, f := range m.bodies {
		loops = append(loops, f.loops)
	}
	if !slices.Equal(loops, []uint32{0, 1, 1, 0, 0, 0, 0, 0, 0, 1}) {
		t.Errorf("loops per body = %v", loops)
	}
}

func TestParseImports(t *testing.T) {
	b := module(
		sec(secType, vec(functype([]ValType{ValI32}, nil), functype(nil, []ValType{ValF64}))),
		sec(secImport, vec(
			importEntry("env", "f0", ExternFunc, 0),
			importEntry("env", "g", ExternGlobal, byte(ValI64), 1),
			importEntry("wasi_snapshot_preview1", "f1", ExternFunc, 1),
			importEntry("env", "mem", ExternMemory, 0x05, 2, 3), // memory64, min 2 max 3
			importEntry("env", "tab", ExternTable, 0x6f, 0x00, 1),
			importEntry("env", "tag", ExternTag, 0x00, 0),
		)),
		sec(secFunction, vec(u32(1))),
		sec(secExport, vec(export("mine", ExternFunc, 2), export("theirs", ExternFunc, 1))),
		sec(secCode, vec(fn(nil, op(0x44), f64bytes(2), end))),
	)
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.NumImportedFuncs != 2 || m.NumImportedGlobals != 1 || m.NumImportedMemories != 1 ||
		m.NumImportedTables != 1 || m.NumImportedTags != 1 {
		t.Fatalf("imported counts %d %d %d %d %d", m.NumImportedFuncs, m.NumImportedGlobals,
			m.NumImportedMemories, m.NumImportedTables, m.NumImportedTags)
	}
	if mem := m.Imports[3].Memory; mem != (Limits{Min: 2, Max: 3, HasMax: true, Memory64: true}) {
		t.Errorf("imported memory = %+v", mem)
	}
	if g := m.Imports[1].Global; g != (GlobalType{ValI64, true}) {
		t.Errorf("imported global = %+v", g)
	}
	if ft, ok := m.ExportedFunc("mine"); !ok || ft.String() != "() -> (f64)" {
		t.Errorf("ExportedFunc(mine) = %v, %v", ft, ok)
	}
	if ft, ok := m.ExportedFunc("theirs"); !ok || ft.String() != "() -> (f64)" {
		t.Errorf("ExportedFunc(theirs) = %v, %v (second imported function)", ft, ok)
	}
	if !m.ImportsModule("wasi_snapshot_preview1") || !m.ImportsModule("env") || m.ImportsModule("http_handler") {
		t.Error("ImportsModule")
	}
}

// TestMutationFlags: each instruction sets the flag it should and no other.
func TestMutationFlags(t *testing.T) {
	for _, tc := range []struct {
		name          string
		code          []byte
		tables, drops bool
	}{
		{"none", cat(i32c(0), op(0x1a)), false, false},
		{"table.set", cat(i32c(0), op(0xd0, 0x70), op(0x26, 0)), true, false},
		{"table.grow", cat(op(0xd0, 0x70), i32c(1), fc(15, 0), op(0x1a)), true, false},
		{"table.fill", cat(i32c(0), op(0xd0, 0x70), i32c(0), fc(17, 0)), true, false},
		{"table.copy", cat(i32c(0), i32c(0), i32c(0), fc(14, 0, 0)), true, false},
		{"table.init", cat(i32c(0), i32c(0), i32c(0), fc(12, 0, 0)), true, false},
		{"table.get and size", cat(i32c(0), op(0x25, 0), op(0x1a), fc(16, 0), op(0x1a)), false, false},
		{"elem.drop", fc(13, 0), false, true},
		{"data.drop", fc(9, 0), false, true},
		{"memory.init", cat(i32c(0), i32c(0), i32c(0), fc(8, 0, 0)), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := module(
				sec(secType, vec(functype(nil, nil))),
				sec(secFunction, vec(u32(0))),
				sec(secTable, vec(op(0x70, 0x00, 1))),
				sec(secMemory, vec(op(0x00, 1))),
				sec(secElement, vec(cat(u32(1), op(0x00), vec(u32(0))))),
				sec(secDataCount, u32(1)),
				sec(secCode, vec(fn(nil, tc.code, end))),
				sec(secData, vec(cat(u32(1), str("x")))),
			)
			m, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if m.MutatesTables != tc.tables || m.DropsSegments != tc.drops {
				t.Fatalf("MutatesTables=%v DropsSegments=%v, want %v %v", m.MutatesTables, m.DropsSegments, tc.tables, tc.drops)
			}
			// And wazero agrees the module is valid.
			r := newRuntime(t, engines[1].cfg())
			if _, err := r.CompileModule(t.Context(), b); err != nil {
				t.Fatalf("wazero rejects the test module: %v", err)
			}
		})
	}
}

// instructions lists one instance of every immediate form the scanner
// knows, each a complete instruction.
var instructions = []struct {
	name string
	code []byte
}{
	{"unreachable", op(0x00)},
	{"block", cat(blockEmpty, end)},
	{"block valtype", cat(op(0x02, 0x7f), i32c(1), end)},
	{"block type index", cat(op(0x02, 0x00), end)},
	{"block type index 2 bytes", cat(op(0x02, 0x80, 0x00), end)},
	{"block (ref null func)", cat(op(0x02, 0x63, 0x70), op(0xd0, 0x70), end)},
	{"block (ref $0)", cat(op(0x02, 0x64, 0x00), op(0xd2, 0x00), end)},
	{"loop", cat(loopEmpty, end)},
	{"if else", cat(i32c(1), op(0x04, 0x40), op(0x05), end)},
	{"br_table", cat(blockEmpty, i32c(0), op(0x0e, 3, 0, 0, 0, 0), end)},
	{"br_table long", cat(blockEmpty, i32c(0), op(0x0e, 0x81, 0x01), make([]byte, 130), end)},
	{"call", call(0)},
	{"call_indirect", op(0x11, 0x00, 0x00)},
	{"call_indirect table 1", op(0x11, 0x00, 0x81, 0x00)},
	{"return_call", op(0x12, 0x00)},
	{"return_call_indirect", op(0x13, 0x00, 0x00)},
	{"call_ref", op(0x14, 0x00)},
	{"return_call_ref", op(0x15, 0x00)},
	{"select", op(0x1b)},
	{"select t", op(0x1c, 0x01, 0x7f)},
	{"select (ref null $0)", op(0x1c, 0x01, 0x63, 0x00)},
	{"local.get", localGet(300)},
	{"global.set", globalSet(1)},
	{"table.get", op(0x25, 0x00)},
	{"table.set", op(0x26, 0x01)},
	{"i32.load", op(0x28, 0x02, 0x00)},
	{"i64.store32 big offset", op(0x3e, 0x02, 0xff, 0xff, 0xff, 0xff, 0x0f)},
	{"i64.load memory64 offset", op(0x29, 0x03, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01)},
	{"i32.load multi-memory", op(0x28, 0x42, 0x01, 0x00)},
	{"memory.size", op(0x3f, 0x00)},
	{"memory.grow", op(0x40, 0x00)},
	{"i32.const", i32c(math.MinInt32)},
	{"i64.const", i64c(math.MinInt64)},
	{"f32.const", cat(op(0x43), f32bytes(1.5))},
	{"f64.const", cat(op(0x44), f64bytes(1.5))},
	{"i32.add", op(0x6a)},
	{"i64.extend32_s", op(0xc4)},
	{"ref.null func", op(0xd0, 0x70)},
	{"ref.null extern", op(0xd0, 0x6f)},
	{"ref.null $0", op(0xd0, 0x00)},
	{"ref.is_null", op(0xd1)},
	{"ref.func", op(0xd2, 0x00)},
	{"ref.as_non_null", op(0xd4)},
	{"br_on_null", cat(blockEmpty, op(0xd5, 0x00), end)},
	{"br_on_non_null", cat(blockEmpty, op(0xd6, 0x00), end)},
	{"i32.trunc_sat_f32_s", fc(0)},
	{"i64.trunc_sat_f64_u", fc(7)},
	{"memory.init", fc(8, 1, 0)},
	{"data.drop", fc(9, 0)},
	{"memory.copy", fc(10, 0, 0)},
	{"memory.fill", fc(11, 0)},
	{"table.init", fc(12, 0, 0)},
	{"elem.drop", fc(13, 0)},
	{"table.copy", fc(14, 0, 0)},
	{"table.grow", fc(15, 0)},
	{"table.size", fc(16, 0)},
	{"table.fill", fc(17, 0)},
	{"v128.load", simd(0, 4, 0)},
	{"v128.store", simd(11, 4, 16)},
	{"v128.const", simd(12, make([]byte, 16)...)},
	{"i8x16.shuffle", simd(13, make([]byte, 16)...)},
	{"i8x16.swizzle", simd(14)},
	{"i8x16.extract_lane_s", simd(21, 15)},
	{"f64x2.replace_lane", simd(34, 1)},
	{"v128.not", simd(77)},
	{"v128.load8_lane", simd(84, 0, 0, 3)},
	{"v128.store64_lane", simd(91, 3, 8, 1)},
	{"v128.load32_zero", simd(92, 2, 0)},
	{"v128.load64_zero", simd(93, 3, 0)},
	{"i32x4.add (two-byte opcode)", simd(174)},
	{"f64x2.promote_low_f32x4", simd(95)},
	{"memory.atomic.notify", op(0xfe, 0x00, 0x02, 0x00)},
	{"memory.atomic.wait64", op(0xfe, 0x02, 0x03, 0x00)},
	{"atomic.fence", op(0xfe, 0x03, 0x00)},
	{"i32.atomic.load", op(0xfe, 0x10, 0x02, 0x00)},
	{"i64.atomic.rmw32.cmpxchg_u", op(0xfe, 0x4e, 0x02, 0x08)},
	{"throw", op(0x08, 0x00)},
	{"throw_ref", op(0x0a)},
	{"try_table", cat(op(0x1f, 0x40, 0x04, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x02, 0x00, 0x03, 0x00), end)},
	{"try catch catch_all", cat(op(0x06, 0x40, 0x07, 0x00, 0x19), end)},
	{"try delegate", op(0x06, 0x40, 0x18, 0x00)},
	{"rethrow", cat(op(0x06, 0x40, 0x19, 0x09, 0x00), end)},
}

// instrModule wraps code in a function body of a module with one type and
// two globals, so the indices the instructions use resolve.
func instrModule(code []byte) []byte {
	return module(
		sec(secType, vec(functype(nil, nil))),
		sec(secFunction, vec(u32(0))),
		sec(secGlobal, vec(global(ValI32, true, i32c(0)), global(ValI32, true, i32c(0)))),
		sec(secCode, vec(fn(nil, code, end))),
	)
}

// TestInstructions: every immediate form parses, its length is right (the
// body's final end is found exactly at the body end), and every cut
// through the instruction is an error, not a panic or a misparse.
func TestInstructions(t *testing.T) {
	for _, tc := range instructions {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(instrModule(tc.code))
			if err != nil {
				t.Fatal(err)
			}
			wantLoops := uint32(strings.Count(tc.name, "loop"))
			if m.bodies[0].loops != wantLoops {
				t.Errorf("loops = %d, want %d", m.bodies[0].loops, wantLoops)
			}
			// The instruction followed by end, cut short: the body ends
			// inside the instruction or before its final end.
			for n := 1; n < len(tc.code); n++ {
				if _, err := Parse(instrModule(tc.code[:n])); err == nil {
					// A cut at an instruction boundary of a multi-instruction
					// case can be valid on its own; only the single-opcode
					// prefix of an immediate must fail.
					if isBoundary(tc.code, n) {
						continue
					}
					t.Errorf("cut at %d of % x: no error", n, tc.code)
				}
			}
			// Appending a stray byte after the final end is an error.
			if _, err := Parse(module(
				sec(secType, vec(functype(nil, nil))),
				sec(secFunction, vec(u32(0))),
				sec(secGlobal, vec(global(ValI32, true, i32c(0)), global(ValI32, true, i32c(0)))),
				sec(secCode, vec(fn(nil, tc.code, end, op(0x01)))),
			)); err == nil || !strings.Contains(err.Error(), "after the final end") {
				t.Errorf("trailing byte: err = %v", err)
			}
		})
	}
}

// isBoundary reports whether code[:n] ends between two whole instructions
// with all blocks closed, by scanning it.
func isBoundary(code []byte, n int) bool {
	s := scanner{numTypes: 1}
	q, err := s.expr(append(append([]byte{}, code[:n]...), 0x0b), 0)
	return err == nil && q == n+1
}

// TestParseErrors checks that malformed input is rejected with the right
// error and a message that says what is wrong.
func TestParseErrors(t *testing.T) {
	typ := sec(secType, vec(functype(nil, nil)))
	funcs := func(n int) []byte {
		items := make([][]byte, n)
		for i := range items {
			items[i] = u32(0)
		}
		return sec(secFunction, vec(items...))
	}
	body := fn(nil, end)
	for _, tc := range []struct {
		name    string
		in      []byte
		is      error  // errors.Is target, or nil for a *FormatError
		section string // FormatError.Section
		offset  int    // FormatError.Offset, or -1 to skip
		msg     string // substring of Error()
	}{
		{"empty", nil, ErrNotWasm, "", -1, "the file is empty"},
		{"wat", []byte("(module\n  (func))\n"), ErrNotWasm, "", -1, "WebAssembly text format"},
		{"wat after whitespace", []byte("\n\n  ;; comment\n(module)"), ErrNotWasm, "", -1, "text format"},
		{"text", []byte("hello, world\n"), ErrNotWasm, "", -1, "text file"},
		{"elf", []byte("\x7fELF\x02\x01\x01\x00"), ErrNotWasm, "", -1, "ELF"},
		{"binary junk", []byte{0xde, 0xad, 0xbe, 0xef, 0x00, 0x01}, ErrNotWasm, "", -1, "de ad be ef"},
		{"truncated magic", []byte{0x00, 'a', 's'}, nil, "", 3, "header is truncated"},
		{"truncated version", []byte{0x00, 'a', 's', 'm', 1, 0}, nil, "", 6, "header is truncated"},
		{"component", []byte{0x00, 'a', 's', 'm', 0x0d, 0x00, 0x01, 0x00}, ErrUnsupportedVersion, "", -1,
			"this is a WebAssembly component, not a core module"},
		{"version 2", []byte{0x00, 'a', 's', 'm', 2, 0, 0, 0}, ErrUnsupportedVersion, "", -1, "version 2"},
		{"unknown section", module([]byte{14, 0}), nil, "", 8, "unknown section id 14"},
		{"section past end", module([]byte{1, 10, 0}), nil, "type", 8, "extends past the end of the module"},
		{"section size cut", module([]byte{1, 0x80}), nil, "type", 8, "truncated"},
		{"order", module(funcs(0), typ), nil, "type", 11, `it must come before the "function" section`},
		{"duplicate", module(typ, typ), nil, "type", 8 + len(typ), "duplicate section"},
		{"tag after global", module(sec(secGlobal, vec()), sec(secTag, vec())), nil, "tag", 11, "out of order"},
		{"datacount after code", module(sec(secCode, vec()), sec(secDataCount, u32(0))), nil, "datacount", 11, "out of order"},
		{"function count mismatch", module(typ, funcs(2), sec(secCode, vec(body))), nil, "code", 21,
			"the code section has 1 function bodies but the function section declares 2 functions"},
		{"no code section", module(typ, funcs(1)), nil, "function", 14, "there is no code section"},
		{"body past section end", module(typ, funcs(1), sec(secCode, cat(u32(1), u32(5), op(0x00, 0x0b)))), nil, "code", 21,
			"function body 0 extends past section end"},
		{"missing end", module(typ, funcs(1), sec(secCode, vec(fn(nil, op(0x01))))), nil, "code", -1, "missing its final end"},
		{"unknown opcode", module(typ, funcs(1), sec(secCode, vec(fn(nil, op(0xff), end)))), nil, "code", 23,
			"function body 0: unknown opcode 0xff"},
		{"unknown fc opcode", module(typ, funcs(1), sec(secCode, vec(fn(nil, fc(18), end)))), nil, "code", -1, "unknown opcode 0xfc 18"},
		{"unknown fd opcode", module(typ, funcs(1), sec(secCode, vec(fn(nil, simd(300), end)))), nil, "code", -1, "unknown opcode 0xfd 300"},
		{"padded fd opcode", module(typ, funcs(1), sec(secCode, vec(fn(nil, op(0xfd, 0x8c, 0x00), end)))), nil, "code", -1, "malformed immediate"},
		{"unknown fe opcode", module(typ, funcs(1), sec(secCode, vec(fn(nil, op(0xfe, 0x04), end)))), nil, "code", -1, "unknown opcode 0xfe 4"},
		{"fence byte", module(typ, funcs(1), sec(secCode, vec(fn(nil, op(0xfe, 0x03, 0x01), end)))), nil, "code", -1, "reserved byte"},
		{"block type out of range", module(typ, funcs(1), sec(secCode, vec(fn(nil, op(0x02, 0x05), end, end)))), nil, "code", -1, "invalid block type"},
		{"extra end", module(typ, funcs(1), sec(secCode, vec(fn(nil, end, end)))), nil, "code", -1, "1 bytes after the final end"},
		{"delegate outside try", module(typ, funcs(1), sec(secCode, vec(fn(nil, op(0x18, 0), end)))), nil, "code", -1, "delegate outside"},
		{"bad catch kind", module(typ, funcs(1), sec(secCode, vec(fn(nil, op(0x1f, 0x40, 1, 4), end, end)))), nil, "code", -1, "invalid catch kind"},
		{"bad local type", module(typ, funcs(1), sec(secCode, vec(fn([][2]int{{1, 0x55}}, end)))), nil, "code", -1,
			"function body 0: local type: invalid value type 0x55"},
		{"too many locals", module(typ, funcs(1), sec(secCode, vec(fn([][2]int{{math.MaxUint32, 0x7f}, {1, 0x7f}}, end)))), nil, "code", -1,
			"function body 0 declares 4294967296 locals; the limit is 50000"},
		{"locals over limit", module(typ, funcs(1), sec(secCode, vec(fn([][2]int{{25000, 0x7f}, {25001, 0x7e}}, end)))), nil, "code", -1,
			"declares 50001 locals"},
		{"name section huge count", module(custom("name", cat(op(1), u32(5), u32(math.MaxUint32)))), nil, "custom", 17,
			"name section: function name count 4294967295 is larger than the rest of the section (0 bytes)"},
		{"name subsection past end", module(custom("name", cat(op(1), u32(9), u32(0)))), nil, "custom", 16,
			"name section: subsection 1 of 9 bytes extends past section end"},
		{"name subsection trailing", module(custom("name", cat(op(0), u32(3), str("a"), op(0)))), nil, "custom", 19,
			"name section: subsection 0 has 1 unexpected bytes"},
		{"local name bad utf8", module(custom("name", cat(op(2), u32(6), u32(1), u32(0), u32(1), u32(0), str("\xff")))), nil, "custom", -1,
			"name section: local name is not valid UTF-8"},
		{"huge count", module(sec(secType, u32(math.MaxUint32))), nil, "type", 10, "larger than the rest of the section"},
		{"long LEB", module(sec(secType, op(0x80, 0x80, 0x80, 0x80, 0x80, 0x00))), nil, "type", 10, "malformed LEB128"},
		{"bad type form", module(sec(secType, vec(op(0x61)))), nil, "type", 11, "expected a function type (0x60)"},
		{"gc type", module(sec(secType, vec(op(0x4e)))), nil, "type", 11, "garbage-collection types are not supported"},
		{"section trailing bytes", module(sec(secType, cat(vec(functype(nil, nil)), op(0)))), nil, "type", 14, "1 unexpected bytes"},
		{"bad utf8 export", module(sec(secExport, vec(cat(str("\xff"), op(0, 0))))), nil, "export", 11, "not valid UTF-8"},
		{"duplicate export", module(typ, funcs(1), sec(secExport, vec(export("f", ExternFunc, 0), export("f", ExternFunc, 0))), sec(secCode, vec(body))),
			nil, "export", -1, `duplicate export name "f"`},
		{"export out of range", module(sec(secExport, vec(export("f", ExternFunc, 0)))), nil, "export", 14, "export func index 0 out of range"},
		{"start out of range", module(sec(secStart, u32(3))), nil, "start", 10, "start function 3 out of range"},
		{"function type out of range", module(typ, sec(secFunction, vec(u32(1)))), nil, "function", 17, "type index 1 out of range"},
		{"import kind", module(sec(secImport, vec(importEntry("a", "b", 7)))), nil, "import", 15, "invalid kind 0x07"},
		{"memory limits", module(sec(secMemory, vec(op(0x01, 5, 2)))), nil, "memory", 11, "minimum 5 is larger than maximum 2"},
		{"memory too big", module(sec(secMemory, vec(cat(op(0x00), u32(70000))))), nil, "memory", 11, "more than 65536 pages"},
		{"shared without max", module(sec(secMemory, vec(op(0x02, 1)))), nil, "memory", 11, "shared memory must have a maximum"},
		{"global mutability", module(sec(secGlobal, vec(cat(op(0x7f, 2), i32c(0), end)))), nil, "global", 12, "invalid mutability"},
		{"global init unterminated", module(sec(secGlobal, vec(cat(op(0x7f, 0), i32c(0))))), nil, "global", -1, "global initializer"},
		{"element flags", module(sec(secElement, vec(u32(8)))), nil, "element", 11, "invalid flags 8"},
		{"data flags", module(sec(secData, vec(u32(3)))), nil, "data", 11, "invalid flags 3"},
		{"data past end", module(sec(secData, vec(cat(u32(1), u32(9), op(1, 2))))), nil, "data", 12, "extends past section end"},
		{"datacount mismatch", module(sec(secDataCount, u32(2)), sec(secData, vec(cat(u32(1), str("x"))))), nil, "data", 13,
			"1 data segments but the data count section says 2"},
		{"datacount without data", module(sec(secDataCount, u32(1))), nil, "datacount", -1, "no data section"},
		{"custom name past end", module(sec(secCustom, op(5, 'a'))), nil, "custom", 10, "extends past section end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(tc.in)
			if err == nil {
				t.Fatalf("no error; module %+v", m)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not contain %q", err, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), "wasm: ") {
				t.Errorf("error %q does not start with \"wasm: \"", err)
			}
			if tc.is != nil {
				if !errors.Is(err, tc.is) {
					t.Errorf("error %q is not %v", err, tc.is)
				}
				return
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %q (%T) is not a *FormatError", err, err)
			}
			if fe.Section != tc.section {
				t.Errorf("Section = %q, want %q (%v)", fe.Section, tc.section, err)
			}
			if tc.offset >= 0 && fe.Offset != tc.offset {
				t.Errorf("Offset = %#x, want %#x (%v)", fe.Offset, tc.offset, err)
			}
		})
	}
}

func TestFormatErrorString(t *testing.T) {
	err := &FormatError{Offset: 0x1a2, Section: "code", Msg: "function body 3 extends past section end"}
	if got, want := err.Error(), `wasm: section "code" at offset 0x1a2: function body 3 extends past section end`; got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

// TestTruncated cuts test modules at every length: Parse must never panic,
// and must fail unless the cut falls exactly between two sections (a
// prefix made of whole sections can itself be a valid module).
func TestTruncated(t *testing.T) {
	mods := map[string][]byte{
		"feature": featureModule(),
		"globals": globalsModule(),
		"legacy":  legacyEHModule(),
		"go":      helloWasm(t),
	}
	for name, b := range mods {
		t.Run(name, func(t *testing.T) {
			m, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			boundary := map[int]bool{8: true}
			for _, s := range m.sections {
				boundary[s.end] = true
			}
			for n := 0; n < len(b); n++ {
				_, err := Parse(b[:n])
				if err == nil && !boundary[n] {
					t.Fatalf("cut at %d: no error", n)
				}
				var fe *FormatError
				if err != nil && n >= 8 && !errors.As(err, &fe) {
					t.Fatalf("cut at %d: error %v is not a *FormatError", n, err)
				}
			}
		})
	}
}

// TestCorrupted flips every byte of the feature module in a few ways:
// Parse and Instrument must not panic.
func TestCorrupted(t *testing.T) {
	orig := featureModule()
	b := slices.Clone(orig)
	for i := 8; i < len(b); i++ {
		for _, v := range []byte{0x00, 0x0b, 0x7f, 0x80, 0xff, orig[i] ^ 0x01} {
			b[i] = v
			if m, err := Parse(b); err == nil {
				if _, err := Instrument(b, m, interruptYield); err != nil && !strings.Contains(err.Error(), "already exists") {
					t.Fatalf("byte %d = %#x: Instrument: %v", i, v, err)
				}
			}
		}
		b[i] = orig[i]
	}
}
