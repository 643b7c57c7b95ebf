package wasmbin

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Defaults for InstrumentOptions.
const (
	DefaultGlobalExportPrefix = "__frost_g"
	DefaultInterruptExport    = "__frost_interrupt"
)

// InstrumentOptions says what Instrument adds.
type InstrumentOptions struct {
	// GlobalExportPrefix names the extra export of every defined mutable
	// global: GlobalExportName(GlobalExportPrefix, i), where i is the global's
	// index in the global index space (imports first). Default "__frost_g".
	GlobalExportPrefix string
	// InterruptExport is the export name of the interrupt global, a new
	// mutable i32 (initially 0) appended to the globals. It is added only
	// when Interrupt is set. Default "__frost_interrupt".
	InterruptExport string
	// Interrupt inserts `global.get $interrupt; if; unreachable; end` at the
	// start of every defined function body and right after every loop
	// instruction's block type, so that setting the interrupt global to a
	// non-zero value traps the guest at its next call or loop iteration.
	Interrupt bool
	// YieldEvery, if not zero, also makes every YieldEvery-th pass through
	// those same points execute `memory.grow 0` (a no-op) by counting down a
	// new, unexported mutable i32 global appended after the interrupt
	// global. wazero's compiler cannot be preempted by the Go scheduler
	// while it runs guest code, and memory.grow is a call out of compiled
	// code into Go: without such exits a guest that spins without calling
	// the host blocks every stop-the-world phase of Go's garbage collector,
	// which stops every goroutine of the process, including the one that
	// would set the interrupt global. A module without a memory gets an
	// empty one (0 pages, maximum 0), which it cannot see: memory index 0
	// was unused. The countdown costs about as much as the interrupt check
	// (BenchmarkLoop); YieldEvery bounds how long a collection waits for a
	// spinning guest: at 65536, a tight loop yields about every 60 µs.
	YieldEvery uint32
	// LiveExport, if not "", adds a function exported under that name, of
	// type () -> i32, that returns memory.size of memory 0 (0 if the
	// module has no memory and YieldEvery added none). It is the host's
	// liveness probe: a real call into the instance's compiled code that
	// reads its memory, with no effect on its state. The module must
	// define at least one function.
	LiveExport string
}

// GlobalExportName is the name Instrument exports global index under.
func GlobalExportName(prefix string, index uint32) string {
	return prefix + strconv.FormatUint(uint64(index), 10)
}

// Instrument returns a rewritten copy of b, which m was parsed from (if m is
// nil, Instrument parses b itself). The rewrite keeps every function,
// global, table, memory and tag index, adds no imports, keeps every
// existing export, and copies custom sections unchanged, so the module
// behaves as before except as InstrumentOptions describes. It fails if a
// generated export name is already taken. Instrument does not modify b or m
// and may be called concurrently.
func Instrument(b []byte, m *Module, opt InstrumentOptions) ([]byte, error) {
	if m == nil {
		var err error
		if m, err = Parse(b); err != nil {
			return nil, err
		}
	} else if len(m.src) != len(b) || (len(b) > 0 && &m.src[0] != &b[0]) {
		return nil, errors.New("wasm: instrument: the module was parsed from different bytes")
	}
	if opt.GlobalExportPrefix == "" {
		opt.GlobalExportPrefix = DefaultGlobalExportPrefix
	}
	if opt.InterruptExport == "" {
		opt.InterruptExport = DefaultInterruptExport
	}
	if !utf8.ValidString(opt.GlobalExportPrefix) || !utf8.ValidString(opt.InterruptExport) {
		return nil, errors.New("wasm: instrument: export names must be valid UTF-8")
	}

	// The new exports, encoded.
	taken := make(map[string]struct{}, len(m.Exports)+len(m.Globals)+1)
	for _, e := range m.Exports {
		taken[e.Name] = struct{}{}
	}
	var newExports []byte
	numNewExports := 0
	addExportKind := func(name string, kind ExternKind, index uint32) error {
		if _, dup := taken[name]; dup {
			return fmt.Errorf("wasm: instrument: export %q already exists", name)
		}
		taken[name] = struct{}{}
		newExports = appendU32(newExports, uint32(len(name)))
		newExports = append(newExports, name...)
		newExports = append(newExports, byte(kind))
		newExports = appendU32(newExports, index)
		numNewExports++
		return nil
	}
	addExport := func(name string, global uint32) error { return addExportKind(name, ExternGlobal, global) }
	for i, g := range m.Globals {
		if g.Mutable {
			idx := uint32(m.NumImportedGlobals + i)
			if err := addExport(GlobalExportName(opt.GlobalExportPrefix, idx), idx); err != nil {
				return nil, err
			}
		}
	}
	w := rewriter{m: m, src: b}
	next := uint32(m.NumImportedGlobals + len(m.Globals)) // next global index
	if opt.Interrupt {
		if err := addExport(opt.InterruptExport, next); err != nil {
			return nil, err
		}
		// (global (mut i32) (i32.const 0))
		w.add(secGlobal, 1, []byte{byte(ValI32), 1, 0x41, 0x00, 0x0b})
		// global.get $interrupt; if; unreachable; end
		w.check = appendU32([]byte{0x23}, next)
		w.check = append(w.check, 0x04, 0x40, 0x00, 0x0b)
		next++
	}
	if opt.YieldEvery > 0 {
		// (global (mut i32) (i32.const YieldEvery))
		g := appendSigned32([]byte{byte(ValI32), 1, 0x41}, int32(opt.YieldEvery))
		w.add(secGlobal, 1, append(g, 0x0b))
		w.check = appendYield(w.check, next, opt.YieldEvery, m.memory0Is64())
		if m.NumImportedMemories+len(m.Memories) == 0 {
			w.add(secMemory, 1, []byte{0x01, 0x00, 0x00}) // min 0, max 0
		}
	}
	if opt.LiveExport != "" {
		if !utf8.ValidString(opt.LiveExport) {
			return nil, errors.New("wasm: instrument: export names must be valid UTF-8")
		}
		if len(m.Funcs) == 0 || !w.has(secType) || !w.has(secCode) {
			return nil, errors.New("wasm: instrument: a liveness probe needs a module that defines functions")
		}
		if err := addExportKind(opt.LiveExport, ExternFunc, uint32(m.NumImportedFuncs+len(m.Funcs))); err != nil {
			return nil, err
		}
		w.add(secType, 1, []byte{0x60, 0x00, 0x01, byte(ValI32)}) // () -> i32
		w.add(secFunction, 1, appendU32(nil, uint32(len(m.Types))))
		body := []byte{0x00, 0x41, 0x00, 0x0b} // no locals; i32.const 0; end
		if m.NumImportedMemories+len(m.Memories) > 0 || opt.YieldEvery > 0 {
			body = []byte{0x00, 0x3f, 0x00, 0x0b} // no locals; memory.size 0; end
		}
		w.add(secCode, 1, append(appendU32(nil, uint32(len(body))), body...))
	}
	if numNewExports > 0 {
		w.add(secExport, numNewExports, newExports)
	}
	size := w.size()
	out := w.write(make([]byte, 0, size))
	if len(out) != size {
		return nil, fmt.Errorf("wasm: instrument: internal error: wrote %d bytes, planned %d", len(out), size)
	}
	return out, nil
}

// appendYield appends the countdown that runs memory.grow 0 every n-th time:
//
//	global.get $ctr; i32.eqz
//	if; i32.const n; global.set $ctr; i32.const 0; memory.grow 0; drop; end
//	global.get $ctr; i32.const 1; i32.sub; global.set $ctr
func appendYield(dst []byte, ctr, n uint32, mem64 bool) []byte {
	dst = appendU32(append(dst, 0x23), ctr)
	dst = append(dst, 0x45, 0x04, 0x40, 0x41)
	dst = appendSigned32(dst, int32(n))
	dst = appendU32(append(dst, 0x24), ctr)
	if mem64 {
		dst = append(dst, 0x42, 0x00)
	} else {
		dst = append(dst, 0x41, 0x00)
	}
	dst = append(dst, 0x40, 0x00, 0x1a, 0x0b)
	dst = appendU32(append(dst, 0x23), ctr)
	dst = append(dst, 0x41, 0x01, 0x6b)
	return appendU32(append(dst, 0x24), ctr)
}

// memory0Is64 reports whether memory 0 exists and uses 64-bit addresses.
func (m *Module) memory0Is64() bool {
	for _, im := range m.Imports {
		if im.Kind == ExternMemory {
			return im.Memory.Memory64
		}
	}
	return len(m.Memories) > 0 && m.Memories[0].Memory64
}

// rewriter writes the instrumented module. size computes the exact output
// length first so write never reallocates.
type rewriter struct {
	m     *Module
	src   []byte
	adds  [14]vecAdd // elements appended to (or forming) a section, by id
	check []byte     // inserted at function entries and loop headers, or nil
}

// vecAdd is n vector elements, encoded in b.
type vecAdd struct {
	n int
	b []byte
}

func (w *rewriter) add(id byte, n int, b []byte) {
	w.adds[id].n += n
	w.adds[id].b = append(w.adds[id].b, b...)
}

// sectionLen is the length of a whole section with content of n bytes.
func sectionLen(n int) int { return 1 + sizeU32(uint32(n)) + n }

// grownLen is the content length of vector section s (or of a new one if s
// is nil) after appending a.
func (w *rewriter) grownLen(s *section, a vecAdd) int {
	if s == nil {
		return sizeU32(uint32(a.n)) + len(a.b)
	}
	n, q, _ := readU32(w.src[:s.end], s.content)
	return sizeU32(n+uint32(a.n)) + (s.end - q) + len(a.b)
}

func (w *rewriter) codeLen(s section) int {
	a := w.adds[secCode]
	n, q, _ := readU32(w.src[:s.end], s.content)
	size := sizeU32(n+uint32(a.n)) + (s.end - q) + len(a.b)
	if w.check == nil {
		return size
	}
	prev := q
	for _, f := range w.m.bodies {
		oldLen := int(f.end - f.start)
		newLen := oldLen + (1+int(f.loops))*len(w.check)
		size += sizeU32(uint32(newLen)) - (int(f.start) - prev) + newLen - oldLen
		prev = int(f.end)
	}
	return size
}

// has reports whether the module has a section id.
func (w *rewriter) has(id byte) bool {
	for _, s := range w.m.sections {
		if s.id == id {
			return true
		}
	}
	return false
}

// creates reports whether section id must be created: something is added
// to it and the module has none. A created section goes before the first
// known section ranked after it, or at the end of the module.
func (w *rewriter) creates(id byte) bool {
	if w.adds[id].n == 0 {
		return false
	}
	for _, s := range w.m.sections {
		if s.id == id {
			return false
		}
	}
	return true
}

// newSectionsBefore calls f for each section to create before a known
// section with id next (0: the end of the module), in order.
func (w *rewriter) newSectionsBefore(next byte, created *[14]bool, f func(id byte)) {
	for _, id := range []byte{secMemory, secGlobal, secExport} {
		if !created[id] && w.creates(id) && (next == secCustom || sectionRank[next] > sectionRank[id]) {
			created[id] = true
			f(id)
		}
	}
}

func (w *rewriter) size() int {
	n := 8
	var created [14]bool
	newSection := func(id byte) { n += sectionLen(w.grownLen(nil, w.adds[id])) }
	for _, s := range w.m.sections {
		if s.id != secCustom {
			w.newSectionsBefore(s.id, &created, newSection)
		}
		switch {
		case s.id == secCode && (w.check != nil || w.adds[secCode].n > 0):
			n += sectionLen(w.codeLen(s))
		case w.adds[s.id].n > 0:
			n += sectionLen(w.grownLen(&s, w.adds[s.id]))
		default:
			n += s.end - s.start
		}
	}
	w.newSectionsBefore(secCustom, &created, newSection)
	return n
}

func (w *rewriter) write(out []byte) []byte {
	out = append(out, w.src[:8]...)
	var created [14]bool
	newSection := func(id byte) { out = w.appendVecSection(out, id, nil) }
	for _, s := range w.m.sections {
		if s.id != secCustom {
			w.newSectionsBefore(s.id, &created, newSection)
		}
		switch {
		case s.id == secCode && (w.check != nil || w.adds[secCode].n > 0):
			out = w.appendCode(out, s)
		case w.adds[s.id].n > 0:
			out = w.appendVecSection(out, s.id, &s)
		default:
			out = append(out, w.src[s.start:s.end]...)
		}
	}
	w.newSectionsBefore(secCustom, &created, newSection)
	return out
}

// appendVecSection appends vector section id made of s's elements (none if
// s is nil) followed by the added ones.
func (w *rewriter) appendVecSection(out []byte, id byte, s *section) []byte {
	a := w.adds[id]
	out = append(out, id)
	out = appendU32(out, uint32(w.grownLen(s, a)))
	if s == nil {
		out = appendU32(out, uint32(a.n))
	} else {
		n, q, _ := readU32(w.src[:s.end], s.content)
		out = appendU32(out, n+uint32(a.n))
		out = append(out, w.src[q:s.end]...)
	}
	return append(out, a.b...)
}

// appendCode appends the code section with the check inserted at every
// function entry and loop header, and the added bodies at the end.
func (w *rewriter) appendCode(out []byte, s section) []byte {
	a := w.adds[secCode]
	out = append(out, secCode)
	out = appendU32(out, uint32(w.codeLen(s)))
	n, q, _ := readU32(w.src[:s.end], s.content)
	out = appendU32(out, n+uint32(a.n))
	if w.check == nil {
		out = append(out, w.src[q:s.end]...)
		return append(out, a.b...)
	}
	loops := w.m.loops
	for _, f := range w.m.bodies {
		newLen := int(f.end-f.start) + (1+int(f.loops))*len(w.check)
		out = appendU32(out, uint32(newLen))
		out = append(out, w.src[f.start:f.code]...)
		out = append(out, w.check...)
		at := f.code
		for _, l := range loops[:f.loops] {
			out = append(out, w.src[at:l]...)
			out = append(out, w.check...)
			at = l
		}
		loops = loops[f.loops:]
		out = append(out, w.src[at:f.end]...)
	}
	return append(out, a.b...)
}
