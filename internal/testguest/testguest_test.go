package testguest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/testtool"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// These tests drive every guest under plain wazero, with a minimal http-wasm
// host written here (just the functions the guests import), to prove the
// guests behave as documented before Frost's real host exists.

// exchange is one request and the response a guest builds for it.
type exchange struct {
	method, uri string
	header      http.Header
	body        io.Reader

	status     int
	respHeader http.Header
	respBody   bytes.Buffer
	logs       []string
}

type exchangeKey struct{}

func exchangeOf(ctx context.Context) *exchange { return ctx.Value(exchangeKey{}).(*exchange) }

// writeLimited implements the ABI's buf/buf_limit convention: write v only if
// it fits, and return its length either way.
func writeLimited(m api.Module, buf, limit uint32, v []byte) uint32 {
	if uint32(len(v)) <= limit && !m.Memory().Write(buf, v) {
		panic("out of range write")
	}
	return uint32(len(v))
}

func read(m api.Module, off, n uint32) []byte {
	b, ok := m.Memory().Read(off, n)
	if !ok {
		panic("out of range read")
	}
	return b
}

// instantiateHost adds the "http_handler" host module to rt.
func instantiateHost(ctx context.Context, t *testing.T, rt wazero.Runtime) {
	t.Helper()
	b := rt.NewHostModuleBuilder("http_handler")
	fn := func(name string, f any) { b.NewFunctionBuilder().WithFunc(f).Export(name) }
	fn("get_method", func(ctx context.Context, m api.Module, buf, limit uint32) uint32 {
		return writeLimited(m, buf, limit, []byte(exchangeOf(ctx).method))
	})
	fn("get_uri", func(ctx context.Context, m api.Module, buf, limit uint32) uint32 {
		return writeLimited(m, buf, limit, []byte(exchangeOf(ctx).uri))
	})
	fn("get_header_values", func(ctx context.Context, m api.Module, kind, name, nameLen, buf, limit uint32) uint64 {
		h := exchangeOf(ctx).header
		if kind == 1 {
			h = exchangeOf(ctx).respHeader
		}
		var seq []byte
		values := h.Values(string(read(m, name, nameLen)))
		for _, v := range values {
			seq = append(append(seq, v...), 0)
		}
		return uint64(len(values))<<32 | uint64(writeLimited(m, buf, limit, seq))
	})
	fn("set_header_value", func(ctx context.Context, m api.Module, kind, name, nameLen, value, valueLen uint32) {
		if kind != 1 {
			panic("set_header_value: only response headers are supported")
		}
		exchangeOf(ctx).respHeader.Set(string(read(m, name, nameLen)), string(read(m, value, valueLen)))
	})
	fn("read_body", func(ctx context.Context, m api.Module, kind, buf, limit uint32) uint64 {
		if kind != 0 || limit == 0 {
			panic("read_body: want the request body and a non-zero limit")
		}
		p := make([]byte, limit)
		n, err := io.ReadFull(exchangeOf(ctx).body, p)
		m.Memory().Write(buf, p[:n])
		var eof uint64
		if err != nil { // io.EOF or io.ErrUnexpectedEOF: the body is exhausted
			eof = 1
		}
		return eof<<32 | uint64(n)
	})
	fn("write_body", func(ctx context.Context, m api.Module, kind, buf, n uint32) {
		if kind != 1 {
			panic("write_body: only the response body is supported")
		}
		exchangeOf(ctx).respBody.Write(read(m, buf, n))
	})
	fn("set_status_code", func(ctx context.Context, code uint32) { exchangeOf(ctx).status = int(code) })
	fn("log", func(ctx context.Context, m api.Module, level int32, buf, n uint32) {
		x := exchangeOf(ctx)
		x.logs = append(x.logs, fmt.Sprintf("%d: %s", level, read(m, buf, n)))
	})
	if _, err := b.Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
}

// newRuntime returns a runtime with WASI and the test host, sharing the
// on-disk compilation cache so that later runs skip compiling the guests.
func newRuntime(t *testing.T, cfg wazero.RuntimeConfig) wazero.Runtime {
	t.Helper()
	ctx := context.Background()
	cache, err := testtool.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	cc, err := wazero.NewCompilationCacheWithDir(filepath.Join(cache, "wazero"))
	if err != nil {
		t.Fatal(err)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, cfg.WithCompilationCache(cc))
	t.Cleanup(func() { rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	instantiateHost(ctx, t, rt)
	return rt
}

func compile(t *testing.T, rt wazero.Runtime, name string) wazero.CompiledModule {
	t.Helper()
	bin, err := os.ReadFile(Path(t, name))
	if err != nil {
		t.Fatal(err)
	}
	c, err := rt.CompileModule(context.Background(), bin)
	if err != nil {
		t.Fatalf("compile %s: %v", name, err)
	}
	return c
}

// guestEnv is the module configuration shared by both guest shapes: a fresh
// writable file system at / and the given environment.
func guestEnv(t *testing.T, fsDir string, env ...string) wazero.ModuleConfig {
	if fsDir == "" {
		fsDir = t.TempDir()
	}
	cfg := wazero.NewModuleConfig().WithName("").
		WithSysWalltime().WithSysNanotime().WithSysNanosleep().
		WithFSConfig(wazero.NewFSConfig().WithDirMount(fsDir, "/"))
	for i := 0; i+1 < len(env); i += 2 {
		cfg = cfg.WithEnv(env[i], env[i+1])
	}
	return cfg
}

// newHandler instantiates an http-wasm guest: _initialize, then init.
func newHandler(t *testing.T, rt wazero.Runtime, c wazero.CompiledModule, cfg wazero.ModuleConfig) api.Module {
	t.Helper()
	ctx := context.Background()
	m, err := rt.InstantiateModule(ctx, c, cfg.WithStartFunctions("_initialize"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(ctx) })
	if init := m.ExportedFunction("init"); init != nil {
		if _, err := init.Call(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// serve runs one request through an http-wasm guest.
func serve(ctx context.Context, m api.Module, uri string, header http.Header, body string) (*exchange, error) {
	if header == nil {
		header = http.Header{}
	}
	x := &exchange{method: "GET", uri: uri, header: header, body: strings.NewReader(body), respHeader: http.Header{}}
	if body != "" {
		x.method = "POST"
	}
	res, err := m.ExportedFunction("handle_request").Call(context.WithValue(ctx, exchangeKey{}, x))
	if err != nil {
		return x, err
	}
	if next := uint32(res[0]); next != 0 {
		return x, fmt.Errorf("handle_request returned next=%d, want 0 (guest serves the response)", next)
	}
	return x, nil
}

func mustServe(t *testing.T, m api.Module, uri string, header http.Header, body string) *exchange {
	t.Helper()
	x, err := serve(context.Background(), m, uri, header, body)
	if err != nil {
		t.Fatalf("%s: %v", uri, err)
	}
	return x
}

func TestHelloC(t *testing.T) {
	rt := newRuntime(t, wazero.NewRuntimeConfig())
	m := newHandler(t, rt, compile(t, rt, "hello-c"), guestEnv(t, ""))
	for i := 0; i < 3; i++ {
		x := mustServe(t, m, "/", nil, "")
		if x.status != 200 || x.respHeader.Get("content-type") != "text/plain" || x.respBody.String() != "hello from frost\n" {
			t.Fatalf("got %d %v %q", x.status, x.respHeader, x.respBody.String())
		}
	}
	if pages := m.Memory().Size() / 65536; pages != 1 {
		t.Errorf("hello-c has %d pages of memory, want 1", pages)
	}
}

func TestGoHTTPWasm(t *testing.T) {
	rt := newRuntime(t, wazero.NewRuntimeConfig())
	m := newHandler(t, rt, compile(t, rt, "go-httpwasm"), guestEnv(t, ""))
	for _, uri := range []string{"/a", "/b/c?d=e"} { // one instance serves many requests
		x := mustServe(t, m, uri, nil, "")
		want := "hello from go http-wasm\npath=" + uri + "\n"
		if x.status != 200 || x.respBody.String() != want {
			t.Fatalf("got %d %q, want 200 %q", x.status, x.respBody.String(), want)
		}
	}
}

// probeReport is the JSON that probe.c and go-cgi's /probe answer.
type probeReport struct {
	Counter     int    `json:"counter"`
	Global      int    `json:"global"`
	Static      string `json:"static"`
	Heap        string `json:"heap"`
	File        string `json:"file"`
	Env         string `json:"env"`
	BodyLen     int    `json:"body_len"`
	Pages       int    `json:"pages"`
	SP          int    `json:"sp"`
	Init        int    `json:"init"`
	FileWritten bool   `json:"file_written"`
}

func decodeProbe(t *testing.T, body []byte) probeReport {
	t.Helper()
	var r probeReport
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("probe answered %q: %v", body, err)
	}
	return r
}

func TestProbe(t *testing.T) {
	rt := newRuntime(t, wazero.NewRuntimeConfig())
	c := compile(t, rt, "probe")
	secret := func(s string) http.Header { return http.Header{"X-Secret": {s}} }

	probe := func(t *testing.T, m api.Module, uri, secretValue, body string) probeReport {
		t.Helper()
		x := mustServe(t, m, uri, secret(secretValue), body)
		if x.status != 200 || x.respHeader.Get("content-type") != "application/json" {
			t.Fatalf("got %d %v", x.status, x.respHeader)
		}
		return decodeProbe(t, x.respBody.Bytes())
	}

	t.Run("fresh instances see nothing", func(t *testing.T) {
		for _, s := range []string{"first", `"quoted\secret"`} {
			m := newHandler(t, rt, c, guestEnv(t, "", "SECRET_ENV", "from-env"))
			r := probe(t, m, "/", s, "0123456789")
			want := probeReport{Env: "from-env", BodyLen: 10, Pages: r.Pages, SP: r.SP, Init: 1, FileWritten: true}
			if r != want {
				t.Errorf("got %+v, want %+v", r, want)
			}
		}
	})

	t.Run("a reused instance leaks everything", func(t *testing.T) {
		dir := t.TempDir()
		m := newHandler(t, rt, c, guestEnv(t, dir))
		first := probe(t, m, "/", `s1"\`, "")
		r := probe(t, m, "/", "s2", strings.Repeat("x", 10000))
		want := probeReport{Counter: 1, Global: 1, Static: `s1"\`, Heap: `s1"\`, File: `s1"\`,
			BodyLen: 10000, Pages: first.Pages, SP: first.SP, Init: 1, FileWritten: true}
		if r != want {
			t.Errorf("got %+v, want %+v", r, want)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "probe.txt")); string(b) != "s2" {
			t.Errorf("probe.txt = %q, want s2", b)
		}
	})

	t.Run("grow", func(t *testing.T) {
		m := newHandler(t, rt, c, guestEnv(t, ""))
		before := probe(t, m, "/?grow=3", "g", "")
		after := probe(t, m, "/", "g", "")
		if after.Pages != before.Pages+3 {
			t.Errorf("pages %d after ?grow=3, want %d", after.Pages, before.Pages+3)
		}
	})

	t.Run("trap after writing", func(t *testing.T) {
		m := newHandler(t, rt, c, guestEnv(t, ""))
		before := probe(t, m, "/", "", "")
		if _, err := serve(context.Background(), m, "/?trap=1", secret("trapped"), ""); err == nil {
			t.Fatal("?trap=1 did not trap")
		}
		r := probe(t, m, "/", "", "")
		if r.Counter != 2 || r.Static != "trapped" || r.Heap != "trapped" || r.File != "trapped" {
			t.Errorf("after a trap the instance holds %+v; want the trapped request's traces", r)
		}
		// The trap skipped handle_request's epilogue: the shadow stack
		// pointer (a non-exported global) is left lower than it was.
		if r.SP >= before.SP {
			t.Errorf("stack pointer %d after a trap, want below %d", r.SP, before.SP)
		}
	})
}

// spinWork mirrors work() in spin.c.
func spinWork(n uint64) uint64 {
	h := uint64(0x9e3779b97f4a7c15)
	for i := uint64(0); i < n; i++ {
		h ^= i
		h *= 0xbf58476d1ce4e5b9
		h = h<<31 | h>>33
	}
	return h
}

func TestSpin(t *testing.T) {
	rt := newRuntime(t, wazero.NewRuntimeConfig())
	c := compile(t, rt, "spin")

	t.Run("work", func(t *testing.T) {
		m := newHandler(t, rt, c, guestEnv(t, ""))
		for _, n := range []uint64{0, 1, 1000, 1_000_000} {
			x := mustServe(t, m, fmt.Sprintf("/?mode=work&n=%d", n), nil, "")
			if want := fmt.Sprintf("%d\n", spinWork(n)); x.status != 200 || x.respBody.String() != want {
				t.Errorf("n=%d: got %d %q, want %q", n, x.status, x.respBody.String(), want)
			}
		}
	})

	t.Run("recurse", func(t *testing.T) {
		m := newHandler(t, rt, c, guestEnv(t, ""))
		if _, err := serve(context.Background(), m, "/?mode=recurse", nil, ""); err == nil {
			t.Fatal("?mode=recurse returned; want a trap")
		}
	})

	t.Run("forever", func(t *testing.T) {
		rt := newRuntime(t, wazero.NewRuntimeConfig().WithCloseOnContextDone(true))
		m := newHandler(t, rt, compile(t, rt, "spin"), guestEnv(t, ""))
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := serve(ctx, m, "/?mode=forever", nil, "")
		if err == nil || !strings.Contains(err.Error(), "deadline") {
			t.Fatalf("?mode=forever ended with %v; want it stopped by the deadline", err)
		}
	})

	t.Run("bad mode", func(t *testing.T) {
		m := newHandler(t, rt, c, guestEnv(t, ""))
		if x := mustServe(t, m, "/", nil, ""); x.status != 400 {
			t.Errorf("no mode: status %d, want 400", x.status)
		}
	})
}

func TestMembomb(t *testing.T) {
	const limitMiB = 16
	rt := newRuntime(t, wazero.NewRuntimeConfig().WithMemoryLimitPages(limitMiB*16)) // 64 KiB pages
	m := newHandler(t, rt, compile(t, rt, "membomb"), guestEnv(t, ""))
	x := mustServe(t, m, "/", nil, "")
	var got int
	if _, err := fmt.Sscanf(x.respBody.String(), "membomb got %d MiB\n", &got); err != nil {
		t.Fatalf("membomb answered %q: %v", x.respBody.String(), err)
	}
	if got < limitMiB-2 || got >= limitMiB {
		t.Errorf("membomb got %d MiB under a %d MiB limit", got, limitMiB)
	}
	if pages := m.Memory().Size() / 65536; pages > limitMiB*16 {
		t.Errorf("memory is %d pages, over the limit", pages)
	}
}

// cgiEnv is the CGI/1.1 environment for a request, as a WAGI host sets it.
func cgiEnv(method, uri, body string, header http.Header, extra ...string) []string {
	u, err := url.Parse(uri)
	if err != nil {
		panic(err)
	}
	env := []string{
		"GATEWAY_INTERFACE", "CGI/1.1",
		"SERVER_SOFTWARE", "frost-test",
		"SERVER_NAME", "example.com",
		"SERVER_PORT", "80",
		"SERVER_PROTOCOL", "HTTP/1.1", // net/http/cgi refuses requests without it
		"REQUEST_METHOD", method,
		"REQUEST_URI", uri,
		"SCRIPT_NAME", "",
		"PATH_INFO", u.Path,
		"QUERY_STRING", u.RawQuery,
		"CONTENT_LENGTH", strconv.Itoa(len(body)),
		"REMOTE_ADDR", "127.0.0.1",
		"REMOTE_PORT", "12345",
		"HTTP_HOST", "example.com",
	}
	if body != "" {
		env = append(env, "CONTENT_TYPE", "text/plain")
	}
	for k, vs := range header {
		env = append(env, "HTTP_"+strings.ReplaceAll(strings.ToUpper(k), "-", "_"), strings.Join(vs, ", "))
	}
	return append(env, extra...)
}

type cgiResponse struct {
	status int
	header http.Header
	body   string
	stderr string
}

// runCGI runs a WASI command as a CGI script and parses its response.
func runCGI(t *testing.T, rt wazero.Runtime, c wazero.CompiledModule, fsDir, body string, env []string) cgiResponse {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cfg := guestEnv(t, fsDir, env...).WithArgs("guest").
		WithStdin(strings.NewReader(body)).WithStdout(&stdout).WithStderr(&stderr)
	m, err := rt.InstantiateModule(context.Background(), c, cfg) // runs _start
	if err != nil {
		t.Fatalf("guest failed: %v\nstderr: %s", err, stderr.String())
	}
	m.Close(context.Background())

	r := textproto.NewReader(bufio.NewReader(&stdout))
	mime, err := r.ReadMIMEHeader()
	if err != nil {
		t.Fatalf("bad CGI response %q: %v", stdout.String(), err)
	}
	res := cgiResponse{status: 200, header: http.Header(mime), stderr: stderr.String()}
	if s := mime.Get("Status"); s != "" {
		if res.status, err = strconv.Atoi(strings.Fields(s)[0]); err != nil {
			t.Fatalf("bad Status %q", s)
		}
	}
	rest, _ := io.ReadAll(r.R)
	res.body = string(rest)
	return res
}

func TestCGI(t *testing.T) {
	rt := newRuntime(t, wazero.NewRuntimeConfig())
	c := compile(t, rt, "cgi")
	body := "line one\nline two\n"
	res := runCGI(t, rt, c, "", body, cgiEnv("POST", "/x/y?a=1&b=2", body,
		http.Header{"X-Test": {"hello"}}, "GREETING", "hi there"))
	want := "method=POST\npath=/x/y\nquery=a=1&b=2\ncontent_length=18\nserver_name=example.com\n" +
		"x_test=hello\nenv GREETING=hi there\n" + body
	if res.status != 200 || res.header.Get("Content-Type") != "text/plain" || res.body != want {
		t.Errorf("got %d %v\n%s\nwant 200 text/plain\n%s", res.status, res.header, res.body, want)
	}
	if res.stderr != "cgi guest served /x/y\n" {
		t.Errorf("stderr %q", res.stderr)
	}
}

func TestHelloGo(t *testing.T) {
	rt := newRuntime(t, wazero.NewRuntimeConfig())
	c := compile(t, rt, "hello-go")
	res := runCGI(t, rt, c, "", "", cgiEnv("GET", "/some/path", "", nil, "GREETING", "bonjour"))
	want := "hello from frost (go)\npath: /some/path\nGREETING: bonjour\n"
	if res.status != 200 || res.body != want {
		t.Errorf("got %d %q, want 200 %q (stderr %q)", res.status, res.body, want, res.stderr)
	}
	res = runCGI(t, rt, c, "", "", cgiEnv("GET", "/", "", nil))
	if strings.Contains(res.body, "GREETING") {
		t.Errorf("GREETING unset, yet the answer is %q", res.body)
	}
}

func TestGoCGI(t *testing.T) {
	rt := newRuntime(t, wazero.NewRuntimeConfig())
	c := compile(t, rt, "go-cgi")

	t.Run("echo", func(t *testing.T) {
		res := runCGI(t, rt, c, "", "the body", cgiEnv("PUT", "/echo?q=1", "the body", http.Header{"X-Test": {"v"}}))
		want := "method=PUT\npath=/echo\nquery=q=1\nx-test=v\nbody=the body\n"
		if res.status != 200 || res.body != want {
			t.Errorf("got %d %q, want 200 %q (stderr %q)", res.status, res.body, want, res.stderr)
		}
	})

	probe := func(t *testing.T, dir, secret string) probeReport {
		t.Helper()
		res := runCGI(t, rt, c, dir, "abc", cgiEnv("POST", "/probe", "abc", http.Header{"X-Secret": {secret}}, "SECRET_ENV", "e"))
		if res.status != 200 {
			t.Fatalf("status %d: %s %s", res.status, res.body, res.stderr)
		}
		return decodeProbe(t, []byte(res.body))
	}
	t.Run("probe", func(t *testing.T) {
		for _, s := range []string{"one", "two"} { // a fresh instance and file system each time
			if r := probe(t, "", s); r != (probeReport{Env: "e", BodyLen: 3, FileWritten: true}) {
				t.Errorf("fresh run saw %+v", r)
			}
		}
		// Sharing the file system leaks through /probe.txt; memory cannot
		// leak because every CGI run is a new instance.
		dir := t.TempDir()
		probe(t, dir, "one")
		if r := probe(t, dir, "two"); r != (probeReport{File: "one", Env: "e", BodyLen: 3, FileWritten: true}) {
			t.Errorf("run on a shared file system saw %+v", r)
		}
	})
}

// codeSectionSize returns the size of a wasm module's code section.
func codeSectionSize(bin []byte) (int, error) {
	if len(bin) < 8 || string(bin[:4]) != "\x00asm" {
		return 0, errors.New("not a wasm module")
	}
	for p := bin[8:]; len(p) > 0; {
		id := p[0]
		size, n := binary.Uvarint(p[1:])
		if n <= 0 || uint64(len(p)-1-n) < size {
			return 0, errors.New("truncated section")
		}
		if id == 10 {
			return int(size), nil
		}
		p = p[1+n+int(size):]
	}
	return 0, errors.New("no code section")
}

func TestBig(t *testing.T) {
	bin, err := os.ReadFile(Path(t, "big"))
	if err != nil {
		t.Fatal(err)
	}
	code, err := codeSectionSize(bin)
	if err != nil || code < 20<<20 {
		t.Fatalf("big.wasm has %d bytes of code (%v), want at least 20 MiB", code, err)
	}
	t.Logf("big.wasm: %d MiB, %d MiB of code", len(bin)>>20, code>>20)
	if testing.Short() {
		t.Skip("-short: not compiling 20 MiB of code")
	}
	rt := newRuntime(t, wazero.NewRuntimeConfig())
	start := time.Now()
	c := compile(t, rt, "big")
	t.Logf("compiled in %s", time.Since(start).Round(time.Millisecond))
	res := runCGI(t, rt, c, "", "", cgiEnv("GET", "/", "", nil))
	if res.status != 200 || res.body != "big ok\n" {
		t.Errorf("got %d %q (stderr %q)", res.status, res.body, res.stderr)
	}
}

func TestInvalid(t *testing.T) {
	rt := newRuntime(t, wazero.NewRuntimeConfig())
	ctx := context.Background()
	for _, name := range []string{"truncated", "not-wasm"} {
		bin, err := os.ReadFile(Path(t, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rt.CompileModule(ctx, bin); err == nil {
			t.Errorf("%s compiled", name)
		}
	}
	c := compile(t, rt, "noshape")
	exports := c.ExportedFunctions()
	for _, name := range []string{"_start", "_initialize", "handle_request"} {
		if _, ok := exports[name]; ok {
			t.Errorf("noshape exports %s", name)
		}
	}
	if _, ok := exports["add"]; !ok {
		t.Error("noshape does not export add")
	}
}

func TestPath(t *testing.T) {
	for _, name := range Names() {
		fi, err := os.Stat(Path(t, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-12s %9d bytes", name, fi.Size())
	}
}
