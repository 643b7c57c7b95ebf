package wasm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/tetratelabs/wazero/sys"

	"github.com/frostdev/frost/internal/runtime"
)

// WAGI: a WASI command runs once per request as a CGI script (RFC 3875).
// Every request gets a new instance and a new file system, so nothing one
// request does is visible to another; the boot is always cold.

// maxCGIHeader caps the header block a guest may print.
const maxCGIHeader = 64 << 10

func (p *program) handleCGI(ctx context.Context, req *runtime.Request) (*runtime.Response, runtime.Timing, error) {
	t := runtime.Timing{Boot: runtime.BootCold}
	start := time.Now()
	env := p.env.Load()
	vars := cgiEnv(req, p.spec.Release.App)
	// The app's own environment, then the CGI variables (which win).
	all := make(map[string]string, len(env.env)+len(vars))
	for k, v := range env.env {
		all[k] = v
	}
	for k, v := range vars {
		all[k] = v
	}
	merged := newEnvState(env.version, all)

	out := &cappedBuffer{limit: p.r.cfg.MaxResponseBytes + maxCGIHeader}
	defer func() { bigBuffers.put(out.buf) }() // the response holds a copy
	in, err := p.instantiateCGI(ctx, merged, bytes.NewReader(req.Body), out)
	if err != nil {
		return nil, t, err
	}
	out.in = in
	defer in.close()
	ran := time.Now()
	t.Start = ran.Sub(start)
	if ctx.Err() != nil {
		return nil, t, canceledBefore(ctx)
	}
	in.arm(p.spec.Release.Limits.Timeout)
	in.done = ctx.Done()
	_, err = in.mod.ExportedFunction("_start").Call(in.ctx)
	in.done = nil
	fired, canceled := in.disarmCause()
	t.Run = time.Since(ran)
	if canceled {
		return nil, t, stopped(ctx)
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 0 && !fired {
		err = nil
	}
	if out.overflow {
		return nil, t, fmt.Errorf("%w: %v (%d bytes)", runtime.ErrBadResponse, errResponseTooLarge, p.r.cfg.MaxResponseBytes)
	}
	if err != nil {
		if errors.As(err, &exit) {
			return nil, t, fmt.Errorf("%w: the CGI program exited with status %d", runtime.ErrTrap, exit.ExitCode())
		}
		return nil, t, classify(err, fired, in.atMemoryLimit())
	}
	resp := p.newResponse(req)
	if err := parseCGI(out.Bytes(), resp); err != nil {
		p.Release(resp)
		return nil, t, fmt.Errorf("%w: %v", runtime.ErrBadResponse, err)
	}
	return resp, t, nil
}

func (p *program) instantiateCGI(ctx context.Context, env *envState, stdin *bytes.Reader, stdout *cappedBuffer) (*instance, error) {
	return p.instantiateWith(ctx, env, func(cfg moduleConfig) moduleConfig {
		return cfg.WithStdin(stdin).WithStdout(stdout)
	})
}

// cgiEnv returns the RFC 3875 meta-variables for a request.
func cgiEnv(req *runtime.Request, app string) map[string]string {
	path, query, _ := strings.Cut(req.URI, "?")
	env := map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1",
		"SERVER_SOFTWARE":   "frost",
		"SERVER_PROTOCOL":   req.Proto,
		"SERVER_NAME":       req.Host,
		"SERVER_PORT":       req.ServerPort,
		"REQUEST_METHOD":    req.Method,
		"REQUEST_URI":       req.URI,
		"SCRIPT_NAME":       "",
		"PATH_INFO":         path,
		"QUERY_STRING":      query,
		"REMOTE_ADDR":       hostOnly(req.RemoteAddr),
		"REMOTE_HOST":       hostOnly(req.RemoteAddr),
		"CONTENT_LENGTH":    strconv.Itoa(len(req.Body)),
		"X_FROST_APP":       app,
	}
	if len(req.Body) == 0 && req.Header.Get("Content-Length") == "" {
		env["CONTENT_LENGTH"] = ""
	}
	if ct := req.Header.Get("Content-Type"); ct != "" {
		env["CONTENT_TYPE"] = ct
	}
	for k, v := range req.Header {
		if k == "Content-Type" || k == "Content-Length" || k == "Proxy" || k == "Authorization" {
			// Proxy: httpoxy; Authorization is never handed to scripts (RFC 3875 4.1.18).
			continue
		}
		name := "HTTP_" + strings.ToUpper(strings.ReplaceAll(k, "-", "_"))
		env[name] = strings.Join(v, ", ")
	}
	if req.Host != "" {
		env["HTTP_HOST"] = req.Host
	}
	return env
}

func hostOnly(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return strings.Trim(addr[:i], "[]")
	}
	return addr
}

// parseCGI parses a CGI response: header lines, a blank line, the body.
func parseCGI(out []byte, resp *runtime.Response) error {
	end, sep := bytes.Index(out, []byte("\r\n\r\n")), 4
	if e := bytes.Index(out, []byte("\n\n")); e >= 0 && (end < 0 || e < end) {
		end, sep = e, 2
	}
	if end < 0 {
		if len(out) == 0 {
			return errors.New("the CGI program printed nothing; it must print headers, a blank line and the body")
		}
		return errors.New("the CGI program's output has no blank line after its headers")
	}
	if end > maxCGIHeader {
		return fmt.Errorf("CGI header block is larger than %d bytes", maxCGIHeader)
	}
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(out[:end:end], "\n\n"...))))
	hdr, err := r.ReadMIMEHeader()
	if err != nil {
		return fmt.Errorf("malformed CGI header: %v", err)
	}
	resp.Status = http.StatusOK
	if st := hdr.Get("Status"); st != "" {
		code, _, _ := strings.Cut(strings.TrimSpace(st), " ")
		n, err := strconv.Atoi(code)
		if err != nil || n < 100 || n > 999 {
			return fmt.Errorf("malformed CGI Status header %q", st)
		}
		resp.Status = n
		delete(hdr, "Status")
	} else if hdr.Get("Location") != "" {
		resp.Status = http.StatusFound
	}
	for k, v := range hdr {
		resp.Header[k] = v
	}
	resp.Body = appendPreemptible(resp.Body[:0], out[end+sep:])
	return nil
}

// cappedBuffer is stdout with a limit; past it, writes fail.
type cappedBuffer struct {
	in       *instance // whose guest writes: counts as host work
	buf      []byte
	limit    int64
	overflow bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if int64(len(b.buf)+len(p)) > b.limit {
		b.overflow = true
		return 0, errResponseTooLarge
	}
	b.buf = appendPreemptible(b.buf, p)
	if b.in != nil {
		b.in.hostWork(copyWork(len(p)))
	}
	return len(p), nil
}

// Bytes is what was written.
func (b *cappedBuffer) Bytes() []byte { return b.buf }
