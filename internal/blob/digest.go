package blob

import "fmt"

// DigestLen is the length of a digest: a SHA-256 in lower-case hex.
const DigestLen = 64

// ValidateDigest reports whether d is a well-formed digest: exactly 64
// lower-case hex characters. A valid digest is safe to use as a file name or
// object key; anything else (upper case, path separators, "..") is rejected
// with an error wrapping ErrInvalidDigest. It is safe for concurrent use.
func ValidateDigest(d string) error {
	if len(d) != DigestLen {
		return fmt.Errorf("%w: %q: want %d hex characters, got %d", ErrInvalidDigest, clip(d), DigestLen, len(d))
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') {
			continue
		}
		return fmt.Errorf("%w: %q: byte %d is not lower-case hex", ErrInvalidDigest, clip(d), i)
	}
	return nil
}

// clip shortens untrusted input before it goes into an error message.
func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
