package api

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	wire "github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/agent"
	"github.com/frostdev/frost/internal/e2b"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/runtime"
	"github.com/frostdev/frost/internal/sandbox"
)

// Agent sandbox routes (docs/API.md, "Sandboxes").

var errNoSandboxes = errors.New("agent sandboxes are not enabled on this server: start it with --runsc PATH (scripts/runsc.sh installs one) and --rootfs DIR (scripts/rootfs.sh builds one)")

func (h *Handler) sandboxRoutes() {
	h.route("POST /v1/sandboxes", h.sb(h.createSandbox))
	h.route("GET /v1/sandboxes", h.sb(h.listSandboxes))
	h.route("GET /v1/sandboxes/{id}", h.sb(h.getSandbox))
	h.route("DELETE /v1/sandboxes/{id}", h.sb(h.killSandbox))
	h.route("POST /v1/sandboxes/{id}/pause", h.sb(h.pauseSandbox))
	h.route("POST /v1/sandboxes/{id}/resume", h.sb(h.resumeSandbox))
	h.route("POST /v1/sandboxes/{id}/timeout", h.sb(h.sandboxTimeout))
	h.route("PUT /v1/sandboxes/{id}/network", h.sb(h.sandboxNetwork))
	h.streamRoute("POST /v1/sandboxes/{id}/exec", h.sb(h.execSandbox))
	h.route("GET /v1/sandboxes/{id}/processes", h.sb(h.listProcesses))
	h.route("GET /v1/sandboxes/{id}/metrics", h.sb(h.sandboxMetrics))
	h.route("POST /v1/sandboxes/{id}/fork", h.sb(h.forkSandbox))
	// A tenant's snapshot is its own template; it deletes only its own.
	h.route("POST /v1/sandboxes/{id}/snapshot", h.sb(h.snapshotSandbox))
	h.route("DELETE /v1/templates/{name...}", h.sb(h.deleteTemplate)) // NAME or TENANT/NAME
	h.streamRoute("GET /v1/sandboxes/{id}/processes/{pid}/output", h.sb(h.attachProcess))
	h.route("POST /v1/sandboxes/{id}/processes/{pid}/signal", h.sb(h.signalProcess))
	h.route("POST /v1/sandboxes/{id}/processes/{pid}/stdin", h.sb(h.processInput))
	h.route("POST /v1/sandboxes/{id}/processes/{pid}/resize", h.sb(h.resizeProcess))
	h.route("GET /v1/sandboxes/{id}/files", h.sb(h.readFile))
	h.route("PUT /v1/sandboxes/{id}/files", h.sb(h.writeFile))
	h.route("DELETE /v1/sandboxes/{id}/files", h.sb(h.removeFile))
	h.route("GET /v1/sandboxes/{id}/files/stat", h.sb(fileJSON(h.sandboxes.Stat)))
	h.route("GET /v1/sandboxes/{id}/files/list", h.sb(fileJSON(h.sandboxes.ListDir)))
	h.route("POST /v1/sandboxes/{id}/files/mkdir", h.sb(fileJSON(h.sandboxes.Mkdir)))
	h.route("GET /v1/sandboxes/{id}/files/watch", h.sb(h.watchFiles))
	h.route("GET /v1/sandboxes/{id}/files/archive", h.sb(h.readTree))
	h.route("PUT /v1/sandboxes/{id}/files/archive", h.sb(h.writeTree))
	h.route("GET /v1/templates", h.sb(h.listTemplates))
	h.adminRoute("POST /v1/templates", h.sb(h.buildTemplate))
	if h.sandboxes != nil {
		// E2B's control plane, for the E2B SDK (E2B_API_URL = this
		// listener); it authenticates with E2B's API key header itself.
		e := e2b.New(e2b.Config{AdminToken: h.cfg.AdminToken, Tenant: h.e2bTenant, Domain: h.cfg.E2BDomain, BodyTimeout: h.cfg.BodyTimeout}, h.sandboxes)
		for _, p := range []string{"/sandboxes", "/sandboxes/", "/v2/sandboxes", "/v2/sandboxes/", "/snapshots", "/templates/"} {
			h.mux.Handle(p, e)
		}
	}
}

func (h *Handler) listTemplates(w http.ResponseWriter, r *http.Request) error {
	list, err := h.sandboxes.Templates(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// buildTemplate builds a template: boot, run the setup commands, checkpoint.
// A failed setup command's error carries the end of the build's output.
func (h *Handler) buildTemplate(w http.ResponseWriter, r *http.Request) error {
	var req wire.TemplateBuildRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	var log bytes.Buffer
	t, err := h.sandboxes.BuildTemplate(r.Context(), req.Name, req.FromRootFS, req.Run, runtime.Head(&log, 1<<20))
	if err != nil {
		if tail := lastBytes(log.String(), 2000); tail != "" {
			return fmt.Errorf("%w; output:\n%s", err, tail)
		}
		return err
	}
	writeJSON(w, http.StatusCreated, t)
	return nil
}

func lastBytes(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// sb refuses sandbox routes on a server without a sandbox runtime.
func (h *Handler) sb(fn handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if h.sandboxes == nil {
			return errNoSandboxes
		}
		return fn(w, r)
	}
}

func (h *Handler) createSandbox(w http.ResponseWriter, r *http.Request) error {
	var req wire.SandboxCreateRequest
	if r.ContentLength != 0 {
		if err := decode(r, &req); err != nil {
			return err
		}
	}
	s, err := h.sandboxes.Create(r.Context(), req)
	if err != nil {
		return err
	}
	publicSandbox(r, &s)
	writeJSON(w, http.StatusCreated, s)
	return nil
}

// publicSandbox gives s the port URL its ports answer at for r's caller.
func publicSandbox(r *http.Request, s *wire.Sandbox) {
	if s.PortURL != "" {
		s.PortURL = publicURL(r, "{port}-"+s.ID, s.PortURL)
	}
}

func (h *Handler) listSandboxes(w http.ResponseWriter, r *http.Request) error {
	list, err := h.sandboxes.List(r.Context())
	if err != nil {
		return err
	}
	if tenant, ok := registry.TenantOf(r.Context()); ok {
		list = slices.DeleteFunc(list, func(s wire.Sandbox) bool { return s.Tenant != tenant })
	}
	for i := range list {
		publicSandbox(r, &list[i])
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (h *Handler) getSandbox(w http.ResponseWriter, r *http.Request) error {
	s, err := h.sandboxes.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	publicSandbox(r, &s)
	writeJSON(w, http.StatusOK, s)
	return nil
}

func (h *Handler) killSandbox(w http.ResponseWriter, r *http.Request) error {
	if err := h.sandboxes.Kill(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) pauseSandbox(w http.ResponseWriter, r *http.Request) error {
	s, err := h.sandboxes.Pause(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	publicSandbox(r, &s)
	writeJSON(w, http.StatusOK, s)
	return nil
}

func (h *Handler) resumeSandbox(w http.ResponseWriter, r *http.Request) error {
	s, err := h.sandboxes.Resume(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	publicSandbox(r, &s)
	writeJSON(w, http.StatusOK, s)
	return nil
}

func (h *Handler) sandboxTimeout(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Timeout wire.Duration `json:"timeout"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	s, err := h.sandboxes.SetTimeout(r.Context(), r.PathValue("id"), time.Duration(req.Timeout))
	if err != nil {
		return err
	}
	publicSandbox(r, &s)
	writeJSON(w, http.StatusOK, s)
	return nil
}

// sandboxNetwork replaces a sandbox's network limits.
func (h *Handler) sandboxNetwork(w http.ResponseWriter, r *http.Request) error {
	var req wire.SandboxNetwork
	if r.ContentLength != 0 {
		if err := decode(r, &req); err != nil {
			return err
		}
	}
	s, err := h.sandboxes.SetNetwork(r.Context(), r.PathValue("id"), &req)
	if err != nil {
		return err
	}
	publicSandbox(r, &s)
	writeJSON(w, http.StatusOK, s)
	return nil
}

// forkSandbox starts new sandboxes where one is now: 201 with them.
func (h *Handler) forkSandbox(w http.ResponseWriter, r *http.Request) error {
	req := wire.ForkRequest{Count: 1}
	if r.ContentLength != 0 {
		if err := decode(r, &req); err != nil {
			return err
		}
	}
	forks, err := h.sandboxes.Fork(r.Context(), r.PathValue("id"), req.Count, time.Duration(req.Timeout))
	if err != nil {
		return err
	}
	for i := range forks {
		publicSandbox(r, &forks[i])
	}
	writeJSON(w, http.StatusCreated, forks)
	return nil
}

// snapshotSandbox makes a template of a sandbox as it is now: 201 with it.
func (h *Handler) snapshotSandbox(w http.ResponseWriter, r *http.Request) error {
	var req wire.SnapshotRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	t, err := h.sandboxes.Snapshot(r.Context(), r.PathValue("id"), req.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, t)
	return nil
}

func (h *Handler) deleteTemplate(w http.ResponseWriter, r *http.Request) error {
	if err := h.sandboxes.DeleteTemplate(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// execSandbox runs a command. The body's first line is an ExecRequest; with
// Stdin set, the rest of the body is the command's input. The answer
// streams ExecEvent lines as output comes, then one final event.
func (h *Handler) execSandbox(w http.ResponseWriter, r *http.Request) error {
	br := bufio.NewReaderSize(r.Body, 64<<10)
	line, err := br.ReadSlice('\n')
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		return fmt.Errorf("%w: the body must start with an ExecRequest JSON line: %v", errBadRequest, err)
	}
	var req wire.ExecRequest
	if err := json.Unmarshal(line, &req); err != nil {
		return fmt.Errorf("%w: ExecRequest: %v", errBadRequest, err)
	}
	if req.Background {
		return h.execBackground(w, r, req)
	}
	var stdin io.Reader
	if req.Stdin {
		// Read the request body while the answer streams.
		rc := http.NewResponseController(w)
		rc.EnableFullDuplex()
		in := &execInput{r: br}
		defer in.finish(rc, 2*time.Second)
		stdin = in
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	ew := &eventWriter{w: w, enc: json.NewEncoder(w)}
	stdio := ew.stdio()
	stdio.In = stdin
	exit, timedOut, err := h.sandboxes.Exec(r.Context(), r.PathValue("id"), req, stdio)
	if err != nil && !ew.wrote() {
		return err // nothing sent yet: an ordinary error answer
	}
	ew.end(exit, timedOut, err)
	return nil
}

// execInput is an exec's streamed input, the request body, which the
// runtime reads from a goroutine of its own that may outlive the call
// (the command ended, the client still sending). In full-duplex mode
// net/http does not keep such a read from racing the connection's next
// request once the handler returns (a 400 for that request, or "invalid
// concurrent Body.Read"), so the handler takes the body back (finish).
type execInput struct {
	mu       sync.Mutex // held by a read in flight
	r        io.Reader
	finished bool
}

func (in *execInput) Read(p []byte) (int, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.finished {
		return 0, io.EOF
	}
	return in.r.Read(p)
}

// finish lets no more reads through, once any in flight has returned,
// and reads what is left of the body, so that the connection can serve
// its next request. A client still sending after wait loses the
// connection (the handler aborts).
func (in *execInput) finish(rc *http.ResponseController, wait time.Duration) {
	rc.SetReadDeadline(time.Now().Add(wait)) // a read in flight returns by then
	in.mu.Lock()
	in.finished = true
	_, err := io.Copy(io.Discard, in.r)
	in.mu.Unlock()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	rc.SetReadDeadline(time.Time{})
}

// execBackground starts a command and answers with its pid alone (one
// ExecEvent line); the call is then detached, and the command runs on in
// the sandbox's process table.
func (h *Handler) execBackground(w http.ResponseWriter, r *http.Request, req wire.ExecRequest) error {
	if req.Timeout != 0 {
		return fmt.Errorf("%w: a background command has no timeout: signal it through /processes/{pid}/signal", errBadRequest)
	}
	ctx, detach := context.WithCancelCause(context.WithoutCancel(r.Context()))
	defer detach(nil)
	var stdin io.Reader
	var stdinW *io.PipeWriter
	if req.Stdin {
		// Never written nor closed while the call lasts: the input stays
		// open after the detach.
		stdin, stdinW = io.Pipe()
	}
	started := make(chan int, 1)
	done := make(chan error, 1)
	// What a command that never started says why (not found, cwd
	// missing: init's message); read only once the call is done.
	var why bytes.Buffer
	var exit int
	go func() {
		var err error
		exit, _, err = h.sandboxes.Exec(ctx, r.PathValue("id"), req, sandbox.Stdio{In: stdin, Err: runtime.Head(&why, 4<<10), Started: func(pid int) { started <- pid }})
		if stdinW != nil {
			stdinW.Close()
		}
		done <- err
	}()
	var pid int
	select {
	case pid = <-started:
		detach(runtime.ErrDetach)
		<-done
	case err := <-done:
		select {
		case pid = <-started: // it ran, and is done already
		default:
			if err == nil {
				msg := strings.TrimPrefix(strings.TrimSpace(why.String()), "frost: ")
				if msg == "" {
					msg = "no reason given"
				}
				err = fmt.Errorf("%w: the command did not start (exit %d): %s", errBadRequest, exit, msg)
			}
			return err
		}
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	return json.NewEncoder(w).Encode(wire.ExecEvent{Pid: pid})
}

func (h *Handler) listProcesses(w http.ResponseWriter, r *http.Request) error {
	list, err := h.sandboxes.Processes(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// sandboxMetrics answers what a sandbox used: ?from= and ?to= (RFC 3339
// or Unix seconds) bound the samples.
func (h *Handler) sandboxMetrics(w http.ResponseWriter, r *http.Request) error {
	var bounds [2]time.Time
	for i, name := range []string{"from", "to"} {
		v := r.URL.Query().Get(name)
		if v == "" {
			continue
		}
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
			bounds[i] = time.Unix(secs, 0)
		} else if bounds[i], err = time.Parse(time.RFC3339Nano, v); err != nil {
			return fmt.Errorf("%w: %s=%q: want RFC 3339 (2006-01-02T15:04:05Z) or Unix seconds", errBadRequest, name, v)
		}
	}
	list, err := h.sandboxes.Metrics(r.Context(), r.PathValue("id"), bounds[0], bounds[1])
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func pidOf(r *http.Request) (int, error) {
	pid, err := strconv.Atoi(r.PathValue("pid"))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%w: pid %q is not a positive number", errBadRequest, r.PathValue("pid"))
	}
	return pid, nil
}

// attachProcess follows a running command: ExecEvent lines as for an
// exec, from its pid and its output from now on to its exit. The client
// leaving does not stop it.
func (h *Handler) attachProcess(w http.ResponseWriter, r *http.Request) error {
	pid, err := pidOf(r)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	ew := &eventWriter{w: w, enc: json.NewEncoder(w)}
	exit, err := h.sandboxes.Attach(r.Context(), r.PathValue("id"), pid, ew.stdio())
	if err != nil && !ew.wrote() {
		return err // not running: a plain 404
	}
	ew.end(exit, false, err)
	return nil
}

func (h *Handler) signalProcess(w http.ResponseWriter, r *http.Request) error {
	pid, err := pidOf(r)
	if err != nil {
		return err
	}
	var req wire.SignalRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Signal == "" {
		req.Signal = "TERM"
	}
	sig, err := agent.ParseSignal(req.Signal)
	if err != nil {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if err := h.sandboxes.Signal(r.Context(), r.PathValue("id"), pid, sig); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// processInput writes the body to a running command's standard input;
// ?close=true closes it after.
func (h *Handler) processInput(w http.ResponseWriter, r *http.Request) error {
	pid, err := pidOf(r)
	if err != nil {
		return err
	}
	closeIn, err := strconv.ParseBool(cmp.Or(r.URL.Query().Get("close"), "false"))
	if err != nil {
		return fmt.Errorf("%w: close=%q: want true or false", errBadRequest, r.URL.Query().Get("close"))
	}
	if err := h.sandboxes.Input(r.Context(), r.PathValue("id"), pid, r.Body, closeIn); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// resizeProcess sets the size of a running command's terminal.
func (h *Handler) resizeProcess(w http.ResponseWriter, r *http.Request) error {
	pid, err := pidOf(r)
	if err != nil {
		return err
	}
	var size wire.TTY
	if err := decode(r, &size); err != nil {
		return err
	}
	if err := h.sandboxes.Resize(r.Context(), r.PathValue("id"), pid, size); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// eventWriter streams ExecEvents, one JSON line each, flushed at once.
type eventWriter struct {
	mu  sync.Mutex
	w   http.ResponseWriter
	enc *json.Encoder
	n   int
}

func (e *eventWriter) event(ev wire.ExecEvent) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == 0 {
		e.w.WriteHeader(http.StatusOK)
	}
	e.n++
	if err := e.enc.Encode(ev); err != nil {
		return err
	}
	http.NewResponseController(e.w).Flush()
	return nil
}

func (e *eventWriter) wrote() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n > 0
}

// stdio streams a command's pid and output as events.
func (e *eventWriter) stdio() sandbox.Stdio {
	return sandbox.Stdio{
		Out: e.stream("stdout"), Err: e.stream("stderr"),
		Started: func(pid int) { e.event(wire.ExecEvent{Pid: pid}) },
	}
}

// end sends the final event: the exit code, or the error.
func (e *eventWriter) end(exit int, timedOut bool, err error) {
	final := wire.ExecEvent{TimedOut: timedOut}
	if err != nil {
		body := errorBody(err)
		final.Error = &body
	} else {
		final.Exit = &exit
	}
	e.event(final)
}

// stream is an io.Writer of one output stream.
func (e *eventWriter) stream(name string) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		if err := e.event(wire.ExecEvent{Stream: name, Data: p}); err != nil {
			return 0, err
		}
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func pathOf(r *http.Request) (string, error) {
	p := r.URL.Query().Get("path")
	if p == "" {
		return "", fmt.Errorf("%w: give the file as ?path=/absolute/path", errBadRequest)
	}
	return p, nil
}

func (h *Handler) readFile(w http.ResponseWriter, r *http.Request) error {
	p, err := pathOf(r)
	if err != nil {
		return err
	}
	// Stat first, so that a missing file is a clean 404 and the length is
	// known before the body starts.
	info, err := h.sandboxes.Stat(r.Context(), r.PathValue("id"), p)
	if err != nil {
		return err
	}
	if info.Type == "dir" {
		return fmt.Errorf("%w: %s is a directory; list it with GET .../files/list?path=", errBadRequest, p)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if info.Type == "file" {
		w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
	}
	cw := &countWriter{w: w}
	if err := h.sandboxes.ReadFile(r.Context(), r.PathValue("id"), p, cw); err != nil && cw.n == 0 {
		return err
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (h *Handler) writeFile(w http.ResponseWriter, r *http.Request) error {
	p, err := pathOf(r)
	if err != nil {
		return err
	}
	mode := uint64(0o644)
	if s := r.URL.Query().Get("mode"); s != "" {
		if mode, err = strconv.ParseUint(s, 8, 32); err != nil || mode > 0o7777 {
			return fmt.Errorf("%w: mode %q is not octal permission bits", errBadRequest, s)
		}
	}
	info, err := h.sandboxes.WriteFile(r.Context(), r.PathValue("id"), p, uint32(mode), r.Body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

// readTree streams a directory's tree as a tar stream. A failure once
// the stream has begun aborts the response, so that the client sees a
// broken transfer, never a shorter archive that looks whole.
func (h *Handler) readTree(w http.ResponseWriter, r *http.Request) error {
	p, err := pathOf(r)
	if err != nil {
		return err
	}
	// No stat first (a runsc exec): a path that is missing or not a
	// directory fails the pack before its first byte.
	w.Header().Set("Content-Type", "application/x-tar")
	cw := &countWriter{w: w}
	if err := h.sandboxes.ReadTree(r.Context(), r.PathValue("id"), p, cw); err != nil {
		if cw.n == 0 {
			return err
		}
		h.log.Warn("sandbox archive cut short", "sandbox", r.PathValue("id"), "path", p, "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// writeTree unpacks a tar stream into a directory, whole or not at all.
func (h *Handler) writeTree(w http.ResponseWriter, r *http.Request) error {
	p, err := pathOf(r)
	if err != nil {
		return err
	}
	st, err := h.sandboxes.WriteTree(r.Context(), r.PathValue("id"), p, r.Body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (h *Handler) removeFile(w http.ResponseWriter, r *http.Request) error {
	p, err := pathOf(r)
	if err != nil {
		return err
	}
	if err := h.sandboxes.Remove(r.Context(), r.PathValue("id"), p); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// fileJSON answers a file call on ?path= with fn's result as JSON
// (stat, list, mkdir).
func fileJSON[T any](fn func(ctx context.Context, id, path string) (T, error)) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		p, err := pathOf(r)
		if err != nil {
			return err
		}
		v, err := fn(r.Context(), r.PathValue("id"), p)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, v)
		return nil
	}
}

// watchFiles streams FileEvent lines for changes under a directory until
// the client goes away. The first line is {"op":"ready"}.
func (h *Handler) watchFiles(w http.ResponseWriter, r *http.Request) error {
	p, err := pathOf(r)
	if err != nil {
		return err
	}
	info, err := h.sandboxes.Stat(r.Context(), r.PathValue("id"), p)
	if err != nil {
		return err
	}
	if info.Type != "dir" {
		return fmt.Errorf("%w: %s is not a directory", errBadRequest, p)
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	rc := http.NewResponseController(w)
	err = h.sandboxes.Watch(r.Context(), r.PathValue("id"), p, func(ev wire.FileEvent) error {
		if err := enc.Encode(ev); err != nil {
			return err
		}
		return rc.Flush()
	})
	if err != nil {
		h.log.Debug("watch ended", "sandbox", r.PathValue("id"), "err", err)
	}
	return nil
}

// sandboxErrorStatus maps the sandbox package's errors.
func sandboxErrorStatus(err error) (int, string, bool) {
	switch {
	case errors.Is(err, errNoSandboxes):
		return http.StatusNotImplemented, "not_enabled", true
	case errors.Is(err, sandbox.ErrNotFound), errors.Is(err, sandbox.ErrNoFile), errors.Is(err, sandbox.ErrGone), errors.Is(err, sandbox.ErrNoProcess):
		return http.StatusNotFound, wire.CodeNotFound, true
	case errors.Is(err, sandbox.ErrInputClosed), errors.Is(err, sandbox.ErrNoTerminal):
		return http.StatusConflict, wire.CodeConflict, true
	case errors.Is(err, sandbox.ErrInvalid):
		return http.StatusBadRequest, wire.CodeInvalidRequest, true
	case errors.Is(err, sandbox.ErrForbidden):
		return http.StatusForbidden, wire.CodeForbidden, true
	case errors.Is(err, sandbox.ErrPortClosed):
		return http.StatusBadGateway, "port_closed", true
	case errors.Is(err, sandbox.ErrNoSpace):
		return http.StatusInsufficientStorage, wire.CodeNoSpace, true
	case errors.Is(err, sandbox.ErrDied):
		return http.StatusGone, wire.CodeDied, true
	case errors.Is(err, sandbox.ErrElsewhere):
		return http.StatusServiceUnavailable, "elsewhere", true
	}
	return 0, "", false
}
