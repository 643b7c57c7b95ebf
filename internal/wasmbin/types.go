package wasmbin

import (
	"slices"
	"strconv"
	"strings"
)

// ValType is a value type as encoded in the binary format.
type ValType byte

// Value types. Typed references of the function-references proposal,
// (ref null ht) and (ref ht), are reported as ValRefNull and ValRef without
// their heap type, except that (ref null func|extern|exn) are reported as
// the short forms ValFuncRef, ValExternRef and ValExnRef.
const (
	ValI32       ValType = 0x7f
	ValI64       ValType = 0x7e
	ValF32       ValType = 0x7d
	ValF64       ValType = 0x7c
	ValV128      ValType = 0x7b
	ValFuncRef   ValType = 0x70
	ValExternRef ValType = 0x6f
	ValExnRef    ValType = 0x69
	ValRefNull   ValType = 0x63
	ValRef       ValType = 0x64
)

func (v ValType) String() string {
	switch v {
	case ValI32:
		return "i32"
	case ValI64:
		return "i64"
	case ValF32:
		return "f32"
	case ValF64:
		return "f64"
	case ValV128:
		return "v128"
	case ValFuncRef:
		return "funcref"
	case ValExternRef:
		return "externref"
	case ValExnRef:
		return "exnref"
	case ValRefNull:
		return "(ref null)"
	case ValRef:
		return "(ref)"
	}
	return "valtype(0x" + strconv.FormatUint(uint64(v), 16) + ")"
}

// FuncType is a function signature.
type FuncType struct {
	Params  []ValType
	Results []ValType
}

// String formats t like "(i32, i64) -> (f32)".
func (t FuncType) String() string {
	var sb strings.Builder
	list := func(vs []ValType) {
		sb.WriteByte('(')
		for i, v := range vs {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(v.String())
		}
		sb.WriteByte(')')
	}
	list(t.Params)
	sb.WriteString(" -> ")
	list(t.Results)
	return sb.String()
}

// Equal reports whether t has exactly these parameter and result types.
func (t FuncType) Equal(params, results []ValType) bool {
	return slices.Equal(t.Params, params) && slices.Equal(t.Results, results)
}

// ExternKind is the kind of an import or export.
type ExternKind byte

// Extern kinds, as encoded.
const (
	ExternFunc   ExternKind = 0
	ExternTable  ExternKind = 1
	ExternMemory ExternKind = 2
	ExternGlobal ExternKind = 3
	ExternTag    ExternKind = 4
)

func (k ExternKind) String() string {
	switch k {
	case ExternFunc:
		return "func"
	case ExternTable:
		return "table"
	case ExternMemory:
		return "memory"
	case ExternGlobal:
		return "global"
	case ExternTag:
		return "tag"
	}
	return "extern(" + strconv.Itoa(int(k)) + ")"
}

// Limits bounds a memory (in 64 KiB pages) or a table (in elements).
type Limits struct {
	Min, Max uint64
	HasMax   bool
	Shared   bool // threads proposal; memories only
	Memory64 bool // 64-bit addressing (memory64, or table64 for tables)
}

// TableType is a table's element type and size.
type TableType struct {
	Elem   ValType
	Limits Limits
}

// GlobalType is a global's value type and mutability.
type GlobalType struct {
	Type    ValType
	Mutable bool
}

// Import is one entry of the import section. Which of TypeIndex, Table,
// Memory and Global is meaningful depends on Kind.
type Import struct {
	Module, Name string
	Kind         ExternKind
	TypeIndex    uint32 // ExternFunc and ExternTag: index into Module.Types
	Table        TableType
	Memory       Limits
	Global       GlobalType
}

// Export is one entry of the export section. Index is in the index space of
// Kind, imports first.
type Export struct {
	Name  string
	Kind  ExternKind
	Index uint32
}

// CustomSection is a custom section's name and contents. Data aliases the
// bytes given to Parse.
type CustomSection struct {
	Name   string
	Offset int // of the section's id byte
	Data   []byte
}
