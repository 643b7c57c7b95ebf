// Command fsprobe exercises a guest's file system through the os package
// and prints one line per check: "ok NAME" or "FAIL NAME: why", then
// "done N" with N failures. Built for wasip1 by guestfs's tests, which mount
// a guestfs.FS at "/" holding /seed/keep.txt ("original\n") and
// /seed/gone.txt ("bye\n").
//
//	fsprobe mutate   change the tree in every way the os package allows
//	fsprobe verify   check the tree is the seed again (after a Reset)
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"
)

var failures int

// expect reports a check: err nil means it passed.
func expect(name string, err error) {
	if err != nil {
		failures++
		fmt.Printf("FAIL %s: %v\n", name, err)
		return
	}
	fmt.Printf("ok %s\n", name)
}

// content checks a file holds want.
func content(p, want string) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if string(b) != want {
		return fmt.Errorf("%s holds %q, want %q", p, b, want)
	}
	return nil
}

// missing checks p does not exist.
func missing(p string) error {
	_, err := os.Stat(p)
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stat %s: %v, want not-exist", p, err)
	}
	return nil
}

// list returns the names in a directory, "/" after directories.
func list(p string) (string, error) {
	ents, err := os.ReadDir(p)
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() {
			n += "/"
		}
		names = append(names, n)
	}
	return strings.Join(names, " "), nil
}

func listIs(p, want string) error {
	got, err := list(p)
	if err == nil && got != want {
		err = fmt.Errorf("%s lists %q, want %q", p, got, want)
	}
	return err
}

func main() {
	if len(os.Args) != 2 {
		fmt.Println("usage: fsprobe mutate|verify")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "mutate":
		mutate()
	case "verify":
		verify()
	}
	fmt.Printf("done %d\n", failures)
}

func mutate() {
	expect("seed readable", content("/seed/keep.txt", "original\n"))
	expect("mkdir all", os.MkdirAll("/work/a/b", 0o755))
	expect("write", os.WriteFile("/work/a/b/f.txt", []byte("hello"), 0o644))
	expect("read back", content("/work/a/b/f.txt", "hello"))

	expect("append", func() error {
		f, err := os.OpenFile("/work/a/b/f.txt", os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		if _, err := f.WriteString(" world"); err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		return content("/work/a/b/f.txt", "hello world")
	}())

	expect("stat", func() error {
		st, err := os.Stat("/work/a/b/f.txt")
		if err != nil {
			return err
		}
		if st.Size() != 11 || !st.Mode().IsRegular() || st.Name() != "f.txt" {
			return fmt.Errorf("size %d mode %v name %s", st.Size(), st.Mode(), st.Name())
		}
		dst, err := os.Stat("/work/a")
		if err != nil || !dst.IsDir() {
			return fmt.Errorf("dir stat %v %v", dst, err)
		}
		return nil
	}())

	expect("seek read write", func() error {
		f, err := os.OpenFile("/work/a/b/f.txt", os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := f.Seek(6, io.SeekStart); err != nil {
			return err
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(f, buf); err != nil || string(buf) != "world" {
			return fmt.Errorf("read %q %v", buf, err)
		}
		if _, err := f.Seek(-5, io.SeekEnd); err != nil {
			return err
		}
		if _, err := f.WriteString("WORLD"); err != nil {
			return err
		}
		if n, err := f.ReadAt(buf, 0); n != 5 || err != nil || string(buf) != "hello" {
			return fmt.Errorf("ReadAt %q %v", buf, err)
		}
		return content("/work/a/b/f.txt", "hello WORLD")
	}())

	expect("truncate", func() error {
		if err := os.Truncate("/work/a/b/f.txt", 5); err != nil {
			return err
		}
		if err := content("/work/a/b/f.txt", "hello"); err != nil {
			return err
		}
		f, err := os.OpenFile("/work/a/b/f.txt", os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := f.Truncate(8); err != nil {
			return err
		}
		return content("/work/a/b/f.txt", "hello\x00\x00\x00")
	}())

	expect("rename file", func() error {
		if err := os.Rename("/work/a/b/f.txt", "/work/g.txt"); err != nil {
			return err
		}
		if err := missing("/work/a/b/f.txt"); err != nil {
			return err
		}
		return content("/work/g.txt", "hello\x00\x00\x00")
	}())

	expect("rename dir", func() error {
		if err := os.Rename("/work/a", "/work/z"); err != nil {
			return err
		}
		if err := missing("/work/a"); err != nil {
			return err
		}
		st, err := os.Stat("/work/z/b")
		if err != nil || !st.IsDir() {
			return fmt.Errorf("moved subdir: %v", err)
		}
		return nil
	}())

	expect("readdir", listIs("/work", "g.txt z/"))

	expect("remove", func() error {
		if err := os.Remove("/work/z"); err == nil {
			return errors.New("removed a non-empty directory")
		}
		if err := os.RemoveAll("/work/z"); err != nil {
			return err
		}
		return missing("/work/z")
	}())

	expect("exclusive create", func() error {
		_, err := os.OpenFile("/work/g.txt", os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("O_EXCL on existing file: %v", err)
		}
		return nil
	}())

	expect("chtimes", func() error {
		when := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
		if err := os.Chtimes("/work/g.txt", when, when); err != nil {
			return err
		}
		st, err := os.Stat("/work/g.txt")
		if err != nil {
			return err
		}
		if !st.ModTime().Equal(when) {
			return fmt.Errorf("mtime %v", st.ModTime())
		}
		return nil
	}())

	expect("unlinked while open", func() error {
		f, err := os.Create("/work/tmp")
		if err != nil {
			return err
		}
		defer f.Close()
		if err := os.Remove("/work/tmp"); err != nil {
			return err
		}
		if _, err := f.WriteString("still here"); err != nil {
			return err
		}
		buf := make([]byte, 10)
		if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != "still here" {
			return fmt.Errorf("read %q %v", buf, err)
		}
		return missing("/work/tmp")
	}())

	// Nothing on the host is reachable, whatever the path.
	for _, p := range []string{"/etc/passwd", "../../../etc/passwd", "/../../../etc/hostname", "/proc/self/environ", "/work/../../etc/passwd"} {
		expect("no host file "+p, missing(p))
	}
	expect("chdir escape", func() error {
		if err := os.Chdir("/work"); err != nil {
			return err
		}
		defer os.Chdir("/")
		if _, err := os.ReadFile("../../../../etc/passwd"); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("relative escape: %v", err)
		}
		return nil
	}())
	expect("root is the tree", listIs("/../..", "seed/ work/"))

	expect("cap refuses whole write", func() error {
		err := os.WriteFile("/work/big", bytes.Repeat([]byte("x"), 2<<20), 0o644)
		if err == nil {
			return errors.New("2 MiB write under a 1 MiB cap succeeded")
		}
		fmt.Printf("cap error: %v\n", err)
		st, serr := os.Stat("/work/big")
		if serr != nil || st.Size() != 0 {
			return fmt.Errorf("after refused write: %v, %v", st, serr)
		}
		return os.Remove("/work/big")
	}())

	expect("change seed", func() error {
		if err := os.WriteFile("/seed/keep.txt", []byte("changed"), 0o644); err != nil {
			return err
		}
		if err := os.Remove("/seed/gone.txt"); err != nil {
			return err
		}
		return os.WriteFile("/seed/new.txt", []byte("new"), 0o644)
	}())
	expect("final tree", listIs("/seed", "keep.txt new.txt"))
}

func verify() {
	expect("keep restored", content("/seed/keep.txt", "original\n"))
	expect("gone back", content("/seed/gone.txt", "bye\n"))
	expect("new gone", missing("/seed/new.txt"))
	expect("work gone", missing("/work"))
	expect("root", listIs("/", "seed/"))
	expect("seed", listIs("/seed", "gone.txt keep.txt"))
}
