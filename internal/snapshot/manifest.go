package snapshot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// FormatVersion is the version of the manifest and of the part encoding this
// build writes and reads. A snapshot of any other version is
// ErrIncompatible: the caller boots cold and writes a new one.
const FormatVersion = 1

// maxManifestBytes caps a manifest file or a packed manifest. Real manifests
// are a few hundred bytes; the cap keeps a hostile one from costing memory.
const maxManifestBytes = 1 << 20

// Errors every verification failure wraps exactly one of, checked with
// errors.Is. The error's text says what precisely was wrong.
var (
	// ErrNotFound: there is no snapshot of that release (no manifest).
	ErrNotFound = errors.New("snapshot not found")
	// ErrCorrupt: the manifest does not parse or is malformed, or a part is
	// missing, has another size or another SHA-256 than the manifest says,
	// or a packed stream is truncated, malformed or too large.
	ErrCorrupt = errors.New("snapshot corrupt")
	// ErrIncompatible: the snapshot has another format version, runtime or
	// runtime (state-format) version than the caller can restore.
	ErrIncompatible = errors.New("snapshot incompatible")
	// ErrWrongRelease: the snapshot belongs to another app or release than
	// the caller asked for.
	ErrWrongRelease = errors.New("snapshot of another release")
	// ErrInvalid: the caller passed something that cannot name or make a
	// snapshot (a release ID that is not 64 lower-case hex, a bad part name,
	// an empty app or runtime). Nothing was read or written. It is a bug in
	// the caller, not a state of the store.
	ErrInvalid = errors.New("invalid snapshot argument")
)

// Part is one named piece of a snapshot's state, such as "memory" or
// "globals". Name matches [a-z0-9][a-z0-9._-]{0,63}.
type Part struct {
	Name string
	Data []byte
}

// PartInfo is what the manifest records about a part.
type PartInfo struct {
	Name   string `json:"name"`
	Digest string `json:"sha256"` // SHA-256 of the data, 64 lower-case hex
	Size   int64  `json:"size"`   // bytes
}

// Manifest describes a snapshot: what it belongs to, what can restore it,
// and the digest and size of every part.
type Manifest struct {
	Format         int               `json:"format"`          // FormatVersion
	Runtime        string            `json:"runtime"`         // e.g. "wasm"
	RuntimeVersion string            `json:"runtime_version"` // the runtime's state-format version, e.g. "wasm/1 wazero v1.12.0"
	App            string            `json:"app"`
	Release        string            `json:"release"` // release ID, 64 lower-case hex
	Created        time.Time         `json:"created"`
	Parts          []PartInfo        `json:"parts"`          // sorted by name, names unique
	Meta           map[string]string `json:"meta,omitempty"` // small runtime-specific facts
}

// Size returns the sum of the part sizes: the bytes a restore reads, not
// what the snapshot costs on disk (part files are sparse).
func (m Manifest) Size() int64 {
	var n int64
	for _, p := range m.Parts {
		n += p.Size
	}
	return n
}

// Want is what the caller expects a snapshot to be. Get and Export refuse
// any snapshot whose manifest differs from it in any field.
type Want struct {
	App, Release, Runtime, RuntimeVersion string
}

// checkHeader checks the manifest's fields other than Format and Parts: the
// ones a caller of Put supplies.
func (m *Manifest) checkHeader() error {
	if err := checkRelease(m.Release); err != nil {
		return err
	}
	switch {
	case m.App == "":
		return errors.New("app is empty")
	case m.Runtime == "":
		return errors.New("runtime is empty")
	case m.RuntimeVersion == "":
		return errors.New("runtime version is empty")
	}
	return nil
}

// checkParts checks that the listed parts are well formed, sorted by name
// with no name twice, and that their sizes add up without overflow.
func checkParts(parts []PartInfo) error {
	var total int64
	for i, p := range parts {
		if err := checkPartName(p.Name); err != nil {
			return err
		}
		if i > 0 && parts[i-1].Name >= p.Name {
			return fmt.Errorf("parts not sorted by name or %q listed twice", clip(p.Name))
		}
		if !isHex64(p.Digest) {
			return fmt.Errorf("part %q: sha256 %q is not 64 lower-case hex characters", p.Name, clip(p.Digest))
		}
		if p.Size < 0 {
			return fmt.Errorf("part %q: negative size %d", p.Name, p.Size)
		}
		if p.Size > math.MaxInt64-total {
			return fmt.Errorf("part %q: sizes add up past %d bytes", p.Name, int64(math.MaxInt64))
		}
		total += p.Size
	}
	return nil
}

// parseManifest parses and checks a manifest read from disk or a packed
// stream: input this process did not write. The error wraps ErrCorrupt, or
// ErrIncompatible when the format version is another. It decodes once in
// the common case (a valid manifest of this format).
func parseManifest(b []byte) (Manifest, error) {
	if len(b) > maxManifestBytes {
		return Manifest{}, fmt.Errorf("%w: manifest is %d bytes, more than the %d allowed", ErrCorrupt, len(b), maxManifestBytes)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(&m)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("data after the JSON object")
		}
	}
	if err != nil || m.Format != FormatVersion {
		// Another format may have other fields: its version, if it has
		// one, decides which error this is.
		if ferr := checkFormat(b); ferr != nil {
			return Manifest{}, ferr
		}
		return Manifest{}, fmt.Errorf("%w: manifest: %v", ErrCorrupt, err)
	}
	if err := m.checkHeader(); err != nil {
		return Manifest{}, fmt.Errorf("%w: manifest: %v", ErrCorrupt, err)
	}
	if err := checkParts(m.Parts); err != nil {
		return Manifest{}, fmt.Errorf("%w: manifest: %v", ErrCorrupt, err)
	}
	return m, nil
}

// checkFormat reads only the format version of a manifest, and says
// whether this build can read the rest.
func checkFormat(b []byte) error {
	var v struct {
		Format *int `json:"format"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("%w: manifest is not JSON: %v", ErrCorrupt, err)
	}
	if v.Format == nil {
		return fmt.Errorf("%w: manifest has no format version", ErrCorrupt)
	}
	if *v.Format != FormatVersion {
		return fmt.Errorf("%w: format version %d, this build reads %d", ErrIncompatible, *v.Format, FormatVersion)
	}
	return nil
}

// marshalManifest encodes m as Put stores it and Pack sends it.
func marshalManifest(m Manifest) ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	b = append(b, '\n')
	if len(b) > maxManifestBytes {
		return nil, fmt.Errorf("%w: manifest would be %d bytes, more than the %d allowed (too many parts or too much meta)", ErrInvalid, len(b), maxManifestBytes)
	}
	return b, nil
}

// Match checks a manifest against what the caller wants, as Get does: the
// error wraps ErrIncompatible or ErrWrongRelease.
func (w Want) Match(m Manifest) error { return match(m, w) }

// match checks a parsed manifest against what the caller wants.
func match(m Manifest, want Want) error {
	switch {
	case m.Runtime != want.Runtime:
		return fmt.Errorf("%w: runtime %q, want %q", ErrIncompatible, clip(m.Runtime), want.Runtime)
	case m.RuntimeVersion != want.RuntimeVersion:
		return fmt.Errorf("%w: runtime version %q, want %q", ErrIncompatible, clip(m.RuntimeVersion), want.RuntimeVersion)
	case m.App != want.App:
		return fmt.Errorf("%w: app %q, want %q", ErrWrongRelease, clip(m.App), want.App)
	case m.Release != want.Release:
		return fmt.Errorf("%w: release %s, want %s", ErrWrongRelease, short(m.Release), short(want.Release))
	}
	return nil
}

// checkRelease checks that id is a release ID: 64 lower-case hex characters,
// and so a safe single path element.
func checkRelease(id string) error {
	if !isHex64(id) {
		return fmt.Errorf("release ID %q is not 64 lower-case hex characters", clip(id))
	}
	return nil
}

// checkPartName checks a part name against [a-z0-9][a-z0-9._-]{0,63}.
func checkPartName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("part name %q: want 1 to 64 characters", clip(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return fmt.Errorf("part name %q: byte %d is not allowed (want [a-z0-9][a-z0-9._-]*)", clip(name), i)
		}
	}
	return nil
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// short abbreviates a digest or release ID for an error message; the first
// 12 hex characters tell two apart in practice.
func short(d string) string {
	if len(d) > 12 {
		return d[:12] + "…"
	}
	return d
}

// clip shortens untrusted input before it goes into an error message.
func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
