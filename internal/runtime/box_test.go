package runtime

import (
	"bytes"
	"testing"
)

// TestHead: the first n bytes pass, the rest is taken and dropped, and no
// write fails or comes up short.
func TestHead(t *testing.T) {
	var b bytes.Buffer
	h := Head(&b, 5)
	for _, s := range []string{"abc", "defg", "hij", ""} {
		if n, err := h.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if b.String() != "abcde" {
		t.Fatalf("kept %q, want abcde", b.String())
	}
}
