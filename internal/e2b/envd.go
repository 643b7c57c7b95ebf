package e2b

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/e2b/envdpb/filesystempb/filesystempbconnect"
	"github.com/frostdev/frost/internal/e2b/envdpb/processpb/processpbconnect"
	"github.com/frostdev/frost/internal/front"
	"github.com/frostdev/frost/internal/sandbox"
)

// E2B's data plane ("envd", port 49983 of every sandbox), served by Frost
// on the host over the same sandbox service: the SDK reaches it at
// E2B_SANDBOX_URL with E2b-Sandbox-Id and E2b-Sandbox-Port headers, or at
// 49983-ID.DOMAIN. Its process.Process and filesystem.Filesystem services
// speak the Connect protocol (proto/envd, served with connect-go, JSON or
// binary); /files and /health are plain HTTP.
//
// Implemented: process Start (with a pty too), Connect, List, SendInput,
// Update, CloseStdin, SendSignal (process.go); filesystem Stat, ListDir,
// MakeDir, Remove, Move, WatchDir (filesystem.go); GET/POST /files. Not
// implemented (CodeUnimplemented, and not advertised): StreamInput and the
// polling watcher calls. Request bodies are paced (front.PaceBody), but
// for a sandbox's own ports, which Wrap passes on as they are.

// EnvdPort is the port the SDK addresses envd at.
const EnvdPort = 49983

// Envd serves E2B's data plane for every sandbox of m.
type Envd struct {
	m           *sandbox.Manager
	procs       *procTable
	mux         *http.ServeMux
	bodyTimeout time.Duration
	gathering   *budget // of upload's gathered files, across calls
}

// NewEnvd returns the data-plane handler; bodyTimeout cuts a request body
// that stops coming (front.PaceBody; 0: its default).
func NewEnvd(m *sandbox.Manager, bodyTimeout time.Duration) *Envd {
	e := &Envd{m: m, procs: newProcTable(), mux: http.NewServeMux(), bodyTimeout: bodyTimeout, gathering: &budget{left: gatherBudget}}
	opts := []connect.HandlerOption{connect.WithReadMaxBytes(maxMessage), connect.WithInterceptors(malformedRequests{})}
	e.mux.Handle(processpbconnect.NewProcessHandler(&processService{e: e}, opts...))
	e.mux.Handle(filesystempbconnect.NewFilesystemHandler(&filesystemService{e: e}, opts...))
	e.mux.HandleFunc("GET /files", e.download)
	e.mux.HandleFunc("POST /files", e.upload)
	return e
}

// maxMessage caps one request message (SendInput's chunk is the largest).
const maxMessage = 8 << 20

// malformedRequests makes a streaming request that cannot be read (a
// truncated envelope, a compressed message without an encoding) an
// invalid_argument error: connect-go reports these as internal, which
// blames the server for the client's bytes.
type malformedRequests struct{}

var _ connect.Interceptor = malformedRequests{}

func (malformedRequests) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc { return next }

func (malformedRequests) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (malformedRequests) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		return next(ctx, requestConn{conn})
	}
}

// requestConn is a stream whose request's internal errors are the
// client's.
type requestConn struct{ connect.StreamingHandlerConn }

func (c requestConn) Receive(msg any) error {
	err := c.StreamingHandlerConn.Receive(msg)
	var ce *connect.Error
	if errors.As(err, &ce) && ce.Code() == connect.CodeInternal {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("malformed request: %s", ce.Message()))
	}
	return err
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

// sandboxKey carries the sandbox a data-plane request is for.
type sandboxKey struct{}

func sandboxID(ctx context.Context) string {
	id, _ := ctx.Value(sandboxKey{}).(string)
	return id
}

func (e *Envd) serve(w http.ResponseWriter, r *http.Request, id string) {
	if to := e.m.HolderOf(r.Context(), id); to != "" {
		// In a cluster, another node holds it: the gateway re-sends.
		w.Header().Set(api.ReplayHeader, to)
		httpError(w, http.StatusServiceUnavailable, "unavailable", fmt.Sprintf("sandbox %s is held by node %s", id, to))
		return
	}
	if r.URL.Path == "/health" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if tok := r.Header.Get("X-Access-Token"); tok == "" || e.m.CheckToken(id, tok) != nil {
		httpError(w, http.StatusUnauthorized, "unauthenticated", "missing or wrong X-Access-Token (the sandbox's envdAccessToken)")
		return
	}
	if r.URL.Path != processpbconnect.ProcessStreamInputProcedure { // input typed for as long as it runs
		r.Body = pacedBody{front.PaceBody(w, r, e.bodyTimeout)}
	}
	e.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sandboxKey{}, id)))
}

// pacedBody is a paced request body whose cut is a Connect error, so that
// connect-go answers deadline_exceeded with the reason instead of taking
// the request context's end for the client's ("canceled").
type pacedBody struct{ io.ReadCloser }

func (b pacedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, front.ErrBodyTimeout) {
		err = connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	return n, err
}

// httpError writes an error for the plain HTTP routes, in the shape of a
// Connect unary error ({"code", "message"}), which the SDK reads.
func httpError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"code": code, "message": msg})
}

// connectCode maps the sandbox package's errors to Connect codes.
func connectCode(err error) connect.Code {
	switch {
	case errors.Is(err, sandbox.ErrNoFile), errors.Is(err, sandbox.ErrNoProcess):
		return connect.CodeNotFound
	case errors.Is(err, sandbox.ErrInputClosed), errors.Is(err, sandbox.ErrNoTerminal):
		return connect.CodeFailedPrecondition
	case errors.Is(err, sandbox.ErrNotFound), errors.Is(err, sandbox.ErrGone), errors.Is(err, sandbox.ErrElsewhere), errors.Is(err, sandbox.ErrDied):
		return connect.CodeUnavailable
	case errors.Is(err, sandbox.ErrInvalid):
		return connect.CodeInvalidArgument
	case errors.Is(err, sandbox.ErrNoSpace):
		return connect.CodeResourceExhausted
	case errors.Is(err, context.DeadlineExceeded):
		return connect.CodeDeadlineExceeded
	case errors.Is(err, context.Canceled):
		return connect.CodeCanceled
	}
	return connect.CodeInternal
}

// connectError wraps a sandbox error for a Connect handler to return.
func connectError(err error) error {
	return connect.NewError(connectCode(err), err)
}

// httpStatus is connectCode for the plain HTTP routes.
func httpStatus(err error) (int, string) {
	if errors.Is(err, front.ErrBodyTimeout) {
		return http.StatusRequestTimeout, connect.CodeDeadlineExceeded.String()
	}
	code := connectCode(err)
	status := map[connect.Code]int{
		connect.CodeNotFound: http.StatusNotFound, connect.CodeUnavailable: http.StatusBadGateway,
		connect.CodeInvalidArgument: http.StatusBadRequest, connect.CodeDeadlineExceeded: http.StatusGatewayTimeout,
		connect.CodeCanceled: 499, connect.CodeFailedPrecondition: http.StatusConflict,
		connect.CodeResourceExhausted: http.StatusInsufficientStorage, // as E2B's envd
	}[code]
	if status == 0 {
		status = http.StatusInternalServerError
	}
	return status, code.String()
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

// download is GET /files?path=P: the file's bytes.
func (e *Envd) download(w http.ResponseWriter, r *http.Request) {
	id := sandboxID(r.Context())
	p := absPath(r.URL.Query().Get("path"))
	fi, err := e.m.Stat(r.Context(), id, p)
	if err != nil {
		status, code := httpStatus(err)
		httpError(w, status, code, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(fi.Size, 10))
	e.m.ReadFile(r.Context(), id, p, w)
}

// partPath is the path a part's filename carries, whole: Part.FileName
// keeps only its last element (for servers that would write under their
// own directory), and files.write([...]) names each file by its path.
func partPath(part *multipart.Part) string {
	_, params, err := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
	if err != nil {
		return part.FileName()
	}
	return params["filename"]
}

// uploadBatch bounds the bytes of files one POST /files gathers in
// memory to write as one tree; gatherBudget bounds those of every call
// at once, so that many uploads cannot fill the server's memory: past
// it, a file streams into the sandbox on its own, as a large one does.
const (
	uploadBatch  = 16 << 20
	gatherBudget = 64 << 20
)

// budget is a count of bytes that may still be held.
type budget struct {
	mu   sync.Mutex
	left int64
}

// take reserves n bytes, if there are that many left.
func (b *budget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n > b.left {
		return false
	}
	b.left -= n
	return true
}

// leftNow is what may still be held.
func (b *budget) leftNow() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.left
}

func (b *budget) give(n int64) {
	b.mu.Lock()
	b.left += n
	b.mu.Unlock()
}

// gather reads r into memory while the whole stays within room bytes
// and the budget grants them, which held counts: in chunks, so that what
// is held is what was read (a growing buffer would hold up to twice).
// whole says r ended there; if not, the chunks are its start and the
// rest is still in r.
func (b *budget) gather(r io.Reader, room int, held *int64) (data net.Buffers, whole bool, err error) {
	read := 0
	for {
		n := min(64<<10, room+1-read) // one past room: r is longer
		if n <= 0 || !b.take(int64(n)) {
			return data, false, nil
		}
		chunk := make([]byte, n)
		k, err := io.ReadFull(r, chunk)
		if k < n {
			chunk = bytes.Clone(chunk[:k]) // a small file holds its size, not a chunk
		}
		b.give(int64(n - k))
		*held += int64(k)
		read += k
		if k > 0 {
			data = append(data, chunk)
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return data, read <= room, nil
		case err != nil:
			return nil, false, err
		}
	}
}

// lenOf is the bytes of chunks.
func lenOf(chunks net.Buffers) int {
	n := 0
	for _, c := range chunks {
		n += len(c)
	}
	return n
}

// gathered is a file of an upload, held to be written with others.
type gathered struct {
	path string
	data net.Buffers // read once
}

// writeBatch writes files: one alone as a file, more as one tree under
// the directory they share (tree.Unpack, in the sandbox: whole or not at
// all). Later files of a path replace earlier ones, as one by one.
func (e *Envd) writeBatch(ctx context.Context, id string, files []gathered) error {
	switch len(files) {
	case 0:
		return nil
	case 1:
		_, err := e.m.WriteFile(ctx, id, files[0].path, 0o644, &files[0].data)
		return err
	}
	dir := path.Dir(files[0].path)
	for _, f := range files[1:] {
		for d := path.Dir(f.path); dir != "/" && d != dir && !strings.HasPrefix(d, dir+"/"); {
			dir = path.Dir(dir)
		}
	}
	// Streamed as it is read, not a second copy of the files: a tar
	// error reaches WriteTree as its body's (ErrInvalid, nothing
	// changed).
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		now := time.Now()
		for _, f := range files {
			name := strings.TrimPrefix(strings.TrimPrefix(f.path, dir), "/")
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(lenOf(f.data)), ModTime: now}); err != nil {
				pw.CloseWithError(fmt.Errorf("%s: %w", f.path, err))
				return
			}
			if _, err := f.data.WriteTo(tw); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(tw.Close())
	}()
	_, err := e.m.WriteTree(ctx, id, dir, pr)
	pr.CloseWithError(errors.New("the tree's write ended")) // the writer, if WriteTree stopped reading
	return err
}

// upload is POST /files: multipart parts named "file"; ?path= names the
// file, or each part's filename carries its path. The SDK's
// files.write([...]) sends many files in one request: they are gathered
// (up to uploadBatch bytes) and written as one tree, one runsc exec of
// the agent for all (a file alone, or a part too big to gather, is
// written on its own, streamed). A batch lands whole or not at all.
func (e *Envd) upload(w http.ResponseWriter, r *http.Request) {
	id := sandboxID(r.Context())
	mr, err := r.MultipartReader()
	if err != nil {
		httpError(w, http.StatusBadRequest, "invalid_argument", "POST /files takes multipart/form-data with parts named file")
		return
	}
	type written struct {
		Path string `json:"path"`
		Name string `json:"name"`
		Type string `json:"type"`
	}
	var (
		out   []written
		batch []gathered
		size  int   // batch's bytes
		held  int64 // of e.gathering: batch's and the part's being read
	)
	defer func() { e.gathering.give(held) }()
	fail := func(err error) {
		status, code := httpStatus(err)
		httpError(w, status, code, err.Error())
	}
	flush := func() error {
		err := e.writeBatch(r.Context(), id, batch)
		e.gathering.give(int64(size))
		held -= int64(size)
		batch, size = nil, 0
		return err
	}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			httpError(w, http.StatusBadRequest, "invalid_argument", err.Error())
			return
		}
		if part.FormName() != "file" {
			continue
		}
		p := r.URL.Query().Get("path")
		if p == "" {
			p = partPath(part)
		}
		p = absPath(p)
		data, whole, err := e.gathering.gather(part, uploadBatch-size, &held)
		if err != nil {
			// A body that stalled is 408 (httpStatus), one cut or
			// malformed the client's error.
			fail(fmt.Errorf("%w: the upload's body: %w; of its files, the first %d were written (the rest not)", sandbox.ErrInvalid, err, len(out)-len(batch)))
			return
		}
		if whole {
			batch, size = append(batch, gathered{p, data}), size+lenOf(data)
		} else {
			// Too big to gather, or the server holds enough of others':
			// what came before goes first, then this one streams on its
			// own.
			if err := flush(); err != nil {
				fail(err)
				return
			}
			n := lenOf(data)
			_, err := e.m.WriteFile(r.Context(), id, p, 0o644, io.MultiReader(&data, part))
			e.gathering.give(int64(n))
			held -= int64(n)
			if err != nil {
				fail(err)
				return
			}
		}
		out = append(out, written{Path: p, Name: path.Base(p), Type: "file"})
	}
	if err := flush(); err != nil {
		fail(err)
		return
	}
	if len(out) == 0 {
		httpError(w, http.StatusBadRequest, "invalid_argument", "no part named file")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}
