package wasmbin

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Hand-built test modules.

// spinModule exports "spin", which loops forever; "outer", which calls
// "inner", which loops forever; and "answer", which returns 42.
func spinModule() []byte {
	return module(
		sec(secType, vec(functype(nil, nil), functype(nil, []ValType{ValI32}))),
		sec(secFunction, vec(u32(0), u32(0), u32(0), u32(1))),
		sec(secExport, vec(
			export("spin", ExternFunc, 0),
			export("outer", ExternFunc, 2),
			export("answer", ExternFunc, 3),
		)),
		sec(secCode, vec(
			fn(nil, loopEmpty, br(0), end, end),
			fn(nil, loopEmpty, br(0), end, end),
			fn(nil, call(1), end),
			fn(nil, i32c(42), end),
		)),
	)
}

// globalsProvider exports an immutable i32 global "g_imm" (7) and a mutable
// i64 global "g_mut" (5), for globalsModule to import.
func globalsProvider() []byte {
	return module(
		sec(secGlobal, vec(global(ValI32, false, i32c(7)), global(ValI64, true, i64c(5)))),
		sec(secExport, vec(export("g_imm", ExternGlobal, 0), export("g_mut", ExternGlobal, 1))),
	)
}

// globalsModule imports two globals from "env" (indices 0 and 1) and defines
// global 2 (mut i32 100), 3 (const f64 1.5) and 4 (mut i64 -1). "get2" and
// "set2" read and write global 2.
func globalsModule() []byte {
	return module(
		sec(secType, vec(functype(nil, []ValType{ValI32}), functype([]ValType{ValI32}, nil))),
		sec(secImport, vec(
			importEntry("env", "g_imm", ExternGlobal, byte(ValI32), 0),
			importEntry("env", "g_mut", ExternGlobal, byte(ValI64), 1),
		)),
		sec(secFunction, vec(u32(0), u32(1))),
		sec(secGlobal, vec(
			global(ValI32, true, i32c(100)),
			global(ValF64, false, cat([]byte{0x44}, f64bytes(1.5))),
			global(ValI64, true, i64c(-1)),
		)),
		sec(secExport, vec(export("get2", ExternFunc, 0), export("set2", ExternFunc, 1))),
		sec(secCode, vec(
			fn(nil, globalGet(2), end),
			fn(nil, localGet(0), globalSet(2), end),
		)),
	)
}

func f64bytes(f float64) []byte { return binary.LittleEndian.AppendUint64(nil, math.Float64bits(f)) }
func f32bytes(f float32) []byte { return binary.LittleEndian.AppendUint32(nil, math.Float32bits(f)) }

func i32x4(a, b, c, d uint32) []byte {
	var v []byte
	for _, x := range []uint32{a, b, c, d} {
		v = binary.LittleEndian.AppendUint32(v, x)
	}
	return v
}

// featureFuncs lists featureModule's exported functions with their
// arguments and expected results.
var featureFuncs = []struct {
	name string
	args []uint64
	want []uint64
}{
	{"simd", nil, []uint64{55}},
	{"loopsum", []uint64{10}, []uint64{45}},
	{"swap", []uint64{1, 2}, []uint64{2, 1}},
	{"atomics", nil, []uint64{5}},
	{"bulk", nil, []uint64{0x07070707 + 42}},
	{"tables", nil, []uint64{65}},
	{"tail", []uint64{10}, []uint64{45}},
	{"exc", nil, []uint64{7}},
	{"misc", nil, []uint64{1<<63 + 130}},
}

// featureModule uses one or more instructions of every extension the
// scanner knows and wazero runs: SIMD (memarg, lane and 16-byte immediates),
// multi-value blocks with a type index, threads, bulk memory, reference
// types, typed select, tail calls, exception handling (try_table), extended
// constant expressions, saturating truncation and sign extension; every
// element and data segment form; a tag, a data count and custom sections
// before, between and after the known sections.
func featureModule() []byte {
	i32, i64, v128 := ValI32, ValI64, ValV128
	memarg := func(align, offset int) []byte { return cat(u32(align), u32(offset)) }
	code := vec(
		// 0 simd: () -> i32
		fn([][2]int{{1, int(v128)}},
			simd(12, i32x4(1, 2, 3, 4)...), simd(12, i32x4(10, 20, 30, 40)...),
			simd(174), localSet(0), // i32x4.add
			localGet(0), localGet(0), simd(13, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7),
			simd(27, 0),                                     // i32x4.extract_lane 0 -> 33
			i32c(0), localGet(0), simd(11, memarg(4, 0)...), // v128.store
			i32c(0), localGet(0), simd(86, cat(memarg(2, 4), []byte{0})...), // v128.load32_lane
			simd(27, 0), op(0x6a), end), // 22 + 33
		// 1 loopsum: (n i32) -> i32, sum of 0..n-1
		fn([][2]int{{2, int(i32)}},
			blockEmpty, loopEmpty,
			localGet(1), localGet(0), op(0x4e), brIf(1), // i32.ge_s
			localGet(2), localGet(1), op(0x6a), localSet(2),
			localGet(1), i32c(1), op(0x6a), localSet(1),
			br(0), end, end, localGet(2), end),
		// 2 swap: (i32, i32) -> (i32, i32), through a block and a loop typed (type 3)
		fn(nil, localGet(0), localGet(1),
			op(0x02, 3), localSet(0), localSet(1), localGet(0), localGet(1), end,
			op(0x03, 3), end, end),
		// 3 atomics: () -> i32
		fn(nil,
			i32c(64), i32c(5), op(0xfe, 0x1e), memarg(2, 0), op(0x1a), // i32.atomic.rmw.add; drop
			op(0xfe, 0x03, 0x00),                   // atomic.fence
			i32c(64), op(0xfe, 0x10), memarg(2, 0), // i32.atomic.load
			i32c(64), i32c(0), op(0xfe, 0x00), memarg(2, 0), op(0x6a), end), // memory.atomic.notify
		// 4 bulk: () -> i32
		fn(nil,
			i32c(100), i32c(7), i32c(4), fc(11, 0), // memory.fill
			i32c(104), i32c(100), i32c(4), fc(10, 0, 0), // memory.copy
			i32c(108), i32c(0), i32c(4), fc(8, 1, 0), // memory.init 1
			fc(9, 1), // data.drop 1
			i32c(0), op(0x28), memarg(2, 104), i32c(0), op(0x2d), memarg(0, 108), op(0x6a), end),
		// 5 tables: () -> i32
		fn(nil,
			op(0xd0, 0x70), i32c(2), fc(15, 0), // table.grow -> 8
			fc(16, 0), op(0x6a), // table.size -> 10
			i32c(5), op(0xd2, 1), op(0x26, 0), // table.set 0 [5] = ref.func 1
			i32c(10), i32c(5), op(0x11, 2, 0), op(0x6a), // call_indirect (type 2) -> 45
			i32c(6), op(0xd0, 0x70), i32c(0), fc(17, 0), // table.fill
			i32c(1), i32c(2), i32c(0), op(0x1c, 1, byte(i32)), op(0x6a), // select (result i32) -> 2
			i32c(5), op(0x25, 0), op(0xd1), op(0x6a), // ref.is_null (table.get 5) -> 0
			i32c(0), i32c(0), i32c(1), fc(12, 5, 0), fc(13, 5), // table.init 5; elem.drop 5
			i32c(6), i32c(1), i32c(1), fc(14, 0, 0), // table.copy
			end),
		// 6 tail: (i32) -> i32
		fn(nil, localGet(0), op(0x12, 1), end),
		// 7 exc: () -> i32
		fn(nil,
			op(0x02, byte(i32)),
			op(0x1f, 0x40), vec(op(0x00, 0, 0)), // try_table (catch 0 0)
			i32c(7), op(0x08, 0), end, // throw 0
			i32c(0), end, end),
		// 8 misc: () -> i64
		fn(nil,
			op(0x44), f64bytes(-1.5e30), fc(6), // i64.trunc_sat_f64_s -> MinInt64
			i64c(-129), op(0xc2), op(0x7c), // i64.extend8_s -> 127
			i32c(math.MinInt32), op(0xc1), op(0xac), op(0x7c), // i32.extend16_s -> 0
			op(0x43), f32bytes(3.5), fc(1), op(0xad), op(0x7c), // i32.trunc_sat_f32_u -> 3
			end),
		// 9 spin: () -> ()
		fn(nil, loopEmpty, br(0), end, end),
	)
	refFunc := func(i int) []byte { return cat(op(0xd2), u32(i), end) }
	names := vec(
		cat(u32(0), str("simd_fn")),
		cat(u32(1), str("loopsum_fn")),
	)
	localNames := vec(cat(u32(1), vec(cat(u32(0), str("n")), cat(u32(2), str("sum")))))
	globalNames := vec(cat(u32(0), str("g0")))
	return module(
		custom("before.type", []byte("hello")),
		sec(secType, vec(
			functype(nil, nil),
			functype(nil, []ValType{i32}),
			functype([]ValType{i32}, []ValType{i32}),
			functype([]ValType{i32, i32}, []ValType{i32, i32}),
			functype(nil, []ValType{i64}),
			functype([]ValType{i32}, nil),
		)),
		sec(secFunction, vec(u32(1), u32(2), u32(3), u32(1), u32(1), u32(1), u32(2), u32(1), u32(4), u32(0))),
		sec(secTable, vec(cat(op(0x70, 0x01), u32(8), u32(16)))),
		sec(secMemory, vec(op(0x03, 1, 2))),
		sec(secTag, vec(op(0x00, 5))),
		sec(secGlobal, vec(
			cat(op(byte(i32), 1), i32c(1), i32c(2), op(0x6a), end), // extended const
			global(ValFuncRef, false, op(0xd2, 1)),
			global(v128, true, simd(12, i32x4(1, 2, 3, 4)...)),
			global(i64, true, i64c(-1234567890123)),
		)),
		sec(secExport, vec(
			export("simd", ExternFunc, 0), export("loopsum", ExternFunc, 1), export("swap", ExternFunc, 2),
			export("atomics", ExternFunc, 3), export("bulk", ExternFunc, 4), export("tables", ExternFunc, 5),
			export("tail", ExternFunc, 6), export("exc", ExternFunc, 7), export("misc", ExternFunc, 8),
			export("spin", ExternFunc, 9),
			export("mem", ExternMemory, 0), export("tab", ExternTable, 0), export("g0", ExternGlobal, 0),
		)),
		sec(secElement, vec(
			cat(u32(0), i32c(0), end, vec(u32(1), u32(2))),
			cat(u32(1), op(0x00), vec(u32(0))),
			cat(u32(2), u32(0), i32c(2), end, op(0x00), vec(u32(1))),
			cat(u32(3), op(0x00), vec(u32(1), u32(5), u32(6))),
			cat(u32(4), i32c(3), end, vec(refFunc(1))),
			cat(u32(5), op(0x70), vec(op(0xd0, 0x70, 0x0b))),
			cat(u32(6), u32(0), i32c(4), end, op(0x70), vec(refFunc(2))),
			cat(u32(7), op(0x70), vec(refFunc(3))),
		)),
		sec(secDataCount, u32(2)),
		sec(secCode, code),
		custom("after.code", nil),
		sec(secData, vec(
			cat(u32(0), i32c(200), end, str("hello")),
			cat(u32(1), str("\x2a\x00\x00\x00")),
		)),
		custom("name", cat(
			op(1), u32(len(names)), names,
			op(2), u32(len(localNames)), localNames,
			op(7), u32(len(globalNames)), globalNames, // extended names: skipped by runtimes
		)),
	)
}

// legacyEHModule uses the legacy exception-handling encoding (try, catch,
// catch_all, rethrow, delegate), which wazero does not run but Parse and
// Instrument must handle.
func legacyEHModule() []byte {
	return module(
		sec(secType, vec(functype(nil, nil), functype([]ValType{ValI32}, nil))),
		sec(secFunction, vec(u32(0))),
		sec(secTag, vec(op(0x00, 1))),
		sec(secCode, vec(fn(nil,
			op(0x06, 0x40),                                     // try
			op(0x06, 0x40), loopEmpty, br(0), end, op(0x18, 0), // try loop ... delegate 0
			op(0x07, 0), op(0x1a), // catch 0; drop
			op(0x19), op(0x09, 0), // catch_all; rethrow 0
			end,
			op(0x06, 0x40), i32c(1), op(0x08, 0), op(0x19), end, // try (throw 0) catch_all end
			end))),
	)
}

// manyFuncsModule imports one function ("env" "seven", () -> i32) and
// defines 130 more, so that adding an import moves defined function 126
// (index 127, one LEB byte) to index 128 (two bytes). Function i returns
// 1000 + i. Every place a function index can be is used: calls, ref.func
// in code and in a global's initializer, an element segment, exports, the
// start function (which sets global 1 to 1), and the name section.
func manyFuncsModule() []byte {
	const n = 130
	var types []uint32
	var bodies, names [][]byte
	for i := 1; i <= n; i++ {
		types = append(types, 1)
		bodies = append(bodies, fn(nil, i32c(int32(1000+i)), end))
		names = append(names, cat(u32(i), str(fmt.Sprintf("f%d", i))))
	}
	types[n-1] = 0 // the start function: () -> ()
	bodies[n-1] = fn(nil, i32c(1), globalSet(1), end)
	funcs := make([][]byte, n)
	for i, ty := range types {
		funcs[i] = u32(int(ty))
	}
	// Function 1 calls 127; 127 calls 126 by index and 128 through the table.
	bodies[0] = fn(nil, call(127), end)
	bodies[126] = fn(nil, call(126), op(0x1a), i32c(1), op(0x11), u32(1), u32(0), end)
	return module(
		sec(secType, vec(functype(nil, nil), functype(nil, []ValType{ValI32}))),
		sec(secImport, vec(importEntry("env", "seven", ExternFunc, 1))),
		sec(secFunction, vec(funcs...)),
		sec(secTable, vec(cat([]byte{0x70, 0x00}, u32(2)))),
		sec(secGlobal, vec(
			cat([]byte{0x70, 0x00, 0xd2}, u32(127), end), // funcref = ref.func 127
			global(ValI32, true, i32c(0)),
		)),
		sec(secExport, vec(
			export("f127", ExternFunc, 127),
			export("calls127", ExternFunc, 1),
			export("f128", ExternFunc, 128),
			export("seven", ExternFunc, 0),
			export("started", ExternGlobal, 1),
		)),
		sec(secStart, u32(n)),
		sec(secElement, vec(cat(u32(0), i32c(0), end, vec(u32(126), u32(128))))),
		sec(secCode, vec(bodies...)),
		custom("name", cat([]byte{1}, u32(len(vec(names...))), vec(names...))),
	)
}
