package snapshot

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/klauspost/compress/zstd"
)

const (
	// packMagic starts every packed snapshot, followed by packVersion as a
	// 4-byte big-endian integer.
	packMagic   = "FROSTSNP"
	packVersion = 1
	// packWindow is the zstd window Pack uses and the largest Unpack
	// accepts: it bounds the decoder's memory on hostile input.
	packWindow = 8 << 20
	// ioBuffer is the buffer between the varints and zstd.
	ioBuffer = 64 << 10
)

// Pack writes m and parts to w in the packed form (see the package
// comment): every part's non-zero 4 KiB runs, compressed with zstd, so a
// mostly empty part packs to about its data's compressed size. It streams:
// beyond parts it holds zstd's buffers (a few MiB) and the list of one
// part's data extents (16 bytes per run of data), whatever the sizes. As
// Put does, it checks m (ErrInvalid) and fills in Format, Created (if zero)
// and Parts from the parts, ignoring m.Parts; so it reads every part twice,
// once to hash it for the manifest that goes first.
func Pack(w io.Writer, m Manifest, parts []Part) error {
	m, parts, err := seal(m, parts, time.Now())
	if err != nil {
		return fmt.Errorf("pack snapshot: %w", err)
	}
	if err := pack(w, m, parts); err != nil {
		return fmt.Errorf("pack snapshot %s: %w", short(m.Release), err)
	}
	return nil
}

// pack writes a sealed manifest and its parts, in manifest order.
func pack(w io.Writer, m Manifest, parts []Part) (err error) {
	mb, err := marshalManifest(m)
	if err != nil {
		return err
	}
	var hdr [len(packMagic) + 4]byte
	copy(hdr[:], packMagic)
	binary.BigEndian.PutUint32(hdr[len(packMagic):], packVersion)
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithWindowSize(packWindow))
	if err != nil {
		return err
	}
	defer func() {
		if cerr := zw.Close(); err == nil {
			err = cerr // Close writes the end of the stream
		}
	}()
	bw := bufio.NewWriterSize(zw, ioBuffer)
	var vb [binary.MaxVarintLen64]byte
	uvarint := func(x uint64) error {
		_, err := bw.Write(binary.AppendUvarint(vb[:0], x))
		return err
	}
	if err := uvarint(uint64(len(mb))); err != nil {
		return err
	}
	if _, err := bw.Write(mb); err != nil {
		return err
	}
	for _, p := range parts {
		exts := dataExtents(p.Data)
		if err := uvarint(uint64(len(exts))); err != nil {
			return err
		}
		for _, e := range exts {
			if err := uvarint(uint64(e.off)); err != nil {
				return err
			}
			if err := uvarint(uint64(e.n)); err != nil {
				return err
			}
			if _, err := bw.Write(p.Data[e.off : e.off+e.n]); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

// Unpack reads a packed snapshot and returns its manifest and parts in
// manifest order, every part checked against the manifest's size and
// SHA-256. Anything wrong with the stream is ErrCorrupt: a bad magic,
// truncation, data after the end, a malformed manifest, extents out of
// order, overlapping, unaligned or beyond the part, a size or digest that
// does not match, or parts adding up to more than limit bytes ("too
// large"). Another pack or format version is ErrIncompatible. An error
// reading r itself is returned wrapped as it is, not as ErrCorrupt: the
// stream may be fine and a retry may succeed. limit must be positive.
//
// Unpack does not trust r: it never panics, and allocates at most limit
// bytes for the parts plus a few MiB (the manifest, buffers and zstd's
// window), whatever r claims.
func Unpack(r io.Reader, limit int64) (Manifest, []Part, error) {
	if limit <= 0 {
		return Manifest{}, nil, fmt.Errorf("unpack snapshot: %w: limit %d: want a positive number of bytes", ErrInvalid, limit)
	}
	er := &errReader{r: r}
	m, parts, err := unpack(er, limit)
	if err != nil {
		if er.err != nil { // r failed: that, not the stream, is the problem
			return Manifest{}, nil, fmt.Errorf("unpack snapshot: read: %w", er.err)
		}
		return Manifest{}, nil, fmt.Errorf("unpack snapshot: %w", err)
	}
	return m, parts, nil
}

func unpack(r io.Reader, limit int64) (Manifest, []Part, error) {
	var hdr [len(packMagic) + 4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Manifest{}, nil, corrupt(err, "header")
	}
	if string(hdr[:len(packMagic)]) != packMagic {
		return Manifest{}, nil, fmt.Errorf("%w: not a packed snapshot (magic %q, want %q)", ErrCorrupt, hdr[:len(packMagic)], packMagic)
	}
	if v := binary.BigEndian.Uint32(hdr[len(packMagic):]); v != packVersion {
		return Manifest{}, nil, fmt.Errorf("%w: pack version %d, this build reads %d", ErrIncompatible, v, packVersion)
	}
	zr, err := zstd.NewReader(r,
		zstd.WithDecoderMaxWindow(packWindow),
		zstd.WithDecoderConcurrency(1), // no read-ahead goroutines: less memory, errors in order
	)
	if err != nil {
		return Manifest{}, nil, err
	}
	defer zr.Close()
	br := bufio.NewReaderSize(zr, ioBuffer)

	n, err := binary.ReadUvarint(br)
	if err != nil {
		return Manifest{}, nil, corrupt(err, "manifest length")
	}
	if n > maxManifestBytes {
		return Manifest{}, nil, fmt.Errorf("%w: manifest length %d, more than the %d allowed", ErrCorrupt, n, maxManifestBytes)
	}
	mb := make([]byte, n)
	if _, err := io.ReadFull(br, mb); err != nil {
		return Manifest{}, nil, corrupt(err, "manifest")
	}
	m, err := parseManifest(mb)
	if err != nil {
		return Manifest{}, nil, err
	}
	if size := m.Size(); size > limit {
		return Manifest{}, nil, fmt.Errorf("%w: too large: parts add up to %d bytes, more than the limit of %d", ErrCorrupt, size, limit)
	}
	parts := make([]Part, len(m.Parts))
	for i, p := range m.Parts {
		data, err := unpackPart(br, p)
		if err != nil {
			return Manifest{}, nil, err
		}
		parts[i] = Part{Name: p.Name, Data: data}
	}
	switch _, err := br.ReadByte(); {
	case err == nil:
		return Manifest{}, nil, fmt.Errorf("%w: data after the last part", ErrCorrupt)
	case err != io.EOF:
		return Manifest{}, nil, corrupt(err, "end of stream")
	}
	return m, parts, nil
}

// unpackPart reads one part's extents into a buffer of its size and checks
// its SHA-256.
func unpackPart(br *bufio.Reader, p PartInfo) ([]byte, error) {
	size := uint64(p.Size)
	count, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, corrupt(err, fmt.Sprintf("part %q: extent count", p.Name))
	}
	if most := (size + blockSize - 1) / blockSize; count > most {
		return nil, fmt.Errorf("%w: part %q: %d extents, a %d-byte part has room for at most %d", ErrCorrupt, p.Name, count, size, most)
	}
	// The part is hashed as it is filled, the gaps from a zero buffer, so
	// that its zero pages are never touched: a mostly empty part costs the
	// memory of its data until the caller writes to it.
	data := make([]byte, size)
	h := sha256.New()
	var end uint64 // of the previous extent
	for k := range count {
		off, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, corrupt(err, fmt.Sprintf("part %q: extent %d offset", p.Name, k))
		}
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, corrupt(err, fmt.Sprintf("part %q: extent %d length", p.Name, k))
		}
		bad := ""
		switch {
		case off%blockSize != 0:
			bad = "does not start on a 4 KiB boundary"
		case off < end:
			bad = fmt.Sprintf("starts before the previous extent ends at %d", end)
		case n == 0:
			bad = "is empty"
		case off > size || n > size-off:
			bad = fmt.Sprintf("ends beyond the part's %d bytes", size)
		case n%blockSize != 0 && off+n != size:
			bad = "is not whole 4 KiB blocks and does not end the part"
		}
		if bad != "" {
			return nil, fmt.Errorf("%w: part %q: extent %d [%d, +%d) %s", ErrCorrupt, p.Name, k, off, n, bad)
		}
		if _, err := io.ReadFull(br, data[off:off+n]); err != nil {
			return nil, corrupt(err, fmt.Sprintf("part %q: extent %d data", p.Name, k))
		}
		hashZeros(h, off-end)
		h.Write(data[off : off+n])
		end = off + n
	}
	hashZeros(h, size-end)
	var sum [sha256.Size]byte
	if err := checkSum(p, h.Sum(sum[:0])); err != nil {
		return nil, err
	}
	return data, nil
}

// zeros is read, never written: hashing from it touches no new memory.
var zeros [64 << 10]byte

// hashZeros writes n zero bytes to h.
func hashZeros(h hash.Hash, n uint64) {
	for n > 0 {
		k := min(n, uint64(len(zeros)))
		h.Write(zeros[:k])
		n -= k
	}
}

// corrupt describes a failure to read what should be at a place in the
// stream: an end of stream there is truncation.
func corrupt(err error, where string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated at the %s", ErrCorrupt, where)
	}
	return fmt.Errorf("%w: at the %s: %v", ErrCorrupt, where, err)
}

// errReader remembers the first error other than io.EOF that its reader
// returns, to tell a failing source from a bad stream.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// Export writes the snapshot of want.Release to w in the packed form,
// after verifying it exactly as Get does (so its errors are Get's). It
// does not mark the snapshot used: a copy leaving is not a restore.
func (s *Store) Export(ctx context.Context, want Want, w io.Writer) error {
	if err := checkRelease(want.Release); err != nil {
		return fmt.Errorf("export snapshot: %w: %v", ErrInvalid, err)
	}
	unlock := s.locks.rlock(want.Release)
	m, parts, err := s.read(ctx, want, nil)
	unlock()
	if err != nil {
		return fmt.Errorf("export snapshot %s: %w", short(want.Release), err)
	}
	if err := pack(w, m, parts); err != nil {
		return fmt.Errorf("export snapshot %s: %w", short(want.Release), err)
	}
	return nil
}

// Import reads a packed snapshot from r as Unpack does (refusing more than
// limit bytes of parts) and stores it as Put does, keeping its Created. It
// returns the snapshot too, verified, so that a caller about to restore it
// need not read it back (Get would verify every part again).
func (s *Store) Import(ctx context.Context, r io.Reader, limit int64) (Manifest, []Part, error) {
	m, parts, err := Unpack(r, limit)
	if err != nil {
		return Manifest{}, nil, fmt.Errorf("import: %w", err)
	}
	m, err = s.put(ctx, m, memSources(m, parts))
	if err != nil {
		return Manifest{}, nil, err
	}
	return m, parts, nil
}
