package cli

import (
	"math"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{in: "0", want: 0},
		{in: "1048576", want: 1 << 20},
		{in: "512B", want: 512},
		{in: "512KiB", want: 512 << 10},
		{in: "64MiB", want: 64 << 20},
		{in: "64M", want: 64 << 20},
		{in: "64m", want: 64 << 20},
		{in: "64Mi", want: 64 << 20},
		{in: "64mib", want: 64 << 20},
		{in: "1GiB", want: 1 << 30},
		{in: "2T", want: 2 << 40},
		{in: "1.5GiB", want: 3 << 29},
		{in: "0.5K", want: 512},
		{in: "64MB", want: 64e6},
		{in: "1kB", want: 1000},
		{in: "1GB", want: 1e9},
		{in: " 64 MiB ", want: 64 << 20},
		{in: "8388607TiB", want: 8388607 << 40},
		{in: "9223372036854775807", want: math.MaxInt64},
		{in: "", wantErr: "empty"},
		{in: "MiB", wantErr: "does not start with a number"},
		{in: "-1", wantErr: "negative"},
		{in: "64XB", wantErr: `unknown unit "XB"`},
		{in: "64 M B", wantErr: "unknown unit"},
		{in: "1.", wantErr: "no digits after '.'"},
		{in: "1.2.3", wantErr: "unknown unit"},
		{in: "0.1K", wantErr: "not a whole number of bytes"},
		{in: "9223372036854775808", wantErr: "too large"},
		{in: "8388608TiB", wantErr: "too large"},
		{in: strings.Repeat("9", 100), wantErr: "too long"},
		{in: "1e6", wantErr: "unknown unit"},
		{in: "0x10", wantErr: "unknown unit"},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		switch {
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ParseSize(%q) = %d, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{
		0:        "0",
		1:        "1B",
		1000:     "1kB",
		1024:     "1KiB",
		1536:     "1536B", // 1.5KiB: not a whole number of any unit
		64 << 20: "64MiB",
		1 << 30:  "1GiB",
		1e9:      "1GB",
		123456:   "123456B",
		1024000:  "1000KiB",
		5 << 40:  "5TiB",
	} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0B", 1023: "1023B", 1024: "1KiB", 1536: "1.5KiB", 5837481: "5.6MiB",
		64 << 20: "64MiB", 3 << 30: "3GiB", math.MaxInt64: "8.0EiB",
	} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"64MiB", "512KiB", "1GiB", "1048576", "64M", "1.5G", "0.5k", "64 MB", "", "-1", "1e9", "9223372036854775808", "0.0000001T"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("ParseSize(%q): empty error", s)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d, negative", s, n)
		}
		// What FormatSize writes parses back to the same number.
		back, err := ParseSize(FormatSize(n))
		if err != nil || back != n {
			t.Fatalf("ParseSize(FormatSize(%d)) = %d, %v (FormatSize wrote %q)", n, back, err, FormatSize(n))
		}
	})
}
