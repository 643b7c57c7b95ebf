package wasmbin

import (
	"errors"
	"fmt"
	"sort"
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
	// YieldImport, if its Name is not "", makes the countdown call a host
	// function instead of running `memory.grow 0`: the function imported
	// as (YieldImport.Module, YieldImport.Name) with type () -> (), which
	// Instrument adds. memory.grow 0 reaches only wazero; a call reaches
	// the host, which can decide at each yield whether the guest goes on
	// (Frost's fair scheduler parks guests that have run too long there).
	// The import takes function index NumImportedFuncs, so every defined
	// function moves up by one: Instrument renumbers every reference to one
	// (calls, ref.func, exports, the start function, element segments, the
	// function and local names of the "name" section) and refuses a module
	// whose code names a function it does not have. Other custom sections
	// that hold function indices (branch hints, extended names) are copied
	// unchanged.
	YieldImport ImportName
	// LiveExport, if not "", adds a function exported under that name, of
	// type () -> i32, that returns memory.size of memory 0 (0 if the
	// module has no memory and YieldEvery added none). It is the host's
	// liveness probe: a real call into the instance's compiled code that
	// reads its memory, with no effect on its state. The module must
	// define at least one function.
	LiveExport string
}

// ImportName names an import.
type ImportName struct{ Module, Name string }

// GlobalExportName is the name Instrument exports global index under.
func GlobalExportName(prefix string, index uint32) string {
	return prefix + strconv.FormatUint(uint64(index), 10)
}

// Instrument returns a rewritten copy of b, which m was parsed from (if m is
// nil, Instrument parses b itself). The rewrite keeps every function (but
// see YieldImport), global, table, memory and tag index, adds no other
// import, keeps every existing export, and copies custom sections
// unchanged (but see YieldImport), so the module behaves as before except
// as InstrumentOptions describes. It fails if a generated export name is
// already taken. Instrument does not modify b or m and may be called
// concurrently.
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
		newExports = appendName(newExports, name)
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
	types := uint32(len(m.Types))                      // next type index
	funcs := uint32(m.NumImportedFuncs + len(m.Funcs)) // next function index
	yieldCall := []byte(nil)                           // call $yield, when the countdown calls the host
	if opt.YieldEvery > 0 && opt.YieldImport.Name != "" {
		if !utf8.ValidString(opt.YieldImport.Module) || !utf8.ValidString(opt.YieldImport.Name) {
			return nil, errors.New("wasm: instrument: import names must be valid UTF-8")
		}
		var refs []uint32
		if _, err := parse(b, &refs); err != nil {
			return nil, err
		}
		w.renumber(refs, uint32(m.NumImportedFuncs))
		w.add(secType, 1, []byte{0x60, 0x00, 0x00}) // () -> ()
		im := appendName(appendName(nil, opt.YieldImport.Module), opt.YieldImport.Name)
		w.add(secImport, 1, appendU32(append(im, byte(ExternFunc)), types))
		yieldCall = appendU32([]byte{0x10}, uint32(m.NumImportedFuncs))
		types++
		funcs++
	}
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
		w.check = appendYield(w.check, next, opt.YieldEvery, m.memory0Is64(), yieldCall)
		if yieldCall == nil && m.NumImportedMemories+len(m.Memories) == 0 {
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
		if err := addExportKind(opt.LiveExport, ExternFunc, funcs); err != nil {
			return nil, err
		}
		w.add(secType, 1, []byte{0x60, 0x00, 0x01, byte(ValI32)}) // () -> i32
		w.add(secFunction, 1, appendU32(nil, types))
		body := []byte{0x00, 0x41, 0x00, 0x0b} // no locals; i32.const 0; end
		if m.NumImportedMemories+len(m.Memories) > 0 || (opt.YieldEvery > 0 && yieldCall == nil) {
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

// appendYield appends the countdown that runs memory.grow 0 (or, if call
// is not nil, call) every n-th time:
//
//	global.get $ctr; i32.eqz
//	if; i32.const n; global.set $ctr; i32.const 0; memory.grow 0; drop; end
//	global.get $ctr; i32.const 1; i32.sub; global.set $ctr
func appendYield(dst []byte, ctr, n uint32, mem64 bool, call []byte) []byte {
	dst = appendU32(append(dst, 0x23), ctr)
	dst = append(dst, 0x45, 0x04, 0x40, 0x41)
	dst = appendSigned32(dst, int32(n))
	dst = appendU32(append(dst, 0x24), ctr)
	switch {
	case call != nil:
		dst = append(dst, call...)
	case mem64:
		dst = append(dst, 0x42, 0x00, 0x40, 0x00, 0x1a)
	default:
		dst = append(dst, 0x41, 0x00, 0x40, 0x00, 0x1a)
	}
	dst = append(dst, 0x0b)
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

	// Renumbering (YieldImport): refs are the positions of every function
	// index in src; an index at or above firstDefined grows by one.
	// grow[i] is how many bytes longer refs[:i] are once renumbered.
	refs         []uint32
	grow         []int
	firstDefined uint32
}

// renumber makes the rewrite move every function index at or above
// firstDefined, found at refs, up by one.
func (w *rewriter) renumber(refs []uint32, firstDefined uint32) {
	w.refs, w.firstDefined = refs, firstDefined
	w.grow = make([]int, len(refs)+1)
	for i, at := range refs {
		v, q, _ := readU32(w.src, int(at))
		w.grow[i+1] = w.grow[i] + sizeU32(w.moved(v)) - (q - int(at))
	}
}

// moved is function index v after renumbering.
func (w *rewriter) moved(v uint32) uint32 {
	if v >= w.firstDefined {
		return v + 1
	}
	return v
}

// refsIn returns the range of refs within src[from:to].
func (w *rewriter) refsIn(from, to int) (i, j int) {
	i = sort.Search(len(w.refs), func(k int) bool { return int(w.refs[k]) >= from })
	j = i + sort.Search(len(w.refs)-i, func(k int) bool { return int(w.refs[i+k]) >= to })
	return i, j
}

// plen is the length of src[from:to] once renumbered.
func (w *rewriter) plen(from, to int) int {
	if len(w.refs) == 0 {
		return to - from
	}
	i, j := w.refsIn(from, to)
	return to - from + w.grow[j] - w.grow[i]
}

// pcopy appends src[from:to], renumbered.
func (w *rewriter) pcopy(out []byte, from, to int) []byte {
	if len(w.refs) > 0 {
		i, j := w.refsIn(from, to)
		for _, at := range w.refs[i:j] {
			out = append(out, w.src[from:at]...)
			v, q, _ := readU32(w.src, int(at))
			out = appendU32(out, w.moved(v))
			from = q
		}
	}
	return append(out, w.src[from:to]...)
}

// renumbers reports whether section s holds function indices to move.
func (w *rewriter) renumbers(s section) bool {
	if len(w.refs) == 0 {
		return false
	}
	i, j := w.refsIn(s.content, s.end)
	return i < j
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
	return sizeU32(n+uint32(a.n)) + w.plen(q, s.end) + len(a.b)
}

// bodyLen is the length of function body f once rewritten.
func (w *rewriter) bodyLen(f funcBody) int {
	return int(f.code-f.start) + (1+int(f.loops))*len(w.check) + w.plen(int(f.code), int(f.end))
}

func (w *rewriter) codeLen(s section) int {
	a := w.adds[secCode]
	n, q, _ := readU32(w.src[:s.end], s.content)
	size := sizeU32(n+uint32(a.n)) + (s.end - q) + len(a.b)
	if w.check == nil && len(w.refs) == 0 {
		return size
	}
	prev := q
	for _, f := range w.m.bodies {
		oldLen := int(f.end - f.start)
		newLen := w.bodyLen(f)
		size += sizeU32(uint32(newLen)) - (int(f.start) - prev) + newLen - oldLen
		prev = int(f.end)
	}
	return size
}

// nameLen is the content length of the "name" section s once renumbered:
// its subsections' sizes change with their contents.
func (w *rewriter) nameLen(s section) int {
	n := 0
	w.nameSubsections(s, func(id byte, from, to int) {
		if id == 0xff { // the section's name
			n += to - from
			return
		}
		size := w.plen(from, to)
		n += 1 + sizeU32(uint32(size)) + size
	})
	return n
}

// appendNames appends the "name" section s, renumbered.
func (w *rewriter) appendNames(out []byte, s section) []byte {
	out = append(out, secCustom)
	out = appendU32(out, uint32(w.nameLen(s)))
	w.nameSubsections(s, func(id byte, from, to int) {
		if id == 0xff { // the section's name
			out = append(out, w.src[from:to]...)
			return
		}
		out = append(out, id)
		out = appendU32(out, uint32(w.plen(from, to)))
		out = w.pcopy(out, from, to)
	})
	return out
}

// nameSubsections calls f with the section's own name (id 0xff, copied as
// is) and then each subsection's id and contents. Parse checked their sizes.
func (w *rewriter) nameSubsections(s section, f func(id byte, from, to int)) {
	l, p, _ := readU32(w.src[:s.end], s.content)
	p += int(l)
	f(0xff, s.content, p)
	for p < s.end {
		id := w.src[p]
		size, q, _ := readU32(w.src[:s.end], p+1)
		f(id, q, q+int(size))
		p = q + int(size)
	}
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
	for _, id := range []byte{secType, secImport, secMemory, secGlobal, secExport} {
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
		case s.id == secCode && (w.check != nil || w.adds[secCode].n > 0 || len(w.refs) > 0):
			n += sectionLen(w.codeLen(s))
		case w.adds[s.id].n > 0:
			n += sectionLen(w.grownLen(&s, w.adds[s.id]))
		case s.id == secCustom && w.renumbers(s):
			n += sectionLen(w.nameLen(s))
		case w.renumbers(s):
			n += sectionLen(w.plen(s.content, s.end))
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
		case s.id == secCode && (w.check != nil || w.adds[secCode].n > 0 || len(w.refs) > 0):
			out = w.appendCode(out, s)
		case w.adds[s.id].n > 0:
			out = w.appendVecSection(out, s.id, &s)
		case s.id == secCustom && w.renumbers(s):
			out = w.appendNames(out, s)
		case w.renumbers(s):
			out = append(out, s.id)
			out = appendU32(out, uint32(w.plen(s.content, s.end)))
			out = w.pcopy(out, s.content, s.end)
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
		out = w.pcopy(out, q, s.end)
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
	if w.check == nil && len(w.refs) == 0 {
		out = append(out, w.src[q:s.end]...)
		return append(out, a.b...)
	}
	loops := w.m.loops
	for _, f := range w.m.bodies {
		out = appendU32(out, uint32(w.bodyLen(f)))
		out = append(out, w.src[f.start:f.code]...)
		out = append(out, w.check...)
		at := f.code
		for _, l := range loops[:f.loops] {
			out = w.pcopy(out, int(at), int(l))
			out = append(out, w.check...)
			at = l
		}
		loops = loops[f.loops:]
		out = w.pcopy(out, int(at), int(f.end))
	}
	return append(out, a.b...)
}
