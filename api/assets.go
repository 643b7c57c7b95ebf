package api

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
	"unicode/utf8"
)

// DefaultMaxAssetsBytes is the largest archive PackAssets makes: 64 MiB.
const DefaultMaxAssetsBytes = 64 << 20

// PackAssets packs the directory dir into the tar archive Frost takes as an
// app's read-only assets (DeployRequest.Assets), which guests see under
// /assets. The archive is at most DefaultMaxAssetsBytes; PackAssetsLimit
// takes another limit.
func PackAssets(dir string) ([]byte, error) {
	return PackAssetsLimit(dir, DefaultMaxAssetsBytes)
}

// PackAssetsLimit is PackAssets with a limit of maxBytes on the archive.
//
// The archive is deterministic: the same tree gives the same bytes, so the
// same digest, whenever and by whomever it is packed. It holds every regular
// file and directory under dir (dir itself excepted; hidden files included),
// sorted by path, with mode 0644 (0755 for executable files and for
// directories), modification times at the Unix epoch and no owners. Anything
// else under dir — a symbolic link, a device, a socket, a named pipe — is
// refused with an error that names it, as is a name that is not UTF-8; dir
// itself may be a symbolic link to a directory.
func PackAssetsLimit(dir string, maxBytes int64) ([]byte, error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is dir, or on the way to it
		}
		return nil, fmt.Errorf("assets directory %s: %w", dir, err)
	}
	if fi, err := os.Stat(root); err != nil {
		return nil, fmt.Errorf("assets directory %s: %w", dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("assets directory %s is not a directory", dir)
	}

	type entry struct {
		name string // slash-separated, relative to dir
		path string // on disk
		info fs.FileInfo
	}
	var entries []entry
	var total int64
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if !utf8.ValidString(name) {
			return fmt.Errorf("assets directory %s: the name %q is not UTF-8; rename it", dir, name)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch t := info.Mode().Type(); {
		case t == 0:
			total += info.Size()
			if total > maxBytes {
				return fmt.Errorf("assets directory %s holds more than the %s limit (reached at %s): leave out what the app does not need",
					dir, mib(maxBytes), name)
			}
		case t == fs.ModeDir:
		default:
			return fmt.Errorf("assets directory %s: %s is %s; assets may hold only regular files and directories (replace it with a copy of what it points to, or remove it)",
				dir, name, fileKind(t))
		}
		entries = append(entries, entry{name: name, path: p, info: info})
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{
			Name:    e.name,
			Mode:    0o644,
			ModTime: time.Unix(0, 0),
			Format:  tar.FormatPAX,
		}
		if e.info.IsDir() {
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, e.name+"/", 0o755
		} else {
			hdr.Typeflag, hdr.Size = tar.TypeReg, e.info.Size()
			if e.info.Mode()&0o111 != 0 {
				hdr.Mode = 0o755
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("assets directory %s: %s: %w", dir, e.name, err)
		}
		if !e.info.IsDir() {
			if err := copyFile(tw, e.path, e.info); err != nil {
				return nil, fmt.Errorf("assets directory %s: %s: %w", dir, e.name, err)
			}
		}
		if int64(buf.Len()) > maxBytes {
			return nil, fmt.Errorf("assets directory %s makes an archive larger than the %s limit (reached at %s): leave out what the app does not need",
				dir, mib(maxBytes), e.name)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > maxBytes {
		return nil, fmt.Errorf("assets directory %s makes an archive larger than the %s limit: leave out what the app does not need", dir, mib(maxBytes))
	}
	return buf.Bytes(), nil
}

// copyFile writes the file at path, which must still be what info says, to w.
func copyFile(w io.Writer, path string, info fs.FileInfo) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	now, err := f.Stat()
	if err != nil {
		return err
	}
	if !os.SameFile(info, now) || now.Size() != info.Size() {
		return errors.New("changed while it was being packed; try again")
	}
	n, err := io.CopyN(w, f, info.Size())
	if err != nil {
		if err == io.EOF {
			return fmt.Errorf("shrank to %d bytes while it was being packed; try again", n)
		}
		return err
	}
	return nil
}

// fileKind names a non-regular file type for error messages.
func fileKind(t fs.FileMode) string {
	switch {
	case t&fs.ModeSymlink != 0:
		return "a symbolic link"
	case t&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case t&fs.ModeSocket != 0:
		return "a socket"
	case t&fs.ModeCharDevice != 0:
		return "a character device"
	case t&fs.ModeDevice != 0:
		return "a device"
	}
	return "not a regular file"
}

// mib writes n bytes in MiB, as limits are usually given.
func mib(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d-byte", n)
}

// UploadAssets packs the directory dir with PackAssets, uploads the archive
// unless the server already has it, and returns its digest: set
// DeployRequest.Assets to it. Nothing is uploaded when dir cannot be packed.
func (c *Client) UploadAssets(ctx context.Context, dir string) (digest string, err error) {
	archive, err := PackAssets(dir)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(archive)
	digest = hex.EncodeToString(sum[:])
	if err := c.ensureBlob(ctx, digest, bytes.NewReader(archive), int64(len(archive))); err != nil {
		return "", err
	}
	return digest, nil
}

// ensureBlob uploads size bytes from r as blob digest unless the server
// already has it. r is read only if the blob is missing.
func (c *Client) ensureBlob(ctx context.Context, digest string, r io.Reader, size int64) error {
	have, err := c.HasBlob(ctx, digest)
	if err != nil || have {
		return err
	}
	_, err = c.PutBlob(ctx, digest, r, size)
	return err
}
