package wasmbin

import (
	"errors"
	"fmt"
)

// Errors for input that is not a core module at all, checked with errors.Is.
// The returned errors wrap them with a detail that says what was found.
var (
	// ErrNotWasm: the input does not start with the WebAssembly magic bytes.
	ErrNotWasm = errors.New("not a WebAssembly module")
	// ErrUnsupportedVersion: the magic is right but the version is not 1
	// (for example a component-model binary).
	ErrUnsupportedVersion = errors.New("unsupported WebAssembly version")
)

// FormatError reports a malformed module: what is wrong, in which section and
// at which byte offset of the input.
type FormatError struct {
	Offset  int    // byte offset into the module
	Section string // "type", "code", "custom", ...; "" for the header and section framing
	Msg     string
}

func (e *FormatError) Error() string {
	if e.Section == "" {
		return fmt.Sprintf("wasm: at offset %#x: %s", e.Offset, e.Msg)
	}
	return fmt.Sprintf("wasm: section %q at offset %#x: %s", e.Section, e.Offset, e.Msg)
}

var sectionNames = [...]string{
	0:  "custom",
	1:  "type",
	2:  "import",
	3:  "function",
	4:  "table",
	5:  "memory",
	6:  "global",
	7:  "export",
	8:  "start",
	9:  "element",
	10: "code",
	11: "data",
	12: "datacount",
	13: "tag",
}

func sectionName(id byte) string {
	if int(id) < len(sectionNames) {
		return sectionNames[id]
	}
	return fmt.Sprintf("unknown(%d)", id)
}
