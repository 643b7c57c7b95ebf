// Package wasmbin parses, checks and rewrites WebAssembly core module
// binaries before Frost hands them to wazero.
//
// Parse decodes a module's structure (types, imports, functions, memories,
// globals, exports, custom sections) and scans every function body, so that
// a malformed upload is rejected with a precise, user-facing error (what is
// wrong, in which section, at which byte offset) and so that Frost learns
// things only the code reveals, such as whether the guest mutates tables or
// drops segments: instance state outside linear memory and globals that a
// snapshot would not capture. The scanner understands the MVP and the
// widely used extensions: multi-value, bulk memory, sign extension,
// saturating float-to-int, reference types, SIMD, threads, tail calls,
// typed function references and exception handling (try_table, and the
// legacy try/catch/delegate encoding).
//
// Instrument rewrites a module, keeping every existing index, for these
// reasons:
//
//   - Exported mutable globals. wazero can read and write a global from the
//     host only if the module exports it, and a snapshot of an instance must
//     save and restore every mutable global. Instrument exports each
//     defined mutable global i as "__frost_g<i>".
//
//   - Cheap interruption. wazero's WithCloseOnContextDone makes compiled code
//     leave to Go at every loop back-edge, which costs 22-120x on hot loops
//     (BenchmarkLoop: about 100x on a tight one). Instead, like Wasmtime's
//     epoch interruption, Instrument appends a mutable i32 global
//     "__frost_interrupt" and inserts `global.get; if; unreachable; end` at
//     every function entry and at the top of every loop body. The host
//     stops a runaway guest by setting the global to 1: the guest traps at
//     its next call or loop iteration, and the check costs a load and a
//     branch (about 0.3 ns per iteration).
//
//   - Yielding to the Go scheduler. Go cannot preempt a goroutine while it
//     runs wazero-compiled code, so a guest spinning without host calls
//     blocks every stop-the-world phase of the garbage collector, and with
//     it every goroutine of the process, including the one that would set
//     the interrupt global. InstrumentOptions.YieldEvery adds a countdown
//     to the same check points that executes `memory.grow 0` (a no-op that
//     leaves compiled code for Go) every N passes. A node running wazero's
//     compiler needs it. With InstrumentOptions.YieldImport the countdown
//     calls a host function instead, so that the host itself decides at
//     each yield whether the guest goes on (Frost's fair CPU scheduler).
//     That adds a function import, which moves every defined function's
//     index up by one: the one rewrite that renumbers (calls, ref.func,
//     exports, start, element segments, function and local names).
//
// Rewriting is linear and copies unchanged bytes in large chunks: Parse
// records where each function's instructions and loops start, so
// Instrument only re-encodes the sizes of the function bodies and of the
// sections it grows (code, global, export; memory when YieldEvery needs
// one; type and import for YieldImport). Custom sections, including "name"
// and DWARF, are copied unchanged (but for the function indices of "name"
// when YieldImport renumbers); DWARF code offsets are not adjusted.
package wasmbin
