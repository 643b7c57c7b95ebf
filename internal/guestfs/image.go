package guestfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/bits"
	"slices"
	"strings"
)

// ErrCorruptImage is the error (checked with errors.Is) for bytes that are
// not an image MarshalBinary could have written.
var ErrCorruptImage = errors.New("corrupt guestfs image")

// Image is an immutable tree: what Snapshot captured or UnmarshalImage
// decoded. It shares file data with the file systems it came from or is
// loaded into, copy-on-write, so it is cheap to hold and to Reset to. It is
// safe for concurrent use by any number of FSs: nothing ever writes to it.
type Image struct {
	nodes  map[uint64]*node // every inode in the tree, root included
	maxIno uint64           // highest inode number ever used in the tree it came from
	used   int64            // sum of file sizes
}

func emptyImage(now int64) *Image {
	root := &node{ino: rootIno, isDir: true, perm: 0o755, ents: map[string]uint64{}, atim: now, mtim: now, ctim: now}
	return &Image{nodes: map[uint64]*node{rootIno: root}, maxIno: rootIno}
}

// Size returns the bytes of file data in the image (the sum of file sizes).
func (img *Image) Size() int64 { return img.used }

// Inodes returns how many files and directories the image holds, "/" included.
func (img *Image) Inodes() int { return len(img.nodes) }

// Encoding, version 1. All integers are varints (encoding/binary), and each
// must be in its shortest form so that an image has exactly one encoding:
//
//	magic "FGFS" | version byte 1 | uvarint entry count | entries
//	entry:  [uvarint parent | uvarint len | name]   (absent for entry 0, "/")
//	        kind byte (0 dir, 1 file) | uvarint perm |
//	        varint atim | varint mtim | varint ctim |
//	        [uvarint size | size bytes of data]     (files only)
//
// parent is the index of the parent directory's entry. Entries come in
// depth-first order with each directory's children sorted by name, which is
// the order of the paths sorted component by component; so each entry's
// parent is the previous entry or one of its ancestors. Names, not paths, are
// stored so that the size stays linear in the tree however deep it is. Inode
// numbers are not encoded: they are given out in entry order when decoding.
const (
	imageMagic   = "FGFS"
	imageVersion = 1
	kindDir      = 0
	kindFile     = 1
	minEntrySize = 5 // root: kind, perm, three one-byte times
)

type imageEntry struct {
	parent int // index of the parent's entry; -1 for the root
	name   string
	n      *node
}

// entries returns the image's nodes in encoding order.
func (img *Image) entries() []imageEntry {
	out := make([]imageEntry, 0, len(img.nodes))
	stack := []imageEntry{{parent: -1, n: img.nodes[rootIno]}}
	for len(stack) > 0 {
		e := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		idx := len(out)
		out = append(out, e)
		if !e.n.isDir {
			continue
		}
		names := slices.Sorted(maps.Keys(e.n.ents))
		for i := len(names) - 1; i >= 0; i-- { // pushed in reverse: popped sorted
			stack = append(stack, imageEntry{idx, names[i], img.nodes[e.n.ents[names[i]]]})
		}
	}
	return out
}

// MarshalBinary encodes the image. The encoding is deterministic: equal trees
// (names, types, permissions, times, data) give equal bytes. It never fails.
func (img *Image) MarshalBinary() ([]byte, error) {
	ents := img.entries()
	size := len(imageMagic) + 1 + binary.MaxVarintLen64 + int(img.used)
	for _, e := range ents {
		size += len(e.name) + 7*binary.MaxVarintLen64
	}
	b := make([]byte, 0, size)
	b = append(b, imageMagic...)
	b = append(b, imageVersion)
	b = binary.AppendUvarint(b, uint64(len(ents)))
	for _, e := range ents {
		n := e.n
		if e.parent >= 0 {
			b = binary.AppendUvarint(b, uint64(e.parent))
			b = binary.AppendUvarint(b, uint64(len(e.name)))
			b = append(b, e.name...)
		}
		if n.isDir {
			b = append(b, kindDir)
		} else {
			b = append(b, kindFile)
		}
		b = binary.AppendUvarint(b, uint64(n.perm))
		b = binary.AppendVarint(b, n.atim)
		b = binary.AppendVarint(b, n.mtim)
		b = binary.AppendVarint(b, n.ctim)
		if !n.isDir {
			b = binary.AppendUvarint(b, uint64(n.size))
			b = slices.Grow(b, int(n.size))
			start := len(b)
			b = b[:start+int(n.size)]
			n.readAt(b[start:], 0)
		}
	}
	return b, nil
}

// UnmarshalImage decodes bytes written by MarshalBinary. It checks
// everything (shortest-form varints, names, the entry order, parents that
// are directories, permission bits, no trailing bytes) and fails with
// ErrCorruptImage otherwise, so an image has one encoding and
// MarshalBinary(UnmarshalImage(b)) == b. It never panics, allocates at most
// a small constant times len(b) (a node per entry of at least five bytes),
// and does not keep b.
func UnmarshalImage(b []byte) (*Image, error) {
	d := decoder{b: b}
	if string(d.bytes(len(imageMagic))) != imageMagic {
		return nil, corrupt("bad magic")
	}
	if v := d.bytes(1); len(v) != 1 || v[0] != imageVersion {
		return nil, corrupt("unknown version")
	}
	count := d.uvarint()
	if d.err != nil {
		return nil, d.err
	}
	if count == 0 || count > uint64(len(d.b)/minEntrySize) {
		return nil, corrupt("entry count %d does not fit %d bytes", count, len(d.b))
	}
	img := &Image{nodes: make(map[uint64]*node, count), maxIno: count}
	// open is the path from the root to the previous entry's directory (or
	// its parent): the only places the next entry may go. last[i] is the
	// name of the latest child of open[i].
	type openDir struct {
		index uint64
		n     *node
		last  string
	}
	var open []openDir
	for i := range count {
		var parent uint64
		var name string
		if i > 0 {
			parent = d.uvarint()
			nameLen := d.uvarint()
			name = string(d.bytes(int(min(nameLen, uint64(len(d.b)+1)))))
		}
		kind := d.bytes(1)
		perm := d.uvarint()
		atim, mtim, ctim := d.varint(), d.varint(), d.varint()
		if d.err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, d.err)
		}
		if perm > uint64(fs.ModePerm) {
			return nil, corrupt("entry %d: bad permissions %#o", i, perm)
		}
		n := &node{ino: i + 1, perm: fs.FileMode(perm), atim: atim, mtim: mtim, ctim: ctim}
		switch kind[0] {
		case kindDir:
			n.isDir = true
			n.ents = map[string]uint64{}
		case kindFile:
			size := d.uvarint()
			if d.err == nil && size > uint64(len(d.b)) {
				return nil, corrupt("entry %d: %d bytes of data but %d left", i, size, len(d.b))
			}
			n.size = int64(size)
			n.chunks = splitChunks(d.bytes(int(size)))
			if d.err != nil {
				return nil, fmt.Errorf("entry %d: %w", i, d.err)
			}
			img.used += n.size
		default:
			return nil, corrupt("entry %d: unknown kind %d", i, kind[0])
		}

		if i == 0 {
			if !n.isDir {
				return nil, corrupt("root is not a directory")
			}
		} else {
			if !validName(name) {
				return nil, corrupt("entry %d: bad name %q", i, name)
			}
			for len(open) > 0 && open[len(open)-1].index > parent {
				open = open[:len(open)-1]
			}
			if len(open) == 0 || open[len(open)-1].index != parent {
				return nil, corrupt("entry %d: parent %d is not an open directory", i, parent)
			}
			p := &open[len(open)-1]
			if len(p.n.ents) > 0 && name <= p.last {
				return nil, corrupt("entry %d: name %q out of order", i, name)
			}
			p.last = name
			p.n.ents[name] = n.ino
			if n.isDir {
				p.n.nsub++
			}
		}
		if n.isDir {
			open = append(open, openDir{index: i, n: n})
		}
		img.nodes[n.ino] = n
	}
	if len(d.b) != 0 {
		return nil, corrupt("%d trailing bytes", len(d.b))
	}
	return img, nil
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorruptImage}, args...)...)
}

// validName accepts the names the FS can create: not empty, ".", "..",
// longer than maxNameLen, or holding a "/" or NUL.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= maxNameLen &&
		!strings.ContainsAny(name, "/\x00")
}

// splitChunks copies data into chunks.
func splitChunks(data []byte) [][]byte {
	if len(data) == 0 {
		return nil
	}
	out := make([][]byte, 0, (len(data)+chunkMask)>>chunkShift)
	for len(data) > 0 {
		k := min(len(data), chunkSize)
		out = append(out, slices.Clone(data[:k]))
		data = data[k:]
	}
	return out
}

// decoder reads varints and byte strings, remembering the first error; after
// one, every read returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil || n < 0 || n > len(d.b) {
		if d.err == nil {
			d.err = corrupt("truncated")
		}
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	switch {
	case n <= 0:
		d.err = corrupt("bad varint")
		return 0
	case n != uvarintLen(v):
		d.err = corrupt("varint not in shortest form")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	u := d.uvarint()
	return int64(u>>1) ^ -int64(u&1) // zig-zag, as binary.Varint
}

// uvarintLen is the length of v's shortest uvarint encoding.
func uvarintLen(v uint64) int {
	return max(1, (bits.Len64(v)+6)/7)
}
