package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// An upload's bytes reach `frost agent write PATH MODE --framed` in
// frames (frameStdin, as a command's input to init; an empty one ends
// them), so that an upload cut short is told from a whole one. A runtime
// ends a command's input the same way whether its source ended or
// failed (its client gone, its body stopped coming: the pipe closes
// either way), and a plain write would then keep the first part of the
// file in place of the old one. Framed, write keeps a file only once the
// end frame came; else the old file stays as it was.

// ErrUploadCut is what a framed write answers when its input ended
// before the end frame.
var ErrUploadCut = errors.New("the upload ended before its last byte: nothing was written")

// uploadChunk is what an Upload puts in one frame (but the last), so
// that the frames' headers cost the write little and each frame is one
// write to the file (unframer.WriteTo).
const uploadChunk = 1 << 20

// Upload frames r for a framed write. Err says whether r failed; then
// the frames stop without the end frame and write keeps nothing.
type Upload struct {
	r       io.Reader
	buf     []byte
	pending []byte // framed bytes not yet read
	err     error  // r's failure
	done    bool
}

// NewUpload returns r's bytes framed for `frost agent write --framed`.
func NewUpload(r io.Reader) *Upload { return &Upload{r: r} }

// Err is the upload's source's failure (not io.EOF), if it failed.
func (u *Upload) Err() error { return u.err }

// WriteTo writes the frames to w from the Upload's own buffer, without
// the copy io.Copy's buffer would add (a runtime's copier calls it).
func (u *Upload) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if len(u.pending) == 0 {
			if _, err := u.Read(nil); err == io.EOF { // fills pending
				return total, nil
			} else if err != nil {
				return total, err
			}
		}
		n, err := w.Write(u.pending)
		total += int64(n)
		u.pending = u.pending[n:]
		if err != nil {
			return total, err
		}
	}
}

// Read implements io.Reader.
func (u *Upload) Read(p []byte) (int, error) {
	for len(u.pending) == 0 {
		if u.done {
			if u.err != nil {
				return 0, u.err
			}
			return 0, io.EOF
		}
		if u.buf == nil {
			u.buf = make([]byte, 5+uploadChunk)
		}
		// Fill the frame; not io.ReadFull, which would make a source's
		// clean end after a few bytes io.ErrUnexpectedEOF, the error a
		// request body cut short returns itself.
		var n int
		var err error
		for n < uploadChunk && err == nil {
			var k int
			k, err = u.r.Read(u.buf[5+n:])
			n += k
		}
		if n > 0 {
			u.buf[0] = frameStdin
			binary.BigEndian.PutUint32(u.buf[1:5], uint32(n))
			u.pending = u.buf[:5+n]
		}
		switch {
		case err == io.EOF:
			u.done = true
			u.pending = append(u.pending, frameStdin, 0, 0, 0, 0) // the end
		case err != nil:
			u.done, u.err = true, err
		}
	}
	n := copy(p, u.pending)
	u.pending = u.pending[n:]
	return n, nil
}

// ReadUpload returns the bytes of a framed upload read from r: io.EOF
// after the end frame, ErrUploadCut if r ends before it.
func ReadUpload(r io.Reader) io.Reader { return &unframer{r: r} }

type unframer struct {
	r    io.Reader
	left uint32 // of the current frame's payload
	end  bool
}

// WriteTo writes the payload to w a frame at a time: one large write
// each, where io.Copy would make 32 KiB ones (each a system call that
// gVisor's file system serves, the dearer part of an upload).
func (u *unframer) WriteTo(w io.Writer) (int64, error) {
	var total int64
	var buf []byte
	for {
		if err := u.next(); err == io.EOF {
			return total, nil
		} else if err != nil {
			return total, err
		}
		if uint32(len(buf)) < u.left {
			buf = make([]byte, min(u.left, maxUploadWrite))
		}
		n, err := io.ReadFull(u.r, buf[:min(u.left, uint32(len(buf)))])
		u.left -= uint32(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return total, ErrUploadCut
		}
		if err != nil {
			return total, err
		}
		m, err := w.Write(buf[:n])
		total += int64(m)
		if err != nil {
			return total, err
		}
	}
}

// maxUploadWrite bounds WriteTo's buffer.
const maxUploadWrite = 1 << 20

func (u *unframer) Read(p []byte) (int, error) {
	if err := u.next(); err != nil {
		return 0, err
	}
	if uint32(len(p)) > u.left {
		p = p[:u.left]
	}
	n, err := u.r.Read(p)
	u.left -= uint32(n)
	if err == io.EOF {
		if u.left > 0 {
			return n, ErrUploadCut
		}
		err = nil
	}
	return n, err
}

// next reads frame headers until one with payload left: io.EOF after
// the end frame.
func (u *unframer) next() error {
	for u.left == 0 {
		if u.end {
			return io.EOF
		}
		var h [5]byte
		if _, err := io.ReadFull(u.r, h[:]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return ErrUploadCut
			}
			return err
		}
		if h[0] != frameStdin {
			return fmt.Errorf("upload: a frame of type %q", h[0])
		}
		u.left = binary.BigEndian.Uint32(h[1:])
		u.end = u.left == 0
	}
	return nil
}
