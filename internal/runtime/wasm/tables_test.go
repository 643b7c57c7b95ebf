package wasm

import (
	"errors"
	"testing"

	"github.com/frostdev/frost/internal/runtime"
	"github.com/frostdev/frost/internal/wasmbin"
)

// tableModule is a module with one funcref table of the given limits
// section bytes and, with grow, a function that runs table.grow.
func tableModule(limits []byte, grow bool) []byte {
	b := []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}
	b = append(b, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00) // type: () -> ()
	b = append(b, 0x03, 0x02, 0x01, 0x00)             // one function of type 0
	table := append([]byte{0x01, 0x70}, limits...)
	b = append(b, 0x04, byte(len(table)))
	b = append(b, table...)
	body := []byte{0x00, 0x01} // no locals; nop
	if grow {
		// ref.null func; i32.const 1; table.grow 0; drop
		body = []byte{0x00, 0xd0, 0x70, 0x41, 0x01, 0xfc, 0x0f, 0x00, 0x1a}
	}
	body = append(body, 0x0b)
	b = append(b, 0x0a, byte(len(body)+2), 0x01, byte(len(body)))
	return append(b, body...)
}

// TestTableLimits: a table's entries are not bounded by the memory limit,
// so a module whose table starts huge, or grows with no small maximum, is
// refused at deploy; bounded tables, and unbounded ones never grown, pass.
func TestTableLimits(t *testing.T) {
	for _, c := range []struct {
		name   string
		limits []byte
		grow   bool
		want   error
	}{
		{"grows, no maximum", []byte{0x00, 0x01}, true, runtime.ErrUnsupportedShape},
		{"grows, maximum 2^21", []byte{0x01, 0x01, 0x80, 0x80, 0x80, 0x01}, true, runtime.ErrUnsupportedShape},
		{"grows, maximum 16", []byte{0x01, 0x01, 0x10}, true, nil},
		{"never grows, no maximum", []byte{0x00, 0x01}, false, nil},
		{"starts at 2^21 entries", []byte{0x00, 0x80, 0x80, 0x80, 0x01}, false, runtime.ErrMemoryLimit},
	} {
		t.Run(c.name, func(t *testing.T) {
			info, err := wasmbin.Parse(tableModule(c.limits, c.grow))
			if err != nil {
				t.Fatal(err)
			}
			err = checkTables(info)
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("checkTables = %v, want %v", err, c.want)
			}
		})
	}
}
