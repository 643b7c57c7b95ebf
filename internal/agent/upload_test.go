package agent

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// TestFramedWrite: a framed upload replaces the file only once its end
// frame came. Cut anywhere before (its source failed, or the frames just
// stop), the old file is left as it was and nothing is left beside it.
func TestFramedWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	os.WriteFile(p, []byte("old"), 0o644)
	content := strings.Repeat("new bytes\n", 20000) // several frames
	var framed bytes.Buffer
	up := NewUpload(iotest.HalfReader(strings.NewReader(content)))
	if _, err := io.Copy(&framed, up); err != nil || up.Err() != nil {
		t.Fatal(err, up.Err())
	}
	whole := framed.String()

	for _, cut := range []int{0, 3, 5, 100, len(whole) / 2, len(whole) - 5, len(whole) - 1} {
		if _, e, code := run(t, whole[:cut], "write", p, "0600", "--framed"); code != ExitFailure || !strings.Contains(e, "nothing was written") {
			t.Fatalf("cut at %d of %d: exit %d %s", cut, len(whole), code, e)
		}
		if b, _ := os.ReadFile(p); string(b) != "old" {
			t.Fatalf("cut at %d: the file holds %d bytes", cut, len(b))
		}
	}
	if _, e, code := run(t, whole, "write", p, "0600", "--framed"); code != ExitOK {
		t.Fatalf("whole: exit %d %s", code, e)
	}
	if b, _ := os.ReadFile(p); string(b) != content {
		t.Fatalf("whole: the file holds %d bytes, want %d", len(b), len(content))
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("%d entries, want the file alone", len(entries))
	}
	// Frames that are not an upload's are refused too.
	if _, _, code := run(t, "Zjunk", "write", p, "--framed"); code != ExitFailure {
		t.Fatalf("junk: exit %d", code)
	}
	if _, _, code := run(t, "", "write", p, "0600", "extra", "--framed"); code != ExitUsage {
		t.Fatalf("extra argument: exit %d", code)
	}
}

// TestUploadSourceFails: when an upload's source fails, its frames stop
// without the end frame and Err says why.
func TestUploadSourceFails(t *testing.T) {
	// A request body cut short fails with io.ErrUnexpectedEOF itself.
	for _, boom := range []error{errors.New("the client went away"), io.ErrUnexpectedEOF} {
		up := NewUpload(io.MultiReader(strings.NewReader("first part"), iotest.ErrReader(boom)))
		var framed bytes.Buffer
		if _, err := io.Copy(&framed, up); !errors.Is(err, boom) || !errors.Is(up.Err(), boom) {
			t.Fatalf("copy: %v, Err %v", err, up.Err())
		}
		got, err := io.ReadAll(ReadUpload(&framed))
		if string(got) != "first part" || !errors.Is(err, ErrUploadCut) {
			t.Fatalf("%v: read back %q, %v", boom, got, err)
		}
	}
	var framed bytes.Buffer
	// An empty source is one end frame: an empty file.
	up := NewUpload(strings.NewReader(""))
	framed.Reset()
	io.Copy(&framed, up)
	if got, err := io.ReadAll(ReadUpload(&framed)); len(got) != 0 || err != nil || framed.Len() != 0 {
		t.Fatalf("empty: %q %v, %d bytes left", got, err, framed.Len())
	}
}

// TestTreeVerbs: tar writes a tree untar takes back, framed; a cut
// upload or a malformed archive changes nothing and is the caller's
// error (ExitUsage: 400), a missing tree is not found, a file is not a
// directory.
func TestTreeVerbs(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "d"), 0o755)
	os.WriteFile(filepath.Join(src, "d", "f.txt"), []byte(strings.Repeat("x", 100000)), 0o640)
	packed, e, code := run(t, "", "tar", src)
	if code != ExitOK {
		t.Fatalf("tar: %d %s", code, e)
	}
	var framed bytes.Buffer
	io.Copy(&framed, NewUpload(strings.NewReader(packed)))
	dst := filepath.Join(t.TempDir(), "dst")
	for _, cut := range []int{framed.Len() / 2, framed.Len() - 1} {
		if _, e, code := run(t, framed.String()[:cut], "untar", dst, "--framed"); code != ExitUsage || !strings.Contains(e, "bad archive") {
			t.Errorf("cut at %d: %d %s", cut, code, e)
		}
		if _, err := os.Stat(dst); !os.IsNotExist(err) {
			t.Errorf("cut at %d: %s made: %v", cut, dst, err)
		}
	}
	out, e, code := run(t, framed.String(), "untar", dst, "--framed")
	if code != ExitOK || out != `{"files":1,"dirs":1,"symlinks":0,"bytes":100000}`+"\n" {
		t.Fatalf("untar: %d %q %s", code, out, e)
	}
	if fi, err := os.Stat(filepath.Join(dst, "d", "f.txt")); err != nil || fi.Size() != 100000 || fi.Mode().Perm() != 0o640 {
		t.Fatalf("unpacked: %v %v", fi, err)
	}
	if _, _, code := run(t, "", "tar", filepath.Join(src, "nothing")); code != ExitNotFound {
		t.Errorf("tar of a missing tree: %d", code)
	}
	if _, _, code := run(t, "", "tar", filepath.Join(src, "d", "f.txt")); code != ExitNotDir {
		t.Errorf("tar of a file: %d", code)
	}
}
