package wasmbin

import (
	"bytes"
	"fmt"
	"unicode/utf8"
)

// Section ids.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
	secTag       = 13
)

// sectionRank is the position a known section must have in a module; custom
// sections (rank 0) may appear anywhere.
var sectionRank = [...]int{
	secType:      1,
	secImport:    2,
	secFunction:  3,
	secTable:     4,
	secMemory:    5,
	secTag:       6,
	secGlobal:    7,
	secExport:    8,
	secStart:     9,
	secElement:   10,
	secDataCount: 11,
	secCode:      12,
	secData:      13,
}

var magic = []byte{0x00, 'a', 's', 'm'}

// maxLocals bounds the locals of one function, as V8 and Wasmtime do.
// wazero allocates a slice of the declared size before checking anything
// else, so without a bound a few bytes could ask it for 4 GiB per function.
const maxLocals = 50000

// Module is the decoded structure of a core module: enough to inspect its
// interface and to rewrite it with Instrument. It keeps a reference to the
// bytes it was parsed from. A Module is not modified after Parse returns and
// is safe for concurrent use.
type Module struct {
	Types    []FuncType
	Imports  []Import
	Funcs    []uint32    // type index of each defined function
	Tables   []TableType // defined tables
	Memories []Limits    // defined memories
	Tags     []uint32    // type index of each defined exception tag
	Globals  []GlobalType
	Exports  []Export
	Start    *uint32 // start function index, if any

	NumImportedFuncs, NumImportedTables, NumImportedMemories, NumImportedGlobals, NumImportedTags int

	NumElemSegments int
	NumDataSegments int
	HasDataCount    bool // the module has a data count section

	Custom []CustomSection // in module order

	// MutatesTables reports that some function body contains table.set,
	// table.grow, table.fill, table.copy or table.init: instance state other
	// than linear memory and globals changes at run time.
	MutatesTables bool
	// GrowsTables reports that some function body contains table.grow.
	GrowsTables bool
	// DropsSegments reports that some function body contains data.drop or
	// elem.drop.
	DropsSegments bool

	src      []byte
	sections []section
	bodies   []funcBody
	loops    []uint32 // every body's loop positions, in module order
}

// section locates one section in the module.
type section struct {
	id      byte
	start   int // the id byte
	content int // after the size
	end     int
}

// funcBody locates one function body in the code section.
type funcBody struct {
	start uint32 // after the body's size
	code  uint32 // first instruction, after the locals
	end   uint32
	loops uint32 // number of loop instructions
}

// Parse decodes the structure of the core module b and scans every function
// body. It checks the binary format (section order and sizes, counts,
// indices that refer to earlier sections, instruction encodings, block
// nesting) but does not type-check code; the runtime does that. Errors are
// ErrNotWasm, ErrUnsupportedVersion (both wrapped with detail) or a
// *FormatError. The Module refers to b, which must not change afterwards.
func Parse(b []byte) (*Module, error) { return parse(b, nil) }

// parse is Parse; with refs not nil it also appends to *refs, in module
// order, the position of every function index the module encodes: in
// call, return_call and ref.func instructions (function bodies and
// constant expressions), exports, the start section, element segments and
// the function and local names of the "name" section. Instrument renumbers
// them when it adds a function import.
func parse(b []byte, refs *[]uint32) (*Module, error) {
	if err := checkHeader(b); err != nil {
		return nil, err
	}
	if uint64(len(b)) > 1<<32-1 {
		return nil, &FormatError{Offset: 0, Msg: "module is larger than 4 GiB"}
	}
	secs, ferr := splitSections(b)
	if ferr != nil {
		return nil, ferr
	}
	m := &Module{src: b, sections: secs}
	p := &parser{m: m, refs: refs}
	for _, s := range secs {
		p.b, p.pos, p.sec = b[:s.end], s.content, sectionName(s.id)
		p.section(s)
		if p.err == nil && p.pos != s.end {
			p.fail(p.pos, "%d unexpected bytes after the section's contents", s.end-p.pos)
		}
		if p.err != nil {
			return nil, p.err
		}
	}
	if ferr := p.finish(); ferr != nil {
		return nil, ferr
	}
	return m, nil
}

func checkHeader(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("wasm: %w: the file is empty", ErrNotWasm)
	}
	if !bytes.HasPrefix(b, magic) {
		if len(b) < len(magic) && bytes.HasPrefix(magic, b) {
			return &FormatError{Offset: len(b), Msg: fmt.Sprintf("module header is truncated (%d of 8 bytes)", len(b))}
		}
		return fmt.Errorf("wasm: %w: %s", ErrNotWasm, describeNotWasm(b))
	}
	if len(b) < 8 {
		return &FormatError{Offset: len(b), Msg: fmt.Sprintf("module header is truncated (%d of 8 bytes)", len(b))}
	}
	switch {
	case b[4] == 1 && b[5] == 0 && b[6] == 0 && b[7] == 0:
		return nil
	case b[6] == 1 && b[7] == 0: // layer 1
		return fmt.Errorf("wasm: %w: this is a WebAssembly component, not a core module", ErrUnsupportedVersion)
	}
	v := uint32(b[4]) | uint32(b[5])<<8 | uint32(b[6])<<16 | uint32(b[7])<<24
	return fmt.Errorf("wasm: %w: version %d (only version 1 core modules are supported)", ErrUnsupportedVersion, v)
}

// describeNotWasm says what b looks like instead.
func describeNotWasm(b []byte) string {
	t := bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	t = bytes.TrimLeft(t, " \t\r\n")
	head := t[:min(len(t), 512)]
	for i := 0; i < 3 && len(head) < len(t) && !utf8.Valid(head); i++ {
		head = head[:len(head)-1] // a rune cut by the 512-byte window
	}
	switch {
	case bytes.HasPrefix(t, []byte("(")) || bytes.HasPrefix(t, []byte(";;")):
		return "this looks like WebAssembly text format (.wat); compile it to a binary module first (for example with wat2wasm)"
	case bytes.HasPrefix(b, []byte("\x7fELF")):
		return "this is an ELF executable, not a WebAssembly module; build with GOOS=wasip1 GOARCH=wasm or a wasm32 target"
	case utf8.Valid(head) && bytes.IndexByte(head, 0) < 0:
		return "this is a text file; a WebAssembly module starts with the bytes 00 61 73 6d (\"\\0asm\")"
	}
	return fmt.Sprintf("it starts with the bytes % x, not 00 61 73 6d (\"\\0asm\")", b[:min(len(b), 4)])
}

// splitSections reads the framing of every section (id and size) and checks
// the order before any content is decoded, so a truncated or misordered
// module is rejected without further work.
func splitSections(b []byte) ([]section, *FormatError) {
	secs := make([]section, 0, 16)
	lastRank, lastID := 0, byte(0)
	for p := 8; p < len(b); {
		start := p
		id := b[p]
		if int(id) >= len(sectionNames) {
			return nil, &FormatError{Offset: start, Msg: fmt.Sprintf("unknown section id %d", id)}
		}
		size, q, st := readU32(b, p+1)
		if st != lebOK {
			msg := "section size is truncated: the module is cut short"
			if st == lebTooLarge {
				msg = "section size is not a valid u32"
			}
			return nil, &FormatError{Offset: start, Section: sectionName(id), Msg: msg}
		}
		if uint64(size) > uint64(len(b)-q) {
			return nil, &FormatError{Offset: start, Section: sectionName(id), Msg: fmt.Sprintf(
				"section size %d extends past the end of the module (%d bytes left): the module is truncated", size, len(b)-q)}
		}
		if id != secCustom {
			r := sectionRank[id]
			switch {
			case r == lastRank:
				return nil, &FormatError{Offset: start, Section: sectionName(id), Msg: "duplicate section"}
			case r < lastRank:
				return nil, &FormatError{Offset: start, Section: sectionName(id), Msg: fmt.Sprintf(
					"section out of order: it must come before the %q section", sectionName(lastID))}
			}
			lastRank, lastID = r, id
		}
		p = q + int(size)
		secs = append(secs, section{id: id, start: start, content: q, end: p})
	}
	return secs, nil
}

// parser decodes one section at a time. Errors are sticky: after the first,
// reads return zero values and p.err keeps the first error.
type parser struct {
	m   *Module
	b   []byte // the module, cut at the end of the current section
	pos int
	sec string
	err *FormatError

	funcSection *section
	codeSeen    bool

	refs *[]uint32 // see parse
}

// ref records that a function index starts at the current position.
func (p *parser) ref() {
	if p.refs != nil && p.err == nil {
		*p.refs = append(*p.refs, uint32(p.pos))
	}
}

func (p *parser) fail(off int, format string, args ...any) {
	if p.err == nil {
		p.err = &FormatError{Offset: off, Section: p.sec, Msg: fmt.Sprintf(format, args...)}
	}
}

func (p *parser) lebFail(what string, st lebStatus) {
	if st == lebEOF {
		p.fail(p.pos, "%s: unexpected end of section", what)
	} else {
		p.fail(p.pos, "%s: malformed LEB128 integer", what)
	}
}

func (p *parser) u32(what string) uint32 {
	if p.err != nil {
		return 0
	}
	v, q, st := readU32(p.b, p.pos)
	if st != lebOK {
		p.lebFail(what, st)
		return 0
	}
	p.pos = q
	return v
}

func (p *parser) u64(what string) uint64 {
	if p.err != nil {
		return 0
	}
	v, q, st := readU64(p.b, p.pos)
	if st != lebOK {
		p.lebFail(what, st)
		return 0
	}
	p.pos = q
	return v
}

func (p *parser) byte(what string) byte {
	if p.err != nil {
		return 0
	}
	if p.pos >= len(p.b) {
		p.fail(p.pos, "%s: unexpected end of section", what)
		return 0
	}
	p.pos++
	return p.b[p.pos-1]
}

// count reads a vector length. Every element takes at least one byte, so a
// count larger than what is left is malformed; checking it here also bounds
// the allocations made from counts.
// what names the count, as in "import count".
func (p *parser) count(what string) int {
	at := p.pos
	n := p.u32(what)
	if p.err == nil && uint64(n) > uint64(len(p.b)-p.pos) {
		p.fail(at, "%s %d is larger than the rest of the section (%d bytes)", what, n, len(p.b)-p.pos)
		return 0
	}
	return int(n)
}

// index reads an index that must be below limit.
func (p *parser) index(what string, limit int) uint32 {
	at := p.pos
	v := p.u32(what)
	if p.err == nil && uint64(v) >= uint64(limit) {
		p.fail(at, "%s %d out of range (there are %d)", what, v, limit)
	}
	return v
}

func (p *parser) name(what string) string {
	return string(p.nameBytes(what))
}

// nameBytes reads a name without copying it.
func (p *parser) nameBytes(what string) []byte {
	at := p.pos
	n := p.u32(what)
	if p.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(p.b)-p.pos) {
		p.fail(at, "%s of %d bytes extends past section end", what, n)
		return nil
	}
	s := p.b[p.pos : p.pos+int(n)]
	if !utf8.Valid(s) {
		p.fail(at, "%s is not valid UTF-8", what)
		return nil
	}
	p.pos += int(n)
	return s
}

func (p *parser) valType(what string) ValType {
	if p.err != nil {
		return 0
	}
	v, q, st := readValType(p.b, p.pos)
	switch st {
	case lebOK:
		p.pos = q
	case lebEOF:
		p.fail(p.pos, "%s: unexpected end of section", what)
	default:
		p.fail(p.pos, "%s: invalid value type 0x%02x", what, p.b[p.pos])
	}
	return v
}

func (p *parser) limits(what string, memory bool) Limits {
	at := p.pos
	flags := p.byte(what)
	if p.err != nil {
		return Limits{}
	}
	if flags > 7 {
		p.fail(at, "%s: invalid flags 0x%02x", what, flags)
		return Limits{}
	}
	l := Limits{HasMax: flags&1 != 0, Shared: flags&2 != 0, Memory64: flags&4 != 0}
	read := func() uint64 {
		if l.Memory64 {
			return p.u64(what)
		}
		return uint64(p.u32(what))
	}
	l.Min = read()
	if l.HasMax {
		l.Max = read()
	}
	if p.err != nil {
		return l
	}
	maxPages := uint64(1) << 16 // 4 GiB
	if l.Memory64 {
		maxPages = 1 << 48
	}
	switch {
	case l.HasMax && l.Max < l.Min:
		p.fail(at, "%s: minimum %d is larger than maximum %d", what, l.Min, l.Max)
	case l.Shared && !memory:
		p.fail(at, "%s: tables cannot be shared", what)
	case l.Shared && !l.HasMax:
		p.fail(at, "%s: a shared memory must have a maximum", what)
	case memory && (l.Min > maxPages || l.Max > maxPages):
		p.fail(at, "%s: more than %d pages", what, maxPages)
	}
	return l
}

func (p *parser) tableType(what string) TableType {
	if p.pos < len(p.b) && p.b[p.pos] == 0x40 {
		// Table with an initializer (function references): 0x40 0x00 tabletype expr.
		p.pos++
		if r := p.byte(what); r != 0 && p.err == nil {
			p.fail(p.pos-1, "%s: expected 0x00 after 0x40, got 0x%02x", what, r)
		}
		t := TableType{Elem: p.valType(what + " element type"), Limits: p.limits(what+" limits", false)}
		p.constExpr(what + " initializer")
		return t
	}
	return TableType{Elem: p.valType(what + " element type"), Limits: p.limits(what+" limits", false)}
}

func (p *parser) globalType(what string) GlobalType {
	g := GlobalType{Type: p.valType(what + " type")}
	at := p.pos
	switch mut := p.byte(what + " mutability"); {
	case p.err != nil:
	case mut > 1:
		p.fail(at, "%s: invalid mutability 0x%02x", what, mut)
	default:
		g.Mutable = mut == 1
	}
	return g
}

// constExpr skips a constant expression through its end.
func (p *parser) constExpr(what string) {
	if p.err != nil {
		return
	}
	s := scanner{numTypes: uint32(len(p.m.Types)), checkGlobals: true,
		numGlobals: uint32(p.m.NumImportedGlobals + len(p.m.Globals)),
		refs:       p.refs, numFuncs: uint32(p.numFuncs())}
	q, serr := s.expr(p.b, p.pos)
	if serr != nil {
		p.fail(serr.off, "%s: %s", what, serr.msg)
		return
	}
	p.pos = q
}

func (p *parser) numFuncs() int   { return p.m.NumImportedFuncs + len(p.m.Funcs) }
func (p *parser) numTables() int  { return p.m.NumImportedTables + len(p.m.Tables) }
func (p *parser) numMems() int    { return p.m.NumImportedMemories + len(p.m.Memories) }
func (p *parser) numGlobals() int { return p.m.NumImportedGlobals + len(p.m.Globals) }
func (p *parser) numTags() int    { return p.m.NumImportedTags + len(p.m.Tags) }

func (p *parser) section(s section) {
	m := p.m
	switch s.id {
	case secCustom:
		name := p.name("custom section name")
		if p.err == nil {
			m.Custom = append(m.Custom, CustomSection{Name: name, Offset: s.start, Data: p.b[p.pos:s.end:s.end]})
			if name == "name" {
				p.nameSection()
			}
			p.pos = s.end
		}
	case secType:
		p.types()
	case secImport:
		p.imports()
	case secFunction:
		p.funcSection = &s
		n := p.count("function count")
		m.Funcs = make([]uint32, n)
		for i := 0; i < n && p.err == nil; i++ {
			m.Funcs[i] = p.index("type index", len(m.Types))
		}
	case secTable:
		n := p.count("table count")
		m.Tables = make([]TableType, n)
		for i := 0; i < n && p.err == nil; i++ {
			m.Tables[i] = p.tableType("table")
		}
	case secMemory:
		n := p.count("memory count")
		m.Memories = make([]Limits, n)
		for i := 0; i < n && p.err == nil; i++ {
			m.Memories[i] = p.limits("memory limits", true)
		}
	case secTag:
		n := p.count("tag count")
		m.Tags = make([]uint32, n)
		for i := 0; i < n && p.err == nil; i++ {
			m.Tags[i] = p.tag()
		}
	case secGlobal:
		n := p.count("global count")
		m.Globals = make([]GlobalType, n)
		for i := 0; i < n && p.err == nil; i++ {
			m.Globals[i] = p.globalType("global")
			p.constExpr("global initializer")
		}
	case secExport:
		p.exports()
	case secStart:
		p.ref()
		idx := p.index("start function", p.numFuncs())
		m.Start = &idx
	case secElement:
		p.elements()
	case secDataCount:
		m.NumDataSegments = int(p.u32("data count"))
		m.HasDataCount = true
	case secCode:
		p.code()
	case secData:
		p.data()
	}
}

// nameSection checks the subsections of the "name" custom section that
// runtimes decode: module (0), function (1) and local (2) names. wazero
// sizes its tables from the counts in them before reading any entry, so an
// unchecked count of 2^32-1 in a module of a few bytes would make it
// allocate tens of gigabytes.
func (p *parser) nameSection() {
	sectionEnd := p.b
	defer func() {
		if p.err != nil {
			p.err.Msg = "name section: " + p.err.Msg
		}
		p.b = sectionEnd
	}()
	for p.pos < len(sectionEnd) && p.err == nil {
		id := p.byte("subsection id")
		sizeAt := p.pos
		size := p.u32("subsection size")
		if p.err != nil {
			return
		}
		if uint64(size) > uint64(len(sectionEnd)-p.pos) {
			p.fail(sizeAt, "subsection %d of %d bytes extends past section end", id, size)
			return
		}
		end := p.pos + int(size)
		p.b = sectionEnd[:end]
		switch id {
		case 0:
			p.nameBytes("module name")
		case 1:
			p.nameMap("function name count", "function index", "function name", true)
		case 2:
			n := p.count("local names function count")
			for i := 0; i < n && p.err == nil; i++ {
				p.ref()
				p.u32("function index")
				p.nameMap("local name count", "local index", "local name", false)
			}
		default:
			p.pos = end // other subsections are skipped by runtimes
		}
		if p.err == nil && p.pos != end {
			p.fail(p.pos, "subsection %d has %d unexpected bytes", id, end-p.pos)
		}
		p.b = sectionEnd
	}
}

// nameMap reads a name map; funcs says its indices are function indices.
func (p *parser) nameMap(countWhat, indexWhat, nameWhat string, funcs bool) {
	n := p.count(countWhat)
	for i := 0; i < n && p.err == nil; i++ {
		if funcs {
			p.ref()
		}
		p.u32(indexWhat)
		p.nameBytes(nameWhat)
	}
}

func (p *parser) types() {
	m := p.m
	n := p.count("type count")
	m.Types = make([]FuncType, n)
	// All parameter and result lists share one array: each value type takes
	// at least one byte, so the section's size bounds their number.
	vals := make([]ValType, 0, len(p.b)-p.pos)
	list := func(what, countWhat string) []ValType {
		k := p.count(countWhat)
		start := len(vals)
		for j := 0; j < k && p.err == nil; j++ {
			vals = append(vals, p.valType(what))
		}
		return vals[start:len(vals):len(vals)]
	}
	for i := 0; i < n && p.err == nil; i++ {
		at := p.pos
		switch form := p.byte("type form"); {
		case p.err != nil:
		case form == 0x60:
			m.Types[i].Params = list("parameter", "parameter count")
			m.Types[i].Results = list("result", "result count")
		case form == 0x4e || form == 0x50 || form == 0x4f || form == 0x5e || form == 0x5f:
			p.fail(at, "type %d: garbage-collection types are not supported", i)
		default:
			p.fail(at, "type %d: expected a function type (0x60), got 0x%02x", i, form)
		}
	}
}

func (p *parser) imports() {
	m := p.m
	n := p.count("import count")
	m.Imports = make([]Import, n)
	for i := 0; i < n && p.err == nil; i++ {
		im := &m.Imports[i]
		im.Module = p.name("import module name")
		im.Name = p.name("import name")
		at := p.pos
		im.Kind = ExternKind(p.byte("import kind"))
		if p.err != nil {
			return
		}
		switch im.Kind {
		case ExternFunc:
			im.TypeIndex = p.index("type index", len(m.Types))
			m.NumImportedFuncs++
		case ExternTable:
			im.Table = p.tableType("imported table")
			m.NumImportedTables++
		case ExternMemory:
			im.Memory = p.limits("imported memory limits", true)
			m.NumImportedMemories++
		case ExternGlobal:
			im.Global = p.globalType("imported global")
			m.NumImportedGlobals++
		case ExternTag:
			im.TypeIndex = p.tag()
			m.NumImportedTags++
		default:
			p.fail(at, "import %q %q: invalid kind 0x%02x", im.Module, im.Name, byte(im.Kind))
		}
	}
}

func (p *parser) tag() uint32 {
	at := p.pos
	if attr := p.byte("tag attribute"); attr != 0 && p.err == nil {
		p.fail(at, "tag attribute must be 0, got 0x%02x", attr)
	}
	return p.index("tag type index", len(p.m.Types))
}

func (p *parser) exports() {
	m := p.m
	n := p.count("export count")
	m.Exports = make([]Export, n)
	seen := make(map[string]struct{}, n)
	for i := 0; i < n && p.err == nil; i++ {
		at := p.pos
		e := &m.Exports[i]
		e.Name = p.name("export name")
		kindAt := p.pos
		e.Kind = ExternKind(p.byte("export kind"))
		if p.err != nil {
			return
		}
		var limit int
		switch e.Kind {
		case ExternFunc:
			limit = p.numFuncs()
			p.ref()
		case ExternTable:
			limit = p.numTables()
		case ExternMemory:
			limit = p.numMems()
		case ExternGlobal:
			limit = p.numGlobals()
		case ExternTag:
			limit = p.numTags()
		default:
			p.fail(kindAt, "export %q: invalid kind 0x%02x", e.Name, byte(e.Kind))
			return
		}
		e.Index = p.index("export "+e.Kind.String()+" index", limit)
		if _, dup := seen[e.Name]; dup {
			p.fail(at, "duplicate export name %q", e.Name)
		}
		seen[e.Name] = struct{}{}
	}
}

func (p *parser) elements() {
	n := p.count("element segment count")
	p.m.NumElemSegments = n
	for i := 0; i < n && p.err == nil; i++ {
		at := p.pos
		flags := p.u32("element segment flags")
		if p.err != nil {
			return
		}
		if flags > 7 {
			p.fail(at, "element segment %d: invalid flags %d", i, flags)
			return
		}
		if flags&3 == 2 { // active with an explicit table index
			p.index("element segment table index", p.numTables())
		}
		if flags&1 == 0 { // active: offset
			p.constExpr("element segment offset")
		}
		exprs := flags&4 != 0
		if flags&3 != 0 { // an element kind or reference type follows
			if exprs {
				p.valType("element segment reference type")
			} else {
				kindAt := p.pos
				if k := p.byte("element kind"); k != 0 && p.err == nil {
					p.fail(kindAt, "element segment %d: invalid element kind 0x%02x", i, k)
				}
			}
		}
		k := p.count("element count")
		for j := 0; j < k && p.err == nil; j++ {
			if exprs {
				p.constExpr("element expression")
			} else {
				p.ref()
				p.index("element function index", p.numFuncs())
			}
		}
	}
}

func (p *parser) code() {
	m := p.m
	p.codeSeen = true
	at := p.pos
	n := p.count("function body count")
	if p.err != nil {
		return
	}
	if n != len(m.Funcs) {
		p.fail(at, "the code section has %d function bodies but the function section declares %d functions", n, len(m.Funcs))
		return
	}
	m.bodies = make([]funcBody, n)
	sc := scanner{numTypes: uint32(len(m.Types)), collect: true, checkGlobals: true,
		numGlobals: uint32(m.NumImportedGlobals + len(m.Globals)),
		refs:       p.refs, numFuncs: uint32(p.numFuncs())}
	secEnd := p.b
	for i := 0; i < n && p.err == nil; i++ {
		sizeAt := p.pos
		size := p.u32("function body size")
		if p.err != nil {
			return
		}
		start := p.pos
		if uint64(size) > uint64(len(secEnd)-start) {
			p.fail(sizeAt, "function body %d extends past section end", i)
			return
		}
		end := start + int(size)
		p.b = secEnd[:end]
		var locals uint64
		groups := p.count("local group count")
		for j := 0; j < groups && p.err == nil; j++ {
			locals += uint64(p.u32("local count"))
			p.valType("local type")
		}
		if p.err == nil && locals > maxLocals {
			p.fail(start, "function body %d declares %d locals; the limit is %d", i, locals, maxLocals)
		}
		if p.err != nil {
			p.err.Msg = fmt.Sprintf("function body %d: %s", i, p.err.Msg)
			return
		}
		code := p.pos
		before := len(sc.loops)
		q, serr := sc.expr(p.b, code)
		switch {
		case serr != nil:
			p.fail(serr.off, "function body %d: %s", i, serr.msg)
			return
		case q != end:
			p.fail(q, "function body %d: %d bytes after the final end", i, end-q)
			return
		}
		m.bodies[i] = funcBody{start: uint32(start), code: uint32(code), end: uint32(end), loops: uint32(len(sc.loops) - before)}
		p.pos = end
		p.b = secEnd
	}
	m.loops = sc.loops
	m.MutatesTables = sc.mutatesTables
	m.GrowsTables = sc.growsTables
	m.DropsSegments = sc.dropsSegments
}

func (p *parser) data() {
	m := p.m
	at := p.pos
	n := p.count("data segment count")
	if p.err != nil {
		return
	}
	if m.HasDataCount && n != m.NumDataSegments {
		p.fail(at, "%d data segments but the data count section says %d", n, m.NumDataSegments)
		return
	}
	m.NumDataSegments = n
	for i := 0; i < n && p.err == nil; i++ {
		flagsAt := p.pos
		switch flags := p.u32("data segment flags"); {
		case p.err != nil:
			return
		case flags == 0:
			p.constExpr("data segment offset")
		case flags == 1: // passive
		case flags == 2:
			p.index("data segment memory index", p.numMems())
			p.constExpr("data segment offset")
		default:
			p.fail(flagsAt, "data segment %d: invalid flags %d", i, flags)
			return
		}
		lenAt := p.pos
		size := p.u32("data segment size")
		if p.err == nil && uint64(size) > uint64(len(p.b)-p.pos) {
			p.fail(lenAt, "data segment %d of %d bytes extends past section end", i, size)
			return
		}
		p.pos += int(size)
	}
}

// finish checks what can only be checked once every section was seen.
func (p *parser) finish() *FormatError {
	m := p.m
	if len(m.Funcs) > 0 && !p.codeSeen {
		return &FormatError{Offset: p.funcSection.start, Section: "function", Msg: fmt.Sprintf(
			"the function section declares %d functions but there is no code section", len(m.Funcs))}
	}
	if m.HasDataCount && m.NumDataSegments > 0 && !p.hasSection(secData) {
		return &FormatError{Offset: len(m.src), Section: "datacount", Msg: fmt.Sprintf(
			"the data count section says %d segments but there is no data section", m.NumDataSegments)}
	}
	return nil
}

func (p *parser) hasSection(id byte) bool {
	for _, s := range p.m.sections {
		if s.id == id {
			return true
		}
	}
	return false
}

// ExportedFunc returns the type of the function exported under name.
func (m *Module) ExportedFunc(name string) (FuncType, bool) {
	for _, e := range m.Exports {
		if e.Kind == ExternFunc && e.Name == name {
			return m.FuncType(e.Index)
		}
	}
	return FuncType{}, false
}

// FuncType returns the type of function idx in the function index space
// (imported functions first).
func (m *Module) FuncType(idx uint32) (FuncType, bool) {
	if int64(idx) < int64(m.NumImportedFuncs) {
		k := uint32(0)
		for _, im := range m.Imports {
			if im.Kind != ExternFunc {
				continue
			}
			if k == idx {
				return m.Types[im.TypeIndex], true
			}
			k++
		}
		return FuncType{}, false
	}
	i := int64(idx) - int64(m.NumImportedFuncs)
	if i >= int64(len(m.Funcs)) {
		return FuncType{}, false
	}
	return m.Types[m.Funcs[i]], true
}

// ImportsModule reports whether any import comes from the module name, for
// example "wasi_snapshot_preview1" or "http_handler".
func (m *Module) ImportsModule(name string) bool {
	for _, im := range m.Imports {
		if im.Module == name {
			return true
		}
	}
	return false
}

// ExportedGlobalIndex returns the global index exported under name.
func (m *Module) ExportedGlobalIndex(name string) (uint32, bool) {
	for _, e := range m.Exports {
		if e.Kind == ExternGlobal && e.Name == name {
			return e.Index, true
		}
	}
	return 0, false
}
