package wasmbin

import (
	"strings"
	"testing"
)

// TestRejectsGlobalsInstrumentWouldAdd: a guest naming a global index its
// module does not have is invalid as uploaded, but would become valid once
// Instrument appends the interrupt and countdown globals — letting the guest
// clear its own interrupt check. Parse must refuse it.
func TestRejectsGlobalsInstrumentWouldAdd(t *testing.T) {
	typ := sec(secType, vec(functype(nil, nil)))
	funcs := sec(secFunction, vec(u32(0)))
	globals := sec(secGlobal, vec(global(ValI32, true, i32c(0))))
	cases := []struct {
		name string
		body []byte
		glob []byte
	}{
		{"set past the end", cat(loopEmpty, i32c(0), globalSet(1), br(0), end, end), globals},
		{"get past the end", cat(globalGet(1), op(0x1a), end), globals},
		{"no globals at all", cat(i32c(0), globalSet(0), end), nil},
		{"initializer names a later global", nil, sec(secGlobal, vec(global(ValI32, false, globalGet(1))))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			parts := [][]byte{typ, funcs}
			if c.glob != nil {
				parts = append(parts, c.glob)
			}
			body := c.body
			if body == nil {
				body = end
			}
			parts = append(parts, sec(secCode, vec(fn(nil, body))))
			_, err := Parse(module(parts...))
			if err == nil || !strings.Contains(err.Error(), "refers to global") {
				t.Fatalf("Parse = %v, want a refusal naming the global", err)
			}
		})
	}
	// In range is fine.
	ok := module(typ, funcs, globals, sec(secCode, vec(fn(nil, i32c(1), globalSet(0), end))))
	if _, err := Parse(ok); err != nil {
		t.Fatal(err)
	}
}
