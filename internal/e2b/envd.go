package e2b

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/sandbox"
)

// E2B's data plane ("envd", port 49983 of every sandbox), served by Frost
// on the host over the same sandbox service: the SDK reaches it at
// E2B_SANDBOX_URL with E2b-Sandbox-Id and E2b-Sandbox-Port headers, or at
// 49983-ID.DOMAIN. It speaks the Connect protocol with JSON (unary calls;
// server streams framed as envelopes: a flag byte, a 4-byte big-endian
// length, a JSON message; the last envelope has flag 0x02 and carries the
// end of stream) plus plain HTTP for /files and /health.
//
// Implemented: process.Process Start (start, output, keepalives, end),
// and, for commands whose Start stream is open (what the SDK's background
// commands are), SendSignal, SendInput, CloseStdin and List;
// filesystem.Filesystem Stat, ListDir, MakeDir, Remove, Move, WatchDir;
// GET/POST /files. Not yet: process Connect (re-attaching to a command
// from a new client).

// EnvdPort is the port the SDK addresses envd at.
const EnvdPort = 49983

// Envd serves E2B's data plane for every sandbox of m.
type Envd struct {
	m *sandbox.Manager

	mu    sync.Mutex
	next  uint32
	procs map[string]map[uint32]*proc // sandbox → pid → command
}

// proc is a command started through Start whose stream is still open:
// the SDK's handle to it (kill, input, list) names it by pid or tag.
type proc struct {
	pid    uint32
	tag    string
	cfg    json.RawMessage // its ProcessConfig, for List
	kill   context.CancelFunc
	killed bool
	stdin  *io.PipeWriter // nil without stdin
}

// NewEnvd returns the data-plane handler.
func NewEnvd(m *sandbox.Manager) *Envd {
	return &Envd{m: m, next: 1000, procs: map[string]map[uint32]*proc{}}
}

func (e *Envd) register(id string, p *proc) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.next++
	p.pid = e.next
	if e.procs[id] == nil {
		e.procs[id] = map[uint32]*proc{}
	}
	e.procs[id][p.pid] = p
}

func (e *Envd) unregister(id string, pid uint32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.procs[id], pid)
	if len(e.procs[id]) == 0 {
		delete(e.procs, id)
	}
}

// find returns the command a ProcessSelector names.
func (e *Envd) find(id string, sel struct {
	Pid *uint32 `json:"pid"`
	Tag *string `json:"tag"`
}) *proc {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range e.procs[id] {
		if sel.Pid != nil && p.pid == *sel.Pid || sel.Tag != nil && p.tag == *sel.Tag {
			return p
		}
	}
	return nil
}

// Wrap returns a handler that sends E2B data-plane requests (those with an
// E2b-Sandbox-Id header, or for host 49983-ID.DOMAIN) to e and the rest to
// next.
func (e *Envd) Wrap(domain string, next http.Handler) http.Handler {
	suffix := "." + strings.TrimSuffix(strings.ToLower(domain), ".")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("E2b-Sandbox-Id")
		if id == "" {
			host := strings.ToLower(r.Host)
			if i := strings.LastIndexByte(host, ':'); i > 0 {
				host = host[:i]
			}
			if label, ok := strings.CutSuffix(host, suffix); ok {
				if p, sid, ok := strings.Cut(label, "-"); ok && p == strconv.Itoa(EnvdPort) {
					id = sid
				}
			}
		} else if port := r.Header.Get("E2b-Sandbox-Port"); port != "" && port != strconv.Itoa(EnvdPort) {
			id = ""
		}
		if id == "" || !sandbox.ValidID(id) {
			next.ServeHTTP(w, r)
			return
		}
		e.serve(w, r, id)
	})
}

func (e *Envd) serve(w http.ResponseWriter, r *http.Request, id string) {
	if r.URL.Path == "/health" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if tok := r.Header.Get("X-Access-Token"); tok == "" || e.m.CheckToken(id, tok) != nil {
		connectError(w, http.StatusUnauthorized, "unauthenticated", "missing or wrong X-Access-Token (the sandbox's envdAccessToken)")
		return
	}
	switch r.URL.Path {
	case "/files":
		switch r.Method {
		case http.MethodGet:
			e.download(w, r, id)
		case http.MethodPost:
			e.upload(w, r, id)
		default:
			connectError(w, http.StatusMethodNotAllowed, "unimplemented", "GET or POST /files")
		}
	case "/process.Process/Start":
		e.start(w, r, id)
	case "/process.Process/SendSignal", "/process.Process/SendInput", "/process.Process/CloseStdin", "/process.Process/List":
		e.control(w, r, id, path.Base(r.URL.Path))
	case "/filesystem.Filesystem/Stat", "/filesystem.Filesystem/ListDir", "/filesystem.Filesystem/MakeDir", "/filesystem.Filesystem/Remove", "/filesystem.Filesystem/Move":
		e.fs(w, r, id, path.Base(r.URL.Path))
	case "/filesystem.Filesystem/WatchDir":
		e.watch(w, r, id)
	default:
		connectError(w, http.StatusNotImplemented, "unimplemented", r.URL.Path+" is not implemented by Frost yet (docs/E2B.md)")
	}
}

// connectError writes a Connect unary error.
func connectError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"code": code, "message": msg})
}

// errorOf maps the sandbox package's errors to Connect codes.
func errorOf(err error) (int, string) {
	switch {
	case errors.Is(err, sandbox.ErrNoFile):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, sandbox.ErrNotFound), errors.Is(err, sandbox.ErrGone):
		return http.StatusBadGateway, "unavailable"
	case errors.Is(err, sandbox.ErrInvalid):
		return http.StatusBadRequest, "invalid_argument"
	}
	return http.StatusInternalServerError, "internal"
}

// startRequest is process.StartRequest. Process is kept as sent, for
// List; processConfig is what it says.
type startRequest struct {
	Process json.RawMessage `json:"process"`
	Stdin   *bool           `json:"stdin"`
	Tag     *string         `json:"tag"`
}

// processConfig is process.ProcessConfig.
type processConfig struct {
	Cmd  string            `json:"cmd"`
	Args []string          `json:"args"`
	Envs map[string]string `json:"envs"`
	Cwd  *string           `json:"cwd"`
}

// start runs process.Process/Start: a server stream of process events.
func (e *Envd) start(w http.ResponseWriter, r *http.Request, id string) {
	msg, err := readRequest(r.Body)
	if err != nil {
		connectError(w, http.StatusBadRequest, "invalid_argument", err.Error())
		return
	}
	var req startRequest
	var cfg processConfig
	if json.Unmarshal(msg, &req) != nil || json.Unmarshal(req.Process, &cfg) != nil || cfg.Cmd == "" {
		connectError(w, http.StatusBadRequest, "invalid_argument", "StartRequest needs process.cmd")
		return
	}
	ex := api.ExecRequest{Cmd: append([]string{cfg.Cmd}, cfg.Args...), Env: cfg.Envs}
	if cfg.Cwd != nil {
		ex.Cwd = *cfg.Cwd
	}
	if ms, err := strconv.ParseInt(r.Header.Get("Connect-Timeout-Ms"), 10, 64); err == nil && ms > 0 {
		ex.Timeout = api.Duration(time.Duration(ms) * time.Millisecond)
	}
	keepalive := 50 * time.Second
	if s, err := strconv.Atoi(r.Header.Get("Keepalive-Ping-Interval")); err == nil && s > 0 {
		keepalive = time.Duration(s) * time.Second
	}
	w.Header().Set("Content-Type", "application/connect+json")
	w.WriteHeader(http.StatusOK)
	st := &stream{w: w}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	// The pid is Frost's handle for the command while its stream is open
	// (kill, input, list go through it), sent first as the SDK needs.
	p := &proc{cfg: req.Process, kill: cancel}
	if req.Tag != nil {
		p.tag = *req.Tag
	}
	var stdin io.Reader
	if req.Stdin != nil && *req.Stdin {
		pr, pw := io.Pipe()
		stdin, p.stdin = pr, pw
	}
	e.register(id, p)
	defer e.unregister(id, p.pid)
	st.send(map[string]any{"event": map[string]any{"start": map[string]any{"pid": p.pid}}})
	go st.keepalive(ctx, keepalive, map[string]any{"event": map[string]any{"keepalive": map[string]any{}}})
	out := func(name string) io.Writer {
		return writerFunc(func(p []byte) (int, error) {
			st.send(map[string]any{"event": map[string]any{"data": map[string]any{name: p}}})
			return len(p), nil
		})
	}
	code, timedOut, err := e.m.Exec(ctx, id, ex, stdin, out("stdout"), out("stderr"))
	cancel()
	e.mu.Lock()
	killed := p.killed
	e.mu.Unlock()
	if killed {
		st.send(map[string]any{"event": map[string]any{"end": map[string]any{"exitCode": -1, "exited": false, "status": "signal: killed"}}})
		st.end("", "")
		return
	}
	if err != nil {
		_, c := errorOf(err)
		st.end(c, err.Error())
		return
	}
	end := map[string]any{"exitCode": code, "exited": !timedOut, "status": fmt.Sprintf("exit status %d", code)}
	if timedOut {
		end["error"] = "the command was killed by its timeout"
		end["status"] = "signal: killed"
	}
	st.send(map[string]any{"event": map[string]any{"end": end}})
	st.end("", "")
}

// control serves the unary process calls on commands started through Start.
func (e *Envd) control(w http.ResponseWriter, r *http.Request, id, method string) {
	var req struct {
		Process struct {
			Pid *uint32 `json:"pid"`
			Tag *string `json:"tag"`
		} `json:"process"`
		Input struct {
			Stdin []byte `json:"stdin"`
		} `json:"input"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 8<<20)).Decode(&req); err != nil && method != "List" {
		connectError(w, http.StatusBadRequest, "invalid_argument", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if method == "List" {
		e.mu.Lock()
		list := []map[string]any{}
		for _, p := range e.procs[id] {
			item := map[string]any{"pid": p.pid, "config": p.cfg}
			if p.tag != "" {
				item["tag"] = p.tag
			}
			list = append(list, item)
		}
		e.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"processes": list})
		return
	}
	p := e.find(id, req.Process)
	if p == nil {
		connectError(w, http.StatusNotFound, "not_found", "no such process")
		return
	}
	switch method {
	case "SendSignal":
		e.mu.Lock()
		p.killed = true
		e.mu.Unlock()
		p.kill()
	case "SendInput":
		if p.stdin == nil {
			connectError(w, http.StatusBadRequest, "failed_precondition", "the process was started without stdin")
			return
		}
		if _, err := p.stdin.Write(req.Input.Stdin); err != nil {
			connectError(w, http.StatusBadRequest, "failed_precondition", "stdin is closed")
			return
		}
	case "CloseStdin":
		if p.stdin != nil {
			p.stdin.Close()
		}
	}
	io.WriteString(w, "{}")
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// stream writes Connect envelopes, one message at a time, flushed.
type stream struct {
	mu sync.Mutex
	w  http.ResponseWriter
}

func (s *stream) envelope(flag byte, msg []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var h [5]byte
	h[0] = flag
	binary.BigEndian.PutUint32(h[1:], uint32(len(msg)))
	s.w.Write(h[:])
	s.w.Write(msg)
	http.NewResponseController(s.w).Flush()
}

func (s *stream) send(v any) {
	b, _ := json.Marshal(v)
	s.envelope(0, b)
}

// keepalive sends msg every interval until ctx ends, so that a quiet
// stream is not taken for a dead one.
func (s *stream) keepalive(ctx context.Context, every time.Duration, msg any) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.send(msg)
		}
	}
}

// readRequest reads the one request envelope of a server-stream call and
// returns its message.
func readRequest(r io.Reader) ([]byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, errors.New("no request envelope")
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > 1<<20 {
		return nil, errors.New("request too large")
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, errors.New("truncated request")
	}
	return msg, nil
}

// end closes the stream, with an error if code is set.
func (s *stream) end(code, msg string) {
	body := []byte("{}")
	if code != "" {
		body, _ = json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": msg}})
	}
	s.envelope(2, body)
}

// entryInfo is filesystem.EntryInfo in proto3 JSON.
type entryInfo struct {
	Name          string `json:"name"`
	Type          string `json:"type"`
	Path          string `json:"path"`
	Size          string `json:"size"`
	Mode          uint32 `json:"mode"`
	Permissions   string `json:"permissions"`
	Owner         string `json:"owner"`
	Group         string `json:"group"`
	ModifiedTime  string `json:"modifiedTime"`
	SymlinkTarget string `json:"symlinkTarget,omitempty"`
}

func entry(fi api.FileInfo) entryInfo {
	t := "FILE_TYPE_FILE"
	if fi.Type == "dir" {
		t = "FILE_TYPE_DIRECTORY"
	}
	mode, _ := strconv.ParseUint(fi.Mode, 8, 32)
	return entryInfo{Name: fi.Name, Type: t, Path: fi.Path, Size: strconv.FormatInt(fi.Size, 10), Mode: uint32(mode),
		Permissions: perms(uint32(mode), fi.Type == "dir"), Owner: "root", Group: "root",
		ModifiedTime: fi.ModTime.UTC().Format(time.RFC3339Nano), SymlinkTarget: fi.Target}
}

func perms(m uint32, dir bool) string {
	b := []byte("----------")
	if dir {
		b[0] = 'd'
	}
	for i, c := range "rwxrwxrwx" {
		if m&(1<<(8-i)) != 0 {
			b[i+1] = byte(c)
		}
	}
	return string(b)
}

// fs serves the unary filesystem methods.
func (e *Envd) fs(w http.ResponseWriter, r *http.Request, id, method string) {
	var req struct {
		Path        string `json:"path"`
		Depth       int    `json:"depth"`
		Source      string `json:"source"`
		Destination string `json:"destination"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || req.Path == "" && req.Source == "" {
		connectError(w, http.StatusBadRequest, "invalid_argument", "a request with a path")
		return
	}
	p := absPath(req.Path)
	ctx := r.Context()
	var resp any
	var err error
	switch method {
	case "Stat":
		var fi api.FileInfo
		if fi, err = e.m.Stat(ctx, id, p); err == nil {
			resp = map[string]any{"entry": entry(fi)}
		}
	case "ListDir":
		var list []api.FileInfo
		if list, err = e.m.ListDir(ctx, id, p); err == nil {
			entries := make([]entryInfo, 0, len(list))
			for _, fi := range list {
				entries = append(entries, entry(fi))
			}
			resp = map[string]any{"entries": entries}
		}
	case "MakeDir":
		if _, serr := e.m.Stat(ctx, id, p); serr == nil {
			connectError(w, http.StatusConflict, "already_exists", p+" already exists")
			return
		}
		var fi api.FileInfo
		if fi, err = e.m.Mkdir(ctx, id, p); err == nil {
			resp = map[string]any{"entry": entry(fi)}
		}
	case "Remove":
		if err = e.m.Remove(ctx, id, p); err == nil {
			resp = map[string]any{}
		}
	case "Move":
		var fi api.FileInfo
		if fi, err = e.m.Move(ctx, id, absPath(req.Source), absPath(req.Destination)); err == nil {
			resp = map[string]any{"entry": entry(fi)}
		}
	}
	if err != nil {
		status, code := errorOf(err)
		connectError(w, status, code, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

// watch runs filesystem.Filesystem/WatchDir: a server stream that starts
// with a start event, then one event per change under the directory (its
// name relative to the directory), with keepalives while quiet. Unlike
// process events, WatchDirResponse holds its oneof directly: {"start":{}}.
func (e *Envd) watch(w http.ResponseWriter, r *http.Request, id string) {
	msg, err := readRequest(r.Body)
	if err != nil {
		connectError(w, http.StatusBadRequest, "invalid_argument", err.Error())
		return
	}
	var req struct {
		Path      string `json:"path"`
		Recursive bool   `json:"recursive"`
	}
	if err := json.Unmarshal(msg, &req); err != nil || req.Path == "" {
		connectError(w, http.StatusBadRequest, "invalid_argument", "WatchDirRequest needs a path")
		return
	}
	dir := absPath(req.Path)
	if fi, err := e.m.Stat(r.Context(), id, dir); err != nil || fi.Type != "dir" {
		if err == nil {
			connectError(w, http.StatusBadRequest, "invalid_argument", dir+" is not a directory")
			return
		}
		status, code := errorOf(err)
		connectError(w, status, code, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/connect+json")
	w.WriteHeader(http.StatusOK)
	st := &stream{w: w}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go st.keepalive(ctx, 30*time.Second, map[string]any{"keepalive": map[string]any{}})
	types := map[string]string{"create": "EVENT_TYPE_CREATE", "write": "EVENT_TYPE_WRITE", "remove": "EVENT_TYPE_REMOVE"}
	err = e.m.Watch(ctx, id, dir, func(ev api.FileEvent) error {
		if ev.Op == api.FileEventReady {
			st.send(map[string]any{"start": map[string]any{}})
			return nil
		}
		name := strings.TrimPrefix(strings.TrimPrefix(ev.Path, dir), "/")
		if !req.Recursive && strings.Contains(name, "/") || strings.HasPrefix(path.Base(name), ".frost-upload-") {
			return nil
		}
		st.send(map[string]any{"filesystem": map[string]any{"name": name, "type": types[ev.Op]}})
		return nil
	})
	if err != nil && ctx.Err() == nil {
		_, code := errorOf(err)
		st.end(code, err.Error())
		return
	}
	st.end("", "")
}

// absPath makes a path absolute the way envd does: relative to the
// user's home (/root).
func absPath(p string) string {
	if strings.HasPrefix(p, "~/") {
		p = "/root/" + p[2:]
	}
	if !path.IsAbs(p) {
		p = "/root/" + p
	}
	return path.Clean(p)
}

func (e *Envd) download(w http.ResponseWriter, r *http.Request, id string) {
	p := absPath(r.URL.Query().Get("path"))
	fi, err := e.m.Stat(r.Context(), id, p)
	if err != nil {
		status, code := errorOf(err)
		connectError(w, status, code, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(fi.Size, 10))
	e.m.ReadFile(r.Context(), id, p, w)
}

// upload is POST /files: multipart parts named "file"; ?path= names the
// file, or each part's filename carries its path.
func (e *Envd) upload(w http.ResponseWriter, r *http.Request, id string) {
	mr, err := r.MultipartReader()
	if err != nil {
		connectError(w, http.StatusBadRequest, "invalid_argument", "POST /files takes multipart/form-data with parts named file")
		return
	}
	type written struct {
		Path string `json:"path"`
		Name string `json:"name"`
		Type string `json:"type"`
	}
	var out []written
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			connectError(w, http.StatusBadRequest, "invalid_argument", err.Error())
			return
		}
		if part.FormName() != "file" {
			continue
		}
		p := r.URL.Query().Get("path")
		if p == "" {
			p = part.FileName()
		}
		p = absPath(p)
		if _, err := e.m.WriteFile(r.Context(), id, p, 0o644, part); err != nil {
			status, code := errorOf(err)
			connectError(w, status, code, err.Error())
			return
		}
		out = append(out, written{Path: p, Name: path.Base(p), Type: "file"})
	}
	if len(out) == 0 {
		connectError(w, http.StatusBadRequest, "invalid_argument", "no part named file")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}
