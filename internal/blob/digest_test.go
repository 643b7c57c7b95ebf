package blob_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/frostdev/frost/internal/blob"
)

func TestValidateDigest(t *testing.T) {
	sum := sha256.Sum256([]byte("hello"))
	good := hex.EncodeToString(sum[:])
	tests := []struct {
		name   string
		digest string
		ok     bool
	}{
		{"sha256 of hello", good, true},
		{"all zeros", strings.Repeat("0", 64), true},
		{"all f", strings.Repeat("f", 64), true},
		{"empty", "", false},
		{"upper case", strings.ToUpper(good), false},
		{"one upper-case letter", "A" + good[1:], false},
		{"63 characters", good[:63], false},
		{"65 characters", good + "0", false},
		{"sha512 length", good + good, false},
		{"non-hex letter", "g" + good[1:], false},
		{"parent directory", "../x", false},
		{"parent directory padded to 64", "../" + good[3:], false},
		{"slash inside", good[:32] + "/" + good[33:], false},
		{"backslash inside", good[:32] + `\` + good[33:], false},
		{"NUL inside", good[:32] + "\x00" + good[33:], false},
		{"leading space", " " + good[1:], false},
		{"trailing newline", good[:63] + "\n", false},
		{"algorithm prefix", "sha256:" + good[7:], false},
		{"multi-byte rune", "é" + good[2:], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := blob.ValidateDigest(tt.digest)
			if tt.ok && err != nil {
				t.Fatalf("ValidateDigest(%q) = %v, want nil", tt.digest, err)
			}
			if !tt.ok && !errors.Is(err, blob.ErrInvalidDigest) {
				t.Fatalf("ValidateDigest(%q) = %v, want ErrInvalidDigest", tt.digest, err)
			}
		})
	}
}

// FuzzValidateDigest checks ValidateDigest against an independent definition
// (hex round trip) and that every accepted digest is a safe single path element.
func FuzzValidateDigest(f *testing.F) {
	for _, s := range []string{"", "../x", strings.Repeat("a", 64), strings.Repeat("A", 64), strings.Repeat("0", 63) + "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := blob.ValidateDigest(s)
		b, decErr := hex.DecodeString(s)
		want := decErr == nil && len(b) == sha256.Size && hex.EncodeToString(b) == s
		if got := err == nil; got != want {
			t.Fatalf("ValidateDigest(%q) = %v, want valid=%v", s, err, want)
		}
		if err != nil {
			if !errors.Is(err, blob.ErrInvalidDigest) {
				t.Fatalf("ValidateDigest(%q) = %v, does not wrap ErrInvalidDigest", s, err)
			}
			return
		}
		if filepath.Base(s) != s || strings.Contains(s, "..") || filepath.Clean(s) != s {
			t.Fatalf("accepted digest %q is not a plain file name", s)
		}
	})
}
