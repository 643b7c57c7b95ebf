package cli

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// sizeUnits maps a lower-cased unit to its number of bytes. A unit with a
// single letter, or with "i", counts in powers of 1024 (what memory limits
// mean); kB, MB, GB and TB count in powers of 1000, as the SI says.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "ki": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mi": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gi": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "ti": 1 << 40, "tib": 1 << 40, "tb": 1e12,
}

const sizeHelp = "write bytes (1048576) or a number with a unit: KiB, MiB, GiB, TiB (also K, M, G, T: powers of 1024) or kB, MB, GB, TB (powers of 1000)"

// ParseSize parses a size in bytes such as "64MiB", "512KiB", "1.5GiB",
// "1048576" or "64M". Units are case-insensitive and may follow a space; K,
// M, G and T are powers of 1024 like KiB, MiB, GiB and TiB, while kB, MB, GB
// and TB are powers of 1000. The result must be a whole number of bytes that
// fits an int64.
func ParseSize(s string) (int64, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, fmt.Errorf("size is empty: %s", sizeHelp)
	}
	if len(in) > 64 {
		return 0, fmt.Errorf("size %.20q… is too long: %s", in, sizeHelp)
	}
	if in[0] == '-' {
		return 0, fmt.Errorf("size %q is negative", s)
	}
	// The number: digits, then optionally '.' and more digits.
	i := 0
	for i < len(in) && isDigit(in[i]) {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("size %q does not start with a number: %s", s, sizeHelp)
	}
	whole, frac := in[:i], ""
	if i < len(in) && in[i] == '.' {
		j := i + 1
		for j < len(in) && isDigit(in[j]) {
			j++
		}
		if j == i+1 {
			return 0, fmt.Errorf("size %q has no digits after '.'", s)
		}
		frac, i = in[i+1:j], j
	}
	unitText := strings.TrimLeft(in[i:], " ")
	unit, ok := sizeUnits[strings.ToLower(unitText)]
	if !ok {
		return 0, fmt.Errorf("size %q has an unknown unit %q: %s", s, unitText, sizeHelp)
	}
	// bytes = whole.frac × unit, exactly.
	num, _ := new(big.Int).SetString(whole+frac, 10)
	num.Mul(num, big.NewInt(unit))
	den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(frac))), nil)
	q, rem := new(big.Int).QuoRem(num, den, new(big.Int))
	if rem.Sign() != 0 {
		return 0, fmt.Errorf("size %q is not a whole number of bytes", s)
	}
	if !q.IsInt64() {
		return 0, fmt.Errorf("size %q is too large: the most is %d bytes", s, int64(math.MaxInt64))
	}
	return q.Int64(), nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// FormatSize writes n bytes in the largest unit that divides it exactly
// ("64MiB", "1GB", "1000B"), so that ParseSize(FormatSize(n)) == n.
func FormatSize(n int64) string {
	if n == 0 {
		return "0"
	}
	for _, u := range []struct {
		name string
		size int64
	}{
		{"TiB", 1 << 40}, {"TB", 1e12}, {"GiB", 1 << 30}, {"GB", 1e9},
		{"MiB", 1 << 20}, {"MB", 1e6}, {"KiB", 1 << 10}, {"kB", 1e3},
	} {
		if n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// humanSize writes n bytes for reading, rounded to one decimal: "5.6MiB",
// "64MiB", "512B".
func humanSize(n int64) string {
	const units = "KMGTPE"
	if n < 1<<10 {
		return strconv.FormatInt(n, 10) + "B"
	}
	i, div := 0, int64(1<<10)
	for n/div >= 1<<10 && i < len(units)-1 {
		i, div = i+1, div<<10
	}
	if n%div == 0 {
		return fmt.Sprintf("%d%ciB", n/div, units[i])
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), units[i])
}

// sizeFlag is a flag.Value holding a size parsed by ParseSize.
type sizeFlag int64

func (f *sizeFlag) String() string { return FormatSize(int64(*f)) }

func (f *sizeFlag) Set(s string) error {
	n, err := ParseSize(s)
	if err != nil {
		return err
	}
	*f = sizeFlag(n)
	return nil
}
