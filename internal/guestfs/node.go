package guestfs

import (
	"io/fs"
	"maps"
	"slices"
)

// File data lives in fixed-size chunks so that a write to a large file shared
// with an Image copies one chunk, not the file.
const (
	chunkShift = 16
	chunkSize  = 1 << chunkShift
	chunkMask  = chunkSize - 1
)

// rootIno is the inode number of "/" in every tree.
const rootIno uint64 = 1

// node is one file or directory. A node reachable from an Image is frozen:
// nothing writes to it again. The live tree changes a node only after copying
// it into its overlay (FS.mut), so a frozen node may be shared by any number
// of images and file systems.
type node struct {
	ino   uint64
	isDir bool
	perm  fs.FileMode // permission bits only (fs.ModePerm)

	// unlinked: no directory entry names the node any more, but an open
	// handle still does (POSIX "unlinked but open"). Only overlay nodes.
	unlinked bool

	atim, mtim, ctim int64 // epoch nanoseconds

	// Directories.
	ents map[string]uint64 // name → inode number
	nsub int               // how many of ents are directories (for Nlink)

	// Regular files. Invariant: i<<chunkShift + len(chunks[i]) <= size for
	// every i; bytes past a chunk's length, nil chunks and chunks past the
	// slice's end read as zeros (sparse holes).
	size   int64
	chunks [][]byte
	// owned[i]: chunks[i] was allocated by this node and may be written in
	// place. A chunk not owned may be shared with an Image and is copied
	// first. Meaningful only for overlay nodes.
	owned []bool
}

// clone returns a private copy of n that shares file data copy-on-write.
func (n *node) clone() *node {
	c := *n
	if n.isDir {
		c.ents = maps.Clone(n.ents)
		if c.ents == nil {
			c.ents = map[string]uint64{}
		}
	} else {
		c.chunks = slices.Clone(n.chunks)
		c.owned = make([]bool, len(c.chunks))
	}
	return &c
}

// readAt copies file bytes at off into p and returns how many it copied:
// fewer than len(p) only at end of file.
func (n *node) readAt(p []byte, off int64) int {
	if off >= n.size {
		return 0
	}
	if rem := n.size - off; int64(len(p)) > rem {
		p = p[:rem]
	}
	total := len(p)
	for len(p) > 0 {
		ci, co := int(off>>chunkShift), int(off&chunkMask)
		k := min(len(p), chunkSize-co)
		var c []byte
		if ci < len(n.chunks) {
			c = n.chunks[ci]
		}
		copied := 0
		if co < len(c) {
			copied = copy(p[:k], c[co:])
		}
		clear(p[copied:k])
		p = p[k:]
		off += int64(k)
	}
	return total
}

// writeAt writes p at off, growing the file as needed. The caller has checked
// the cap and that off+len(p) does not overflow; n must be an overlay node.
func (n *node) writeAt(p []byte, off int64) {
	end := off + int64(len(p))
	if need := int((end-1)>>chunkShift) + 1; need > len(n.chunks) {
		n.chunks = append(n.chunks, make([][]byte, need-len(n.chunks))...)
		n.owned = append(n.owned, make([]bool, need-len(n.owned))...)
	}
	for len(p) > 0 {
		ci, co := int(off>>chunkShift), int(off&chunkMask)
		k := min(len(p), chunkSize-co)
		c := n.writableChunk(ci, co+k)
		copy(c[co:], p[:k])
		p = p[k:]
		off += int64(k)
	}
	if end > n.size {
		n.size = end
	}
}

// writableChunk returns chunk ci, private to n and at least need bytes long,
// copying a shared chunk and zeroing any bytes it adds.
func (n *node) writableChunk(ci, need int) []byte {
	c := n.chunks[ci]
	switch {
	case !n.owned[ci]:
		l := max(len(c), need)
		nc := make([]byte, l, growCap(0, l))
		copy(nc, c)
		c = nc
		n.owned[ci] = true
	case need <= len(c):
		return c
	case need <= cap(c):
		old := len(c)
		c = c[:need]
		clear(c[old:]) // stale bytes from before a truncate
	default:
		nc := make([]byte, need, growCap(cap(c), need))
		copy(nc, c)
		c = nc
	}
	n.chunks[ci] = c
	return c
}

// growCap picks a chunk capacity for need bytes: doubling, at most a chunk.
func growCap(old, need int) int {
	c := max(need, 2*old, 64)
	return min(c, chunkSize)
}

// truncate sets the file's size, dropping data past it. n must be an overlay
// node.
func (n *node) truncate(size int64) {
	if size < n.size {
		keep := int((size + chunkMask) >> chunkShift)
		if keep < len(n.chunks) {
			clear(n.chunks[keep:])
			clear(n.owned[keep:])
			n.chunks = n.chunks[:keep]
			n.owned = n.owned[:keep]
		}
		if keep > 0 && keep <= len(n.chunks) {
			rel := int(size - int64(keep-1)<<chunkShift)
			if c := n.chunks[keep-1]; len(c) > rel {
				n.chunks[keep-1] = c[:rel] // safe on a shared chunk: no write
			}
		}
	}
	n.size = size
}
