// Package agent is the helper Frost runs inside an agent sandbox to reach
// its files and ports: `frost agent VERB ARGS`, started with the runtime's
// exec. The frost binary itself is mounted read-only into every sandbox
// (it is static), so a sandbox needs no tool of its own: a template built
// from any root file system, even one without a shell or coreutils, gets
// the same file and port API.
//
// Every verb speaks on standard input and output: file contents raw, file
// information as JSON, watch events as newline-delimited JSON. Failures go
// to standard error as one JSON api.Error with an exit code that says what
// kind of failure it was (the ExitNotFound... constants), so the host can
// answer 404 or 409 rather than 500.
package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/tree"
)

// Exit codes of the agent, read by the host.
const (
	ExitOK       = 0
	ExitFailure  = 1
	ExitUsage    = 2
	ExitNotFound = 3 // the path does not exist
	ExitIsDir    = 4 // a file was expected, the path is a directory
	ExitNotDir   = 5 // a directory was expected
	ExitExists   = 6 // the path exists and must not
	ExitRefused  = 7 // nothing listens on the port
	// ExitNoProcess: no running command has the pid.
	ExitNoProcess = 8
	// ExitInputClosed: the command's standard input is closed.
	ExitInputClosed = 9
	// ExitNoTerminal: the command does not run on a terminal.
	ExitNoTerminal = 10
	// ExitNoSpace: the sandbox's disk is full (its files are memory,
	// capped: ENOSPC).
	ExitNoSpace = 11
)

// NameServer is the name server of every sandbox with a network: an
// address outside any sandbox's, which the host forwards to its own name
// server (package gvisor). It is the same for every sandbox, so a
// checkpoint restored elsewhere, on another address, still resolves.
const NameServer = "169.254.169.253"

// useNameServer points the resolver at NameServer, in place of the
// template's own file (or link), when the sandbox has a network: an
// interface other than loopback.
func useNameServer(path string) error {
	ifs, err := net.Interfaces()
	if err != nil || !slices.ContainsFunc(ifs, func(i net.Interface) bool { return i.Flags&net.FlagLoopback == 0 }) {
		return nil
	}
	os.Remove(path)
	// A datagram lost on the way (rare, but a package install asks
	// hundreds of names) is asked again after a second, not five.
	if err := os.WriteFile(path, []byte("nameserver "+NameServer+"\noptions timeout:1 attempts:3\n"), 0o644); err != nil {
		return fmt.Errorf("the name server: %w", err)
	}
	return nil
}

// Verbs:
//
//	stat PATH            → FileInfo
//	ls PATH              → []FileInfo of the directory's entries, sorted
//	read PATH            → the file's bytes
//	write PATH [MODE] [--framed]
//	                     ← the file's bytes (--framed: in frames, upload.go);
//	                     parents are created; atomic
//	mkdir PATH           → FileInfo; parents are created
//	mv SRC DST           → FileInfo of DST; renames, creating DST's parents
//	tar DIR              → the tree under DIR as a tar stream (package tree)
//	untar DIR [--framed] ← a tar stream, unpacked into DIR whole or not at
//	                     all (tree.Unpack) → tree.Stats
//	rm PATH              removes a file, or a directory and all it holds
//	watch PATH [INTERVAL] → FileEvent lines as the tree under PATH changes
//	relay PORT           ↔ bytes to and from 127.0.0.1:PORT
//	init                 PID 1 of a sandbox: runs commands for run, reaps orphans
//	run [--cwd D] [--env K=V]... [--tag T] [--tty COLSxROWS] -- CMD
//	                     runs CMD as a child of init (run.go), on a terminal with --tty
//	ps                   → []api.Process: the commands init runs
//	attach PID           → a running command's output from now on, and its exit
//	signal PID SIGNAL    signals a running command's process group
//	stdin PID [--close]  ← bytes for a running command's input; --close ends it
//	resize PID COLSxROWS resizes a running command's terminal

// Main runs the agent with args (after "agent") and returns its exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 1 && args[0] == "init" {
		return initLoop()
	}
	if len(args) > 0 && args[0] == "run" {
		return runClient(args[1:], stdin, stdout, stderr)
	}
	if len(args) > 0 && slices.Contains([]string{"ps", "attach", "signal", "stdin", "resize"}, args[0]) {
		return processVerb(args[0], args[1:], stdin, stdout, stderr)
	}
	if len(args) < 2 {
		return fail(stderr, ExitUsage, "usage: frost agent stat|ls|read|write|mkdir|rm|watch|relay PATH|PORT, or frost agent init")
	}
	verb, arg := args[0], args[1]
	switch verb {
	case "stat":
		info, err := stat(arg)
		if err != nil {
			return failErr(stderr, err)
		}
		return writeJSON(stdout, stderr, info)
	case "ls":
		list, err := ls(arg)
		if err != nil {
			return failErr(stderr, err)
		}
		return writeJSON(stdout, stderr, list)
	case "read":
		return failErr(stderr, read(arg, stdout))
	case "write":
		mode, in := fs.FileMode(0o644), stdin
		if len(args) > 2 && args[len(args)-1] == "--framed" {
			in, args = ReadUpload(stdin), args[:len(args)-1]
		}
		if len(args) > 3 {
			return fail(stderr, ExitUsage, "usage: frost agent write PATH [MODE] [--framed]")
		}
		if len(args) > 2 {
			m, err := strconv.ParseUint(args[2], 8, 32)
			if err != nil || m > 0o7777 {
				return fail(stderr, ExitUsage, fmt.Sprintf("mode %q is not octal permission bits", args[2]))
			}
			mode = fs.FileMode(m)
		}
		return failErr(stderr, write(arg, mode, in))
	case "mkdir":
		if err := os.MkdirAll(arg, 0o755); err != nil {
			return failErr(stderr, err)
		}
		info, err := stat(arg)
		if err != nil {
			return failErr(stderr, err)
		}
		return writeJSON(stdout, stderr, info)
	case "mv":
		if len(args) < 3 {
			return fail(stderr, ExitUsage, "usage: frost agent mv SRC DST")
		}
		if _, err := os.Lstat(arg); err != nil {
			return failErr(stderr, err)
		}
		if err := os.MkdirAll(filepath.Dir(args[2]), 0o755); err != nil {
			return failErr(stderr, err)
		}
		if err := os.Rename(arg, args[2]); err != nil {
			return failErr(stderr, err)
		}
		info, err := stat(args[2])
		if err != nil {
			return failErr(stderr, err)
		}
		return writeJSON(stdout, stderr, info)
	case "tar":
		// Records of 64 KiB, as tar writes records: each write to the
		// pipe is a system call gVisor serves, and an archive of small
		// files is many small writes (a header, the data, its padding).
		bw := bufio.NewWriterSize(stdout, 64<<10)
		_, err := tree.Pack(arg, bw)
		if ferr := bw.Flush(); err == nil {
			err = ferr
		}
		return failErr(stderr, err)
	case "untar":
		// tar reads blocks of 512 bytes: from a buffer, not a system call
		// each.
		in := io.Reader(bufio.NewReaderSize(stdin, 64<<10))
		if len(args) > 2 && args[2] == "--framed" {
			in = ReadUpload(in)
		}
		st, err := tree.Unpack(arg, in)
		if err != nil {
			return failErr(stderr, err)
		}
		return writeJSON(stdout, stderr, st)
	case "rm":
		if _, err := os.Lstat(arg); err != nil {
			return failErr(stderr, err)
		}
		return failErr(stderr, os.RemoveAll(arg))
	case "watch":
		every := 100 * time.Millisecond
		if len(args) > 2 {
			d, err := time.ParseDuration(args[2])
			if err != nil || d <= 0 {
				return fail(stderr, ExitUsage, fmt.Sprintf("interval %q is not a positive duration", args[2]))
			}
			every = d
		}
		return failErr(stderr, watch(arg, every, stdout, nil))
	case "relay":
		port, err := strconv.Atoi(arg)
		if err != nil || port < 1 || port > 65535 {
			return fail(stderr, ExitUsage, fmt.Sprintf("port %q is not 1-65535", arg))
		}
		return failErr(stderr, relay(port, stdin, stdout))
	}
	return fail(stderr, ExitUsage, fmt.Sprintf("unknown agent verb %q", verb))
}

// Info describes the file at path (not following a final symlink).
func Info(path string, fi fs.FileInfo) api.FileInfo {
	info := api.FileInfo{
		Path:    path,
		Name:    fi.Name(),
		Size:    fi.Size(),
		Mode:    fmt.Sprintf("%04o", fi.Mode().Perm()),
		ModTime: fi.ModTime().UTC(),
	}
	switch {
	case fi.Mode().IsRegular():
		info.Type = "file"
	case fi.IsDir():
		info.Type, info.Size = "dir", 0
	case fi.Mode()&fs.ModeSymlink != 0:
		info.Type = "symlink"
		info.Target, _ = os.Readlink(path)
	default:
		info.Type = "other"
	}
	return info
}

func stat(path string) (api.FileInfo, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return api.FileInfo{}, err
	}
	return Info(filepath.Clean(path), fi), nil
}

func ls(dir string) ([]api.FileInfo, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, &os.PathError{Op: "ls", Path: dir, Err: errNotDir}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	list := make([]api.FileInfo, 0, len(entries))
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		list = append(list, Info(p, fi))
	}
	return list, nil
}

func read(path string, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return &os.PathError{Op: "read", Path: path, Err: errIsDir}
	}
	// Reads of a MiB: each is a system call gVisor's file system serves,
	// where io.Copy would make them of 32 KiB.
	_, err = io.CopyBuffer(onlyWriter{w}, onlyReader{f}, make([]byte, maxUploadWrite))
	return err
}

// onlyReader and onlyWriter hide a file's WriterTo and ReaderFrom, so that
// io.CopyBuffer uses the buffer it is given.
type (
	onlyReader struct{ io.Reader }
	onlyWriter struct{ io.Writer }
)

// write replaces path with what r holds: a temporary file in the same
// directory, synced and renamed, so a reader never sees half a file.
func write(path string, mode fs.FileMode, r io.Reader) (err error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return &os.PathError{Op: "write", Path: path, Err: errIsDir}
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".frost-upload-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := io.Copy(f, r); err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// relay copies between the caller and a TCP connection to a port inside
// the sandbox, until either side closes.
func relay(port int, in io.Reader, out io.Writer) error {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		return &os.PathError{Op: "relay", Path: strconv.Itoa(port), Err: errRefused}
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, in)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- err
	}()
	_, err = io.Copy(out, c)
	return err
}

var (
	errNotDir  = errors.New("not a directory")
	errIsDir   = errors.New("is a directory")
	errRefused = errors.New("nothing listens on that port in the sandbox")
)

// failErr reports err (nil: success) with the exit code its kind implies.
func failErr(w io.Writer, err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, fs.ErrNotExist):
		return fail(w, ExitNotFound, err.Error())
	case errors.Is(err, errIsDir):
		return fail(w, ExitIsDir, err.Error())
	case errors.Is(err, errNotDir), errors.Is(err, tree.ErrNotDir):
		return fail(w, ExitNotDir, err.Error())
	case errors.Is(err, fs.ErrExist):
		return fail(w, ExitExists, err.Error())
	case errors.Is(err, errRefused):
		return fail(w, ExitRefused, err.Error())
	case errors.Is(err, tree.ErrArchive):
		return fail(w, ExitUsage, err.Error())
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fail(w, ExitNoSpace, err.Error())
	}
	return fail(w, ExitFailure, err.Error())
}

func fail(w io.Writer, code int, msg string) int {
	json.NewEncoder(w).Encode(api.Error{Code: codeName(code), Message: msg})
	return code
}

// codeName is the api.Error code for an agent exit code.
func codeName(code int) string {
	switch code {
	case ExitNotFound, ExitNoProcess:
		return api.CodeNotFound
	case ExitUsage, ExitIsDir, ExitNotDir, ExitExists, ExitRefused:
		return api.CodeInvalidRequest
	case ExitInputClosed:
		return api.CodeConflict
	case ExitNoSpace:
		return api.CodeNoSpace
	}
	return api.CodeInternal
}

func writeJSON(w, stderr io.Writer, v any) int {
	if err := json.NewEncoder(w).Encode(v); err != nil {
		return fail(stderr, ExitFailure, err.Error())
	}
	return ExitOK
}

// watch polls the tree under root every interval and writes a FileEvent
// for every file created, changed (size, time or mode) or removed, until
// writing fails (the host stopped listening) or stop is closed. Polling
// rather than inotify: it works on every file system a template may use,
// and costs one walk per interval of a tree an agent works in.
func watch(root string, every time.Duration, w io.Writer, stop <-chan struct{}) error {
	fi, err := os.Stat(root)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return &os.PathError{Op: "watch", Path: root, Err: errNotDir}
	}
	enc := json.NewEncoder(w)
	prev := scan(root)
	// Tell the host the watch is in place: changes from now on are seen.
	if err := enc.Encode(api.FileEvent{Op: "ready", Path: filepath.Clean(root)}); err != nil {
		return err
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
		cur := scan(root)
		for _, ev := range diff(prev, cur) {
			if err := enc.Encode(ev); err != nil {
				return nil // the host went away
			}
		}
		prev = cur
	}
}

// scan maps every path under root to its information.
func scan(root string) map[string]api.FileInfo {
	m := map[string]api.FileInfo{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			m[p] = Info(p, fi)
		}
		return nil
	})
	return m
}

// diff returns the events that turn prev into cur, sorted by path.
func diff(prev, cur map[string]api.FileInfo) []api.FileEvent {
	var evs []api.FileEvent
	for p, info := range cur {
		old, ok := prev[p]
		switch {
		case !ok:
			evs = append(evs, api.FileEvent{Op: "create", Path: p, Info: info})
		case old.Type != info.Type || old.Mode != info.Mode,
			// A directory's time changes with its entries, which have
			// their own events.
			info.Type != "dir" && (old.Size != info.Size || !old.ModTime.Equal(info.ModTime)):
			evs = append(evs, api.FileEvent{Op: "write", Path: p, Info: info})
		}
	}
	for p := range prev {
		if _, ok := cur[p]; !ok {
			evs = append(evs, api.FileEvent{Op: "remove", Path: p})
		}
	}
	slices.SortFunc(evs, func(a, b api.FileEvent) int {
		if a.Path < b.Path {
			return -1
		}
		if a.Path > b.Path {
			return 1
		}
		return 0
	})
	return evs
}
