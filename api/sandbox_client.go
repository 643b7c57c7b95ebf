package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Client methods of the agent sandbox routes (/v1/sandboxes). Like the
// others, each is safe for concurrent use and blocks until the answer is
// read or ctx is done; the streaming ones (Exec, ReadFile, WriteFile,
// WatchDir) block until their stream ends.

// ErrExecTimeout says that Exec's command was killed because it ran past
// ExecRequest.Timeout. Exec wraps it (check with errors.Is) and still
// returns the command's exit code.
var ErrExecTimeout = errors.New("the command was killed by its timeout")

// FileEventReady is the Op of the first event of WatchDir: the watch is in
// place, and changes from then on are reported.
const FileEventReady = "ready"

// CreateSandbox starts a sandbox and returns it, running.
func (c *Client) CreateSandbox(ctx context.Context, req SandboxCreateRequest) (Sandbox, error) {
	var s Sandbox
	err := c.doJSON(ctx, http.MethodPost, "/v1/sandboxes", req, &s)
	return s, err
}

// Sandboxes lists every sandbox, running or paused.
func (c *Client) Sandboxes(ctx context.Context) ([]Sandbox, error) {
	var list []Sandbox
	err := c.do(ctx, http.MethodGet, "/v1/sandboxes", nil, "", -1, &list)
	return list, err
}

// Sandbox returns sandbox id. A sandbox that does not exist (or no longer
// does) is a *StatusError with Status 404.
func (c *Client) Sandbox(ctx context.Context, id string) (Sandbox, error) {
	return c.sandboxCall(ctx, http.MethodGet, id, "")
}

// KillSandbox stops sandbox id and deletes it with its files and its
// checkpoint, if paused. There is no undo.
func (c *Client) KillSandbox(ctx context.Context, id string) error {
	p, err := sandboxPath(id, "")
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, p, nil, "", -1, nil)
}

// PauseSandbox checkpoints sandbox id to storage and stops it; its memory
// and processes come back with ResumeSandbox (or with the next Exec or file
// call, which resume it too).
func (c *Client) PauseSandbox(ctx context.Context, id string) (Sandbox, error) {
	return c.sandboxCall(ctx, http.MethodPost, id, "pause")
}

// ResumeSandbox restores paused sandbox id from its checkpoint; its timeout
// starts again. Resuming a running sandbox does nothing.
func (c *Client) ResumeSandbox(ctx context.Context, id string) (Sandbox, error) {
	return c.sandboxCall(ctx, http.MethodPost, id, "resume")
}

// SetSandboxTimeout sets sandbox id's timeout to d, counted from now: it
// expires d from now unless extended again.
func (c *Client) SetSandboxTimeout(ctx context.Context, id string, d time.Duration) (Sandbox, error) {
	var s Sandbox
	p, err := sandboxPath(id, "timeout")
	if err != nil {
		return s, err
	}
	body := struct {
		Timeout Duration `json:"timeout"`
	}{Duration(d)}
	err = c.doJSON(ctx, http.MethodPost, p, body, &s)
	return s, err
}

// SetSandboxNetwork replaces what sandbox id may connect to (nil: the
// internet, unlimited): at once if it runs, from its resume if paused.
func (c *Client) SetSandboxNetwork(ctx context.Context, id string, n *SandboxNetwork) (Sandbox, error) {
	var s Sandbox
	p, err := sandboxPath(id, "network")
	if err != nil {
		return s, err
	}
	if n == nil {
		n = &SandboxNetwork{}
	}
	err = c.doJSON(ctx, http.MethodPut, p, n, &s)
	return s, err
}

func (c *Client) sandboxCall(ctx context.Context, method, id, sub string) (Sandbox, error) {
	var s Sandbox
	p, err := sandboxPath(id, sub)
	if err != nil {
		return s, err
	}
	err = c.do(ctx, method, p, nil, "", -1, &s)
	return s, err
}

// Exec runs req.Cmd in sandbox id and returns its exit code. Its output is
// written to stdout and stderr as it comes (a nil writer drops it). With
// stdin not nil, req.Stdin is set and stdin is sent as the command's input
// while it runs; its end closes the command's stdin. Exec may return before
// stdin is read to its end (the command exited without reading it all): a
// Read of stdin in progress then finishes in the background, and what it
// read is dropped.
//
// The exit code is -1 when there is none. A command killed by
// req.Timeout returns its exit code with an error wrapping ErrExecTimeout.
// An error the server reports after output began (the sandbox was killed
// mid-command) is a *StatusError like one reported before, with the Status
// the server gives that error's code.
func (c *Client) Exec(ctx context.Context, id string, req ExecRequest, stdin io.Reader, stdout, stderr io.Writer) (exitCode int, err error) {
	return c.ExecStdio(ctx, id, req, Stdio{In: stdin, Out: stdout, Err: stderr})
}

// Stdio is a command's streams for ExecStdio: In (nil: no input) is sent
// as its input, its output is written to Out and Err (nil: dropped), and
// Started is called with its pid once it runs, before any output.
type Stdio struct {
	In       io.Reader
	Out, Err io.Writer
	Started  func(pid int)
}

// ExecStdio is Exec with Started: for a command on a terminal
// (req.TTY), whose pid Resize needs.
func (c *Client) ExecStdio(ctx context.Context, id string, req ExecRequest, stdio Stdio) (exitCode int, err error) {
	stdin := stdio.In
	req.Stdin = stdin != nil
	p, line, err := execLine(id, req)
	if err != nil {
		return -1, err
	}
	var body io.Reader = bytes.NewReader(line)
	size := int64(len(line))
	if stdin != nil {
		// A pipe, not stdin itself, is the body: closing it when the
		// command is done frees the transport even while a Read of stdin
		// blocks.
		pr, pw := io.Pipe()
		defer pr.Close()
		go func() {
			_, err := pw.Write(line)
			if err == nil {
				_, err = io.Copy(pw, stdin)
			}
			pw.CloseWithError(err)
		}()
		body, size = pr, -1
	}
	resp, err := c.send(ctx, http.MethodPost, p, body, "application/x-ndjson", size)
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	return execEvents(ctx, resp.Body, "exec in sandbox "+id, time.Duration(req.Timeout), stdio)
}

// execLine returns exec's route in sandbox id and req as the body's first
// line.
func execLine(id string, req ExecRequest) (string, []byte, error) {
	p, err := sandboxPath(id, "exec")
	if err != nil {
		return "", nil, err
	}
	if len(req.Cmd) == 0 || req.Cmd[0] == "" {
		return "", nil, errors.New("exec needs a command, such as [\"bash\", \"-lc\", \"ls /\"]")
	}
	line, err := json.Marshal(req)
	if err != nil {
		return "", nil, err
	}
	return p, append(line, '\n'), nil
}

// execEvents reads ExecEvent lines to the final one: the pid to
// stdio.Started, output to stdio.Out and stdio.Err, the exit code or the
// error returned.
func execEvents(ctx context.Context, body io.Reader, what string, timeout time.Duration, stdio Stdio) (int, error) {
	dec := json.NewDecoder(body)
	for {
		var ev ExecEvent
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil {
				return -1, ctx.Err()
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return -1, fmt.Errorf("%s: the answer ended before the command's exit (%w); the server or the connection failed, and the command may still be running", what, err)
		}
		exit := -1
		if ev.Exit != nil {
			exit = *ev.Exit
		}
		switch {
		case ev.Error != nil:
			return exit, &StatusError{Status: codeStatus(ev.Error.Code), Err: *ev.Error}
		case ev.TimedOut:
			return exit, fmt.Errorf("%w of %v", ErrExecTimeout, timeout)
		case ev.Exit != nil:
			return exit, nil
		}
		if ev.Pid > 0 && stdio.Started != nil {
			stdio.Started(ev.Pid)
		}
		var w io.Writer
		switch ev.Stream {
		case "stdout":
			w = stdio.Out
		case "stderr":
			w = stdio.Err
		}
		if w == nil || len(ev.Data) == 0 {
			continue
		}
		if _, err := w.Write(ev.Data); err != nil {
			return -1, fmt.Errorf("%s: write %s: %w", what, ev.Stream, err)
		}
	}
}

// ExecBackground starts a command and returns its pid at once; it runs
// on, reachable through Processes, Attach, Signal and Input (with
// req.Stdin set its input stays open for Input).
func (c *Client) ExecBackground(ctx context.Context, id string, req ExecRequest) (int, error) {
	req.Background = true
	p, line, err := execLine(id, req)
	if err != nil {
		return 0, err
	}
	var ev ExecEvent
	if err := c.do(ctx, http.MethodPost, p, bytes.NewReader(line), "application/x-ndjson", int64(len(line)), &ev); err != nil {
		return 0, err
	}
	if ev.Pid <= 0 {
		return 0, fmt.Errorf("exec in sandbox %s: the answer has no pid", id)
	}
	return ev.Pid, nil
}

// Processes lists the commands running in a sandbox (started by an exec,
// Frost's or E2B's), by pid.
func (c *Client) Processes(ctx context.Context, id string) ([]Process, error) {
	p, err := sandboxPath(id, "processes")
	if err != nil {
		return nil, err
	}
	var list []Process
	err = c.do(ctx, http.MethodGet, p, nil, "", -1, &list)
	return list, err
}

// SandboxMetrics returns what a sandbox used, sampled every few seconds
// while it ran (the last hour's), oldest first, the last one for now if
// it runs; zero from and to leave the range open.
func (c *Client) SandboxMetrics(ctx context.Context, id string, from, to time.Time) ([]SandboxMetric, error) {
	p, err := sandboxPath(id, "metrics")
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if !from.IsZero() {
		q.Set("from", from.UTC().Format(time.RFC3339Nano))
	}
	if !to.IsZero() {
		q.Set("to", to.UTC().Format(time.RFC3339Nano))
	}
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var list []SandboxMetric
	err = c.do(ctx, http.MethodGet, p, nil, "", -1, &list)
	return list, err
}

// Attach follows a running command: its output from now on goes to
// stdout and stderr, and its exit code is returned when it ends. Leaving
// (ending ctx) does not stop it.
func (c *Client) Attach(ctx context.Context, id string, pid int, stdout, stderr io.Writer) (int, error) {
	p, err := sandboxPath(id, fmt.Sprintf("processes/%d/output", pid))
	if err != nil {
		return -1, err
	}
	resp, err := c.send(ctx, http.MethodGet, p, nil, "", -1)
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	return execEvents(ctx, resp.Body, fmt.Sprintf("attach to command %d in sandbox %s", pid, id), 0, Stdio{Out: stdout, Err: stderr})
}

// Signal sends a signal (a name, "TERM", "KILL", "INT"..., or a number;
// "" is TERM) to a running command and all it started.
func (c *Client) Signal(ctx context.Context, id string, pid int, signal string) error {
	p, err := sandboxPath(id, fmt.Sprintf("processes/%d/signal", pid))
	if err != nil {
		return err
	}
	return c.doJSON(ctx, http.MethodPost, p, SignalRequest{Signal: signal}, nil)
}

// Input writes what r holds to a running command's standard input (it
// must have been started with stdin), then closes it if closeIn is set.
func (c *Client) Input(ctx context.Context, id string, pid int, r io.Reader, closeIn bool) error {
	p, err := sandboxPath(id, fmt.Sprintf("processes/%d/stdin", pid))
	if err != nil {
		return err
	}
	if closeIn {
		p += "?close=true"
	}
	if r == nil {
		r = strings.NewReader("")
	}
	return c.do(ctx, http.MethodPost, p, r, "application/octet-stream", -1, nil)
}

// Resize sets the size of the terminal a running command runs on (one
// started with ExecRequest.TTY); the command is told (SIGWINCH).
func (c *Client) Resize(ctx context.Context, id string, pid int, size TTY) error {
	p, err := sandboxPath(id, fmt.Sprintf("processes/%d/resize", pid))
	if err != nil {
		return err
	}
	return c.doJSON(ctx, http.MethodPost, p, size, nil)
}

// codeStatus is the HTTP status the server answers with an error code, for
// errors that reach the client inside a stream that had begun with 200.
func codeStatus(code string) int {
	switch code {
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeNotFound:
		return http.StatusNotFound
	case CodeInvalidRequest:
		return http.StatusBadRequest
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeInvalidModule:
		return http.StatusUnprocessableEntity
	case "not_enabled":
		return http.StatusNotImplemented
	case "port_closed":
		return http.StatusBadGateway
	case CodeNoSpace:
		return http.StatusInsufficientStorage
	case CodeDied:
		return http.StatusGone
	}
	return http.StatusInternalServerError
}

// ReadFile writes the file at path (absolute) in sandbox id to w. A file
// that does not exist is a *StatusError with Status 404; a directory, 400.
func (c *Client) ReadFile(ctx context.Context, id, path string, w io.Writer) error {
	p, err := filesPath(id, "", path, nil)
	if err != nil {
		return err
	}
	resp, err := c.send(ctx, http.MethodGet, p, nil, "", -1)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("read %s in sandbox %s: %w", path, id, err)
	}
	return nil
}

// WriteFile replaces the file at path (absolute) in sandbox id with what r
// holds, streamed to its end, creating the file's parent directories. mode
// is the file's permission bits (with setuid, setgid and sticky); 0 leaves
// them to the server (0644). It returns the file as written.
func (c *Client) WriteFile(ctx context.Context, id, path string, mode os.FileMode, r io.Reader) (FileInfo, error) {
	var info FileInfo
	var q url.Values
	if m := unixMode(mode); m != 0 {
		q = url.Values{"mode": {strconv.FormatUint(uint64(m), 8)}}
	}
	p, err := filesPath(id, "", path, q)
	if err != nil {
		return info, err
	}
	if r == nil {
		r = http.NoBody
	}
	err = c.do(ctx, http.MethodPut, p, r, "application/octet-stream", -1, &info)
	return info, err
}

// WriteTree unpacks the tar stream r into directory dir (absolute) of
// sandbox id, made with its parents if missing, merging it with what is
// there: a file of the archive replaces the one of its name, a directory
// merges. Nothing changes unless the whole stream came and every entry
// fits (a file where a directory is, a path out of dir: 400). It
// returns what the archive held.
func (c *Client) WriteTree(ctx context.Context, id, dir string, r io.Reader) (ArchiveStats, error) {
	var st ArchiveStats
	p, err := filesPath(id, "archive", dir, nil)
	if err != nil {
		return st, err
	}
	err = c.do(ctx, http.MethodPut, p, r, "application/x-tar", -1, &st)
	return st, err
}

// ReadTree returns the tree under directory dir (absolute) of sandbox id
// as a tar stream: directories, files and symbolic links, named relative
// to dir. A transfer cut short fails the stream's read (never a shorter
// archive that looks whole). The caller closes it.
func (c *Client) ReadTree(ctx context.Context, id, dir string) (io.ReadCloser, error) {
	p, err := filesPath(id, "archive", dir, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(ctx, http.MethodGet, p, nil, "", -1)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// unixMode returns mode's permission bits as a Unix mode (0o7777 at most).
func unixMode(mode os.FileMode) uint32 {
	m := uint32(mode.Perm())
	if mode&os.ModeSetuid != 0 {
		m |= 0o4000
	}
	if mode&os.ModeSetgid != 0 {
		m |= 0o2000
	}
	if mode&os.ModeSticky != 0 {
		m |= 0o1000
	}
	return m
}

// StatFile describes the file at path (absolute) in sandbox id, without
// following a final symbolic link.
func (c *Client) StatFile(ctx context.Context, id, path string) (FileInfo, error) {
	var info FileInfo
	p, err := filesPath(id, "stat", path, nil)
	if err != nil {
		return info, err
	}
	err = c.do(ctx, http.MethodGet, p, nil, "", -1, &info)
	return info, err
}

// ListDir lists the directory at path (absolute) in sandbox id.
func (c *Client) ListDir(ctx context.Context, id, path string) ([]FileInfo, error) {
	var list []FileInfo
	p, err := filesPath(id, "list", path, nil)
	if err != nil {
		return nil, err
	}
	err = c.do(ctx, http.MethodGet, p, nil, "", -1, &list)
	return list, err
}

// Mkdir makes the directory at path (absolute) in sandbox id, with its
// parents, and returns it.
func (c *Client) Mkdir(ctx context.Context, id, path string) (FileInfo, error) {
	var info FileInfo
	p, err := filesPath(id, "mkdir", path, nil)
	if err != nil {
		return info, err
	}
	err = c.do(ctx, http.MethodPost, p, nil, "", -1, &info)
	return info, err
}

// RemoveFile removes the file or directory tree at path (absolute) in
// sandbox id.
func (c *Client) RemoveFile(ctx context.Context, id, path string) error {
	p, err := filesPath(id, "", path, nil)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, p, nil, "", -1, nil)
}

// WatchDir calls fn for each change under the directory at path (absolute)
// in sandbox id: first an event with Op FileEventReady once the watch is in
// place, then one per file created, written or removed. It returns nil when
// ctx is done, fn's error when fn fails, and an error when the stream ends
// otherwise (the sandbox was paused or killed, or the server stopped).
func (c *Client) WatchDir(ctx context.Context, id, path string, fn func(FileEvent) error) error {
	p, err := filesPath(id, "watch", path, nil)
	if err != nil {
		return err
	}
	resp, err := c.send(ctx, http.MethodGet, p, nil, "", -1)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev FileEvent
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if err == io.EOF {
				return fmt.Errorf("watch %s in sandbox %s: the server ended the stream (was the sandbox paused or killed?)", path, id)
			}
			return fmt.Errorf("watch %s in sandbox %s: %w", path, id, err)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
}

// sandboxPath returns the route of sandbox id, with "/"+sub if sub is set.
func sandboxPath(id, sub string) (string, error) {
	if id == "" {
		return "", errors.New("sandbox ID is empty: give the ID that creating the sandbox returned")
	}
	p := "/v1/sandboxes/" + url.PathEscape(id)
	if sub != "" {
		p += "/" + sub
	}
	return p, nil
}

// filesPath returns the route of a files call (sub "" is .../files) on path,
// with q's parameters added.
func filesPath(id, sub, path string, q url.Values) (string, error) {
	switch {
	case path == "":
		return "", errors.New("sandbox path is empty: give an absolute path, such as /root/notes.txt")
	case !strings.HasPrefix(path, "/"):
		return "", fmt.Errorf("sandbox path %q is not absolute: paths in a sandbox start with /, such as /root/%s", path, strings.TrimPrefix(path, "./"))
	}
	p, err := sandboxPath(id, "files")
	if err != nil {
		return "", err
	}
	if sub != "" {
		p += "/" + sub
	}
	v := url.Values{"path": {path}}
	for k, vs := range q {
		v[k] = vs
	}
	return p + "?" + v.Encode(), nil
}
