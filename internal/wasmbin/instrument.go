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
	addExport := func(name string, global uint32) error {
		if _, dup := taken[name]; dup {
			return fmt.Errorf("wasm: instrument: export %q already exists", name)
		}
		taken[name] = struct{}{}
		newExports = appendU32(newExports, uint32(len(name)))
		newExports = append(newExports, name...)
		newExports = append(newExports, byte(ExternGlobal))
		newExports = appendU32(newExports, global)
		numNewExports++
		return nil
	}
	for i, g := range m.Globals {
		if g.Mutable {
			idx := uint32(m.NumImportedGlobals + i)
			if err := addExport(GlobalExportName(opt.GlobalExportPrefix, idx), idx); err != nil {
				return nil, err
			}
		}
	}
	interrupt := uint32(m.NumImportedGlobals + len(m.Globals))
	var newGlobal, check []byte
	if opt.Interrupt {
		if err := addExport(opt.InterruptExport, interrupt); err != nil {
			return nil, err
		}
		// (global (mut i32) (i32.const 0))
		newGlobal = []byte{byte(ValI32), 1, 0x41, 0x00, 0x0b}
		// global.get $interrupt; if; unreachable; end
		check = appendU32([]byte{0x23}, interrupt)
		check = append(check, 0x04, 0x40, 0x00, 0x0b)
	}

	w := rewriter{m: m, src: b, newExports: newExports, numNewExports: numNewExports, newGlobal: newGlobal, check: check}
	out := make([]byte, 0, w.size())
	out = w.write(out)
	return out, nil
}

// rewriter writes the instrumented module. size computes the exact output
// length first so write never reallocates.
type rewriter struct {
	m             *Module
	src           []byte
	newExports    []byte
	numNewExports int
	newGlobal     []byte // one global, or nil
	check         []byte // the interrupt check, or nil
}

// sectionLen is the length of a whole section with content of n bytes.
func sectionLen(n int) int { return 1 + sizeU32(uint32(n)) + n }

// grownVec is the length of a vector section's content after adding extra
// elements of extraBytes to an existing one (or creating it if s is nil).
func (w *rewriter) grownVec(s *section, extra, extraBytes int) int {
	if s == nil {
		return sizeU32(uint32(extra)) + extraBytes
	}
	n, q, _ := readU32(w.src[:s.end], s.content)
	return sizeU32(n+uint32(extra)) + (s.end - q) + extraBytes
}

func (w *rewriter) codeLen(s section) int {
	n := s.end - s.content
	if w.check == nil {
		return n
	}
	prev := w.codeCountEnd(s)
	for _, f := range w.m.bodies {
		oldLen := int(f.end - f.start)
		newLen := oldLen + (1+int(f.loops))*len(w.check)
		n += sizeU32(uint32(newLen)) - (int(f.start) - prev) + newLen - oldLen
		prev = int(f.end)
	}
	return n
}

func (w *rewriter) codeCountEnd(s section) int {
	_, q, _ := readU32(w.src[:s.end], s.content)
	return q
}

// needsGlobal and needsExport report whether a global or export section must
// be created. A created section goes before the first known section ranked
// after it, or at the end of the module.
func (w *rewriter) needsGlobal() bool { return w.newGlobal != nil && w.find(secGlobal) == nil }
func (w *rewriter) needsExport() bool { return w.numNewExports > 0 && w.find(secExport) == nil }

func (w *rewriter) find(id byte) *section {
	for i := range w.m.sections {
		if w.m.sections[i].id == id {
			return &w.m.sections[i]
		}
	}
	return nil
}

func (w *rewriter) size() int {
	n := 8
	if w.needsGlobal() {
		n += sectionLen(w.grownVec(nil, 1, len(w.newGlobal)))
	}
	if w.needsExport() {
		n += sectionLen(w.grownVec(nil, w.numNewExports, len(w.newExports)))
	}
	for _, s := range w.m.sections {
		switch {
		case s.id == secGlobal && w.newGlobal != nil:
			n += sectionLen(w.grownVec(&s, 1, len(w.newGlobal)))
		case s.id == secExport && w.numNewExports > 0:
			n += sectionLen(w.grownVec(&s, w.numNewExports, len(w.newExports)))
		case s.id == secCode && w.check != nil:
			n += sectionLen(w.codeLen(s))
		default:
			n += s.end - s.start
		}
	}
	return n
}

func (w *rewriter) write(out []byte) []byte {
	out = append(out, w.src[:8]...)
	addGlobal, addExport := w.needsGlobal(), w.needsExport()
	emitNew := func(before byte) {
		if addGlobal && (before == 0 || sectionRank[before] > sectionRank[secGlobal]) {
			out = w.appendVecSection(out, secGlobal, nil, 1, w.newGlobal)
			addGlobal = false
		}
		if addExport && (before == 0 || sectionRank[before] > sectionRank[secExport]) {
			out = w.appendVecSection(out, secExport, nil, w.numNewExports, w.newExports)
			addExport = false
		}
	}
	for _, s := range w.m.sections {
		if s.id != secCustom {
			emitNew(s.id)
		}
		switch {
		case s.id == secGlobal && w.newGlobal != nil:
			out = w.appendVecSection(out, secGlobal, &s, 1, w.newGlobal)
		case s.id == secExport && w.numNewExports > 0:
			out = w.appendVecSection(out, secExport, &s, w.numNewExports, w.newExports)
		case s.id == secCode && w.check != nil:
			out = w.appendCode(out, s)
		default:
			out = append(out, w.src[s.start:s.end]...)
		}
	}
	emitNew(0)
	return out
}

// appendVecSection appends a vector section made of s's elements (if s is
// not nil) followed by extra more elements encoded in extraBytes.
func (w *rewriter) appendVecSection(out []byte, id byte, s *section, extra int, extraBytes []byte) []byte {
	out = append(out, id)
	out = appendU32(out, uint32(w.grownVec(s, extra, len(extraBytes))))
	if s == nil {
		out = appendU32(out, uint32(extra))
	} else {
		n, q, _ := readU32(w.src[:s.end], s.content)
		out = appendU32(out, n+uint32(extra))
		out = append(out, w.src[q:s.end]...)
	}
	return append(out, extraBytes...)
}

// appendCode appends the code section with the interrupt check inserted at
// every function entry and loop header.
func (w *rewriter) appendCode(out []byte, s section) []byte {
	out = append(out, secCode)
	out = appendU32(out, uint32(w.codeLen(s)))
	out = append(out, w.src[s.content:w.codeCountEnd(s)]...)
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
	return out
}
