package e2b

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/frostdev/frost/api"
	fspb "github.com/frostdev/frost/internal/e2b/envdpb/filesystempb"
	"github.com/frostdev/frost/internal/e2b/envdpb/processpb"
	"github.com/frostdev/frost/internal/sandbox/sandboxtest"
)

// envdRoute is one route of envd as the fuzzer calls it.
type envdRoute struct {
	method, path string
	// req is the procedure's request message (nil: a plain HTTP route).
	req proto.Message
	// stream: a streaming procedure (server or client stream).
	stream bool
	// process: a process.Process procedure, which may go to the sandbox
	// whose commands block.
	process bool
}

var envdRoutes = []envdRoute{
	{"POST", "/filesystem.Filesystem/Stat", &fspb.StatRequest{}, false, false},
	{"POST", "/filesystem.Filesystem/ListDir", &fspb.ListDirRequest{}, false, false},
	{"POST", "/filesystem.Filesystem/MakeDir", &fspb.MakeDirRequest{}, false, false},
	{"POST", "/filesystem.Filesystem/Remove", &fspb.RemoveRequest{}, false, false},
	{"POST", "/filesystem.Filesystem/Move", &fspb.MoveRequest{}, false, false},
	{"POST", "/filesystem.Filesystem/WatchDir", &fspb.WatchDirRequest{}, true, false},
	{"POST", "/filesystem.Filesystem/CreateWatcher", &fspb.CreateWatcherRequest{}, false, false},
	{"POST", "/filesystem.Filesystem/GetWatcherEvents", &fspb.GetWatcherEventsRequest{}, false, false},
	{"POST", "/filesystem.Filesystem/RemoveWatcher", &fspb.RemoveWatcherRequest{}, false, false},
	{"POST", "/process.Process/Start", &processpb.StartRequest{}, true, true},
	{"POST", "/process.Process/Connect", &processpb.ConnectRequest{}, true, true},
	{"POST", "/process.Process/List", &processpb.ListRequest{}, false, true},
	{"POST", "/process.Process/SendInput", &processpb.SendInputRequest{}, false, true},
	{"POST", "/process.Process/SendSignal", &processpb.SendSignalRequest{}, false, true},
	{"POST", "/process.Process/CloseStdin", &processpb.CloseStdinRequest{}, false, true},
	{"POST", "/process.Process/Update", &processpb.UpdateRequest{}, false, true},
	{"POST", "/process.Process/StreamInput", &processpb.StreamInputRequest{}, true, true},
	{"GET", "/files", nil, false, false},
	{"POST", "/files", nil, false, false},
}

var envdContentTypes = []string{
	"application/json", "application/proto", "application/connect+json", "application/connect+proto",
	"multipart/form-data; boundary=fz", "", "text/plain", "application/json; charset=utf-8",
}

// Bits of the fuzzer's opts byte.
const (
	optEnvelope = 1 << iota // frame the body as one Connect envelope, its length right
	optGzip                 // gzip the body and say so (the envelope flags it compressed)
	optHeld                 // process calls go to the sandbox whose commands block; POST /files gets ?path=
)

// envdTimeout bounds every call: long enough that a call that does not
// block ends well inside it on a loaded machine.
const envdTimeout = 200 * time.Millisecond

// FuzzEnvdMessages sends arbitrary bodies, with each content type, to
// every envd procedure and to GET/POST /files, over the fake sandbox
// runtime: a sandbox whose files and commands answer at once, and one
// whose commands block, where a tagged process ("fz") keeps running so
// that Connect, SendInput, SendSignal and CloseStdin find one. Every call
// ends within envdTimeout; only a stream that started (sent a message)
// may still be running then. The answer is never a panic or a 5xx caused
// by the input (unimplemented, 501, is an answer about a request, not a
// failure): a unary error is Connect's JSON {code, message} with the HTTP
// status Connect maps its code to; a stream is 200 with well-formed
// envelopes and one end-of-stream message, last, whose error has a valid
// code; /files errors are {code, message} with envd's status for the
// code. Afterwards both sandboxes still answer, and no command of the
// quick one outlives its call.
func FuzzEnvdMessages(f *testing.F) {
	fake := sandboxtest.New()
	m := newManagerWith(f, fake)
	ctx := context.Background()
	quick, err := m.Create(ctx, api.SandboxCreateRequest{})
	if err != nil {
		f.Fatal(err)
	}
	held, err := m.Create(ctx, api.SandboxCreateRequest{})
	if err != nil {
		f.Fatal(err)
	}
	block := make(chan struct{})
	fake.Live[held.ID].Block = block
	f.Cleanup(func() { close(block) })
	if _, err := m.WriteFile(ctx, quick.ID, "/root/keep", 0o644, strings.NewReader("keep")); err != nil {
		f.Fatal(err)
	}
	e := NewEnvd(m, 0)
	h := e.Wrap("frost.test", http.NotFoundHandler())
	call := func(ctx context.Context, w http.ResponseWriter, sb api.Sandbox, method, path, query, ctype string, hdr http.Header, body []byte) {
		r := httptest.NewRequestWithContext(ctx, method, path, bytes.NewReader(body))
		r.URL.RawQuery = query
		for k, v := range hdr {
			r.Header[k] = v
		}
		r.Header.Set("E2b-Sandbox-Id", sb.ID)
		r.Header.Set("X-Access-Token", sb.Token)
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		h.ServeHTTP(w, r)
	}
	// live starts the held sandbox's process "fz" unless it runs: a Start
	// whose stream goes once the process is in place (it runs on).
	fz := &processpb.ProcessSelector{Selector: &processpb.ProcessSelector_Tag{Tag: "fz"}}
	live := func(tb testing.TB) {
		if _, err := e.procs.find(held.ID, fz); err == nil {
			return
		}
		sctx, drop := context.WithCancel(context.Background())
		defer drop()
		w := &firstWrite{ResponseRecorder: httptest.NewRecorder(), wrote: make(chan struct{})}
		done := make(chan struct{})
		go func() {
			defer close(done)
			call(sctx, w, held, "POST", "/process.Process/Start", "", "application/connect+json", nil, envelope(0, []byte(`{"process":{"cmd":"serve"},"tag":"fz"}`)))
		}()
		select {
		case <-w.wrote:
		case <-done:
		}
		drop()
		<-done
		if _, err := e.procs.find(held.ID, fz); err != nil {
			tb.Fatalf("starting the live process: %v; stream %q", err, w.Body)
		}
	}
	live(f)

	seeds := map[string][]string{
		"/filesystem.Filesystem/Stat":             {`{"path":"/root/keep"}`, `{"path":"keep"}`, `{"path":"~/keep"}`, `{"path":"/nope"}`, `{"path":""}`, `{"path":"/a\u0000b"}`, `{"path":"../../etc"}`},
		"/filesystem.Filesystem/ListDir":          {`{"path":"/root","depth":3}`, `{"path":"/root","depth":4294967295}`},
		"/filesystem.Filesystem/MakeDir":          {`{"path":"/root/keep"}`, `{"path":"/root/d/e"}`},
		"/filesystem.Filesystem/Remove":           {`{"path":"/root/keep"}`, `{"path":"/"}`},
		"/filesystem.Filesystem/Move":             {`{"source":"/root/keep","destination":"/root/moved"}`, `{"source":"/root/keep"}`},
		"/filesystem.Filesystem/WatchDir":         {`{"path":"/root","recursive":true}`, `{"path":"/root/keep"}`},
		"/filesystem.Filesystem/CreateWatcher":    {`{"path":"/root"}`},
		"/filesystem.Filesystem/GetWatcherEvents": {`{"watcherId":"w"}`},
		"/filesystem.Filesystem/RemoveWatcher":    {`{"watcherId":"w"}`},
		"/process.Process/Start": {`{"process":{"cmd":"/bin/bash","args":["-l","-c","echo hi"],"envs":{"A":"b"},"cwd":"/root"},"tag":"t","stdin":true}`,
			`{"process":{"cmd":""}}`, `{"process":{"cmd":"x","cwd":"rel"}}`, `{"process":{"cmd":"x","envs":{"A=B":"c"}}}`, `{"process":{"cmd":"x"},"pty":{"size":{"cols":80,"rows":24}}}`},
		"/process.Process/Connect":     {`{"process":{"tag":"fz"}}`, `{"process":{"pid":1001}}`, `{"process":{}}`, `{}`},
		"/process.Process/List":        {`{}`},
		"/process.Process/SendInput":   {`{"process":{"tag":"fz"},"input":{"stdin":"aGk="}}`, `{"process":{"tag":"fz"},"input":{"pty":"aGk="}}`, `{"process":{"pid":7},"input":{"stdin":"aGk="}}`},
		"/process.Process/SendSignal":  {`{"process":{"tag":"fz"},"signal":"SIGNAL_SIGKILL"}`, `{"process":{"pid":1001},"signal":"SIGNAL_SIGTERM"}`},
		"/process.Process/CloseStdin":  {`{"process":{"tag":"fz"}}`},
		"/process.Process/Update":      {`{"process":{"tag":"fz"},"pty":{"size":{"cols":80,"rows":24}}}`},
		"/process.Process/StreamInput": {`{"start":{"process":{"tag":"fz"}}}`},
	}
	for i, rt := range envdRoutes {
		for _, s := range seeds[rt.path] {
			if rt.stream {
				f.Add(uint8(i), uint8(2), uint8(optEnvelope), []byte(s))
				f.Add(uint8(i), uint8(2), uint8(optEnvelope|optHeld|optGzip), []byte(s))
				f.Add(uint8(i), uint8(2), uint8(0), envelope(0, []byte(s)))
			} else {
				f.Add(uint8(i), uint8(0), uint8(optHeld), []byte(s))
				f.Add(uint8(i), uint8(0), uint8(optGzip), []byte(s))
			}
			msg := rt.req.ProtoReflect().New().Interface()
			if err := protojson.Unmarshal([]byte(s), msg); err != nil {
				f.Fatalf("seed %s %s: %v", rt.path, s, err)
			}
			b, err := proto.Marshal(msg)
			if err != nil {
				f.Fatal(err)
			}
			if rt.stream {
				f.Add(uint8(i), uint8(3), uint8(optEnvelope), b)
			} else {
				f.Add(uint8(i), uint8(1), uint8(0), b)
			}
		}
	}
	start := uint8(9) // process.Process/Start
	for _, b := range [][]byte{
		nil,                                   // no message
		{0, 0, 0},                             // a truncated prefix
		{0, 0, 0, 0, 9, '{'},                  // a length past the body
		{0, 0xff, 0xff, 0xff, 0xff, '{', '}'}, // a huge declared length
		{0, 0, 0x80, 0, 0},                    // 8 MiB declared, nothing sent
		{2, 0, 0, 0, 2, '{', '}'},             // end-of-stream from the client
		{1, 0, 0, 0, 2, '{', '}'},             // compressed without an encoding
		{0x7e, 0, 0, 0, 2, '{', '}'},          // unknown flags
		append(envelope(0, []byte(`{}`)), envelope(0, []byte(`{}`))...), // two messages
	} {
		f.Add(start, uint8(2), uint8(0), b)
	}
	f.Add(start, uint8(2), uint8(optGzip), envelope(1, []byte("not gzip")))
	f.Add(start, uint8(0), uint8(optEnvelope), []byte(`{}`)) // unary content type to a stream
	f.Add(uint8(0), uint8(2), uint8(0), []byte(`{}`))        // stream content type to a unary call
	f.Add(uint8(0), uint8(6), uint8(0), []byte(`{}`))
	files := uint8(len(envdRoutes) - 2)
	for _, s := range []string{"/root/keep", "keep", "/nope", "", "/a\x00b", "%zz"} {
		f.Add(files, uint8(5), uint8(0), []byte(s))
		f.Add(files, uint8(5), uint8(optEnvelope), []byte(s))
	}
	for _, s := range []string{
		"--fz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"/root/up\"\r\n\r\nhello\r\n--fz--\r\n",
		"--fz\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--fz--\r\n",
		"--fz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nx", // no closing boundary
		"",
	} {
		f.Add(files+1, uint8(4), uint8(0), []byte(s))
		f.Add(files+1, uint8(4), uint8(optHeld), []byte(s))
		f.Add(files+1, uint8(0), uint8(0), []byte(s))
	}

	f.Fuzz(func(t *testing.T, route, ctype, opts uint8, body []byte) {
		live(t)
		rt := envdRoutes[int(route)%len(envdRoutes)]
		ct := envdContentTypes[int(ctype)%len(envdContentTypes)]
		sb, query, hdr := quick, "", http.Header{}
		if rt.process && opts&optHeld != 0 {
			sb = held
		}
		switch {
		case rt.path == "/files" && rt.method == "GET":
			if opts&optEnvelope != 0 {
				query = "path=" + url.QueryEscape(string(body))
			} else {
				query = "path=" + string(body) // raw: malformed escapes included
			}
			body = nil
		case rt.path == "/files":
			if opts&optHeld != 0 {
				query = "path=%2Froot%2Fup"
			}
		default:
			flags := byte(0)
			if opts&optGzip != 0 {
				body = gzipped(body)
				flags = 1
				if rt.stream {
					hdr.Set("Connect-Content-Encoding", "gzip")
				} else {
					hdr.Set("Content-Encoding", "gzip")
				}
			}
			if opts&optEnvelope != 0 {
				body = envelope(flags, body)
			}
		}
		cctx, cancel := context.WithTimeout(context.Background(), envdTimeout)
		defer cancel()
		w := httptest.NewRecorder()
		call(cctx, w, sb, rt.method, rt.path, query, ct, hdr, body)
		timedOut := cctx.Err() != nil
		what := rt.method + " " + rt.path + "?" + query + " (" + ct + ")"
		switch {
		case rt.req == nil:
			checkFilesAnswer(t, what, rt.method, w)
		case !acceptsContentType(rt.stream, ct):
			if w.Code != http.StatusUnsupportedMediaType {
				t.Fatalf("%s: %d %q, want 415", what, w.Code, w.Body)
			}
		case rt.stream:
			checkStream(t, what, ct, w, timedOut)
		default:
			checkUnary(t, what, ct, w)
		}
		if timedOut && !rt.stream {
			t.Fatalf("%s %q: still running after %v", what, body, envdTimeout)
		}

		for _, s := range []api.Sandbox{quick, held} {
			if got, err := m.Get(context.Background(), s.ID); err != nil || got.State != "running" {
				t.Fatalf("sandbox %s after %s %q: %+v %v", s.ID, what, body, got, err)
			}
		}
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		w = httptest.NewRecorder()
		call(sctx, w, quick, "POST", "/filesystem.Filesystem/Stat", "", "application/json", nil, []byte(`{"path":"/root/keep"}`))
		if w.Code != http.StatusOK {
			t.Fatalf("stat after %s %q: %d %s", what, body, w.Code, w.Body)
		}
		if left := e.procs.list(quick.ID); len(left) != 0 {
			t.Fatalf("after %s %q: %d commands of the quick sandbox still run", what, body, len(left))
		}
	})
}

// firstWrite is a recorder that says when the handler first writes.
type firstWrite struct {
	*httptest.ResponseRecorder
	once  sync.Once
	wrote chan struct{}
}

func (w *firstWrite) Write(b []byte) (int, error) {
	n, err := w.ResponseRecorder.Write(b)
	w.once.Do(func() { close(w.wrote) })
	return n, err
}

// envelope frames msg as one Connect envelope.
func envelope(flags byte, msg []byte) []byte {
	b := make([]byte, 5, 5+len(msg))
	b[0] = flags
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// acceptsContentType reports whether a Connect handler of the stream type
// takes the content type (anything else is 415).
func acceptsContentType(stream bool, ct string) bool {
	base, params, err := mime.ParseMediaType(ct)
	if err != nil || len(params) > 1 || len(params) == 1 && !strings.EqualFold(params["charset"], "utf-8") {
		return false
	}
	if stream {
		return base == "application/connect+json" || base == "application/connect+proto" && len(params) == 0
	}
	return base == "application/json" || base == "application/proto" && len(params) == 0
}

// wireError is a Connect error as it travels: a unary error's body, or
// the error of an end-of-stream message.
type wireError struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Details []json.RawMessage `json:"details"`
}

// connectStatus is the HTTP status the Connect protocol gives each code
// (connectrpc.com/docs/protocol, "Error Codes").
var connectStatus = map[connect.Code]int{
	connect.CodeCanceled: 499, connect.CodeUnknown: 500, connect.CodeInvalidArgument: 400,
	connect.CodeDeadlineExceeded: 504, connect.CodeNotFound: 404, connect.CodeAlreadyExists: 409,
	connect.CodePermissionDenied: 403, connect.CodeResourceExhausted: 429, connect.CodeFailedPrecondition: 400,
	connect.CodeAborted: 409, connect.CodeOutOfRange: 400, connect.CodeUnimplemented: 501,
	connect.CodeInternal: 500, connect.CodeUnavailable: 503, connect.CodeDataLoss: 500,
	connect.CodeUnauthenticated: 401,
}

// checkCode parses a wire code and refuses the ones that say the server,
// not the request, failed: both sandboxes are up, so unavailable is a
// failure too.
func checkCode(t *testing.T, what string, e wireError) connect.Code {
	t.Helper()
	var c connect.Code
	if err := c.UnmarshalText([]byte(e.Code)); err != nil {
		t.Fatalf("%s: error code %q: %v", what, e.Code, err)
	}
	switch c {
	case connect.CodeInternal, connect.CodeUnknown, connect.CodeDataLoss, connect.CodeUnavailable:
		t.Fatalf("%s: %s: %s", what, c, e.Message)
	}
	return c
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return io.ErrUnexpectedEOF
	}
	return nil
}

// body is w's body, decompressed if the answer says it is gzipped.
func answerBody(t *testing.T, what string, w *httptest.ResponseRecorder) []byte {
	t.Helper()
	if w.Header().Get("Content-Encoding") != "gzip" {
		return w.Body.Bytes()
	}
	return gunzip(t, what, w.Body.Bytes())
}

func gunzip(t *testing.T, what string, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: gzip: %v", what, err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: gzip: %v", what, err)
	}
	return out
}

// checkUnary checks a unary Connect answer.
func checkUnary(t *testing.T, what, ct string, w *httptest.ResponseRecorder) {
	t.Helper()
	b := answerBody(t, what, w)
	if w.Code == http.StatusOK {
		if got := w.Header().Get("Content-Type"); got != ct {
			t.Fatalf("%s: 200 with Content-Type %q", what, got)
		}
		if strings.Contains(ct, "json") && !json.Valid(b) {
			t.Fatalf("%s: 200 with %q", what, b)
		}
		return
	}
	var e wireError
	if got := w.Header().Get("Content-Type"); got != "application/json" {
		t.Fatalf("%s: %d with Content-Type %q: %q", what, w.Code, got, b)
	}
	if err := decodeStrict(b, &e); err != nil {
		t.Fatalf("%s: %d %q: %v", what, w.Code, b, err)
	}
	c := checkCode(t, what, e)
	if c == connect.CodeDeadlineExceeded || c == connect.CodeCanceled {
		t.Fatalf("%s: a unary call %s: %s", what, c, e.Message)
	}
	if w.Code != connectStatus[c] {
		t.Fatalf("%s: status %d for code %s (Connect says %d)", what, w.Code, c, connectStatus[c])
	}
}

// checkStream checks a streaming Connect answer: 200, envelopes, one
// end-of-stream message last. A stream cut by the deadline must have
// started (sent a message) first.
func checkStream(t *testing.T, what, ct string, w *httptest.ResponseRecorder, timedOut bool) {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("%s: stream answered %d %q", what, w.Code, w.Body)
	}
	if got := w.Header().Get("Content-Type"); got != ct {
		t.Fatalf("%s: stream with Content-Type %q", what, got)
	}
	b := w.Body.Bytes()
	sent := 0
	for {
		if len(b) < 5 {
			t.Fatalf("%s: the stream ends without an end-of-stream message (%d bytes left)", what, len(b))
		}
		flags, n := b[0], binary.BigEndian.Uint32(b[1:5])
		if uint64(n) > uint64(len(b)-5) || flags&^3 != 0 {
			t.Fatalf("%s: envelope flags %#x, length %d, %d bytes left", what, flags, n, len(b)-5)
		}
		msg := b[5 : 5+n]
		b = b[5+n:]
		if flags&1 != 0 {
			msg = gunzip(t, what, msg)
		}
		if flags&2 == 0 {
			if strings.HasSuffix(ct, "json") && !json.Valid(msg) {
				t.Fatalf("%s: message %q", what, msg)
			}
			sent++
			continue
		}
		if len(b) != 0 {
			t.Fatalf("%s: %d bytes after the end-of-stream message", what, len(b))
		}
		var end struct {
			Error    *wireError          `json:"error"`
			Metadata map[string][]string `json:"metadata"`
		}
		if err := decodeStrict(msg, &end); err != nil {
			t.Fatalf("%s: end-of-stream message %q: %v", what, msg, err)
		}
		if end.Error == nil {
			return
		}
		c := checkCode(t, what, *end.Error)
		if (c == connect.CodeDeadlineExceeded || c == connect.CodeCanceled) && !(timedOut && sent > 0) {
			t.Fatalf("%s: the stream ended %s after %d messages: %s", what, c, sent, end.Error.Message)
		}
		return
	}
}

// filesStatus is the status envd's plain routes give each error code a
// request can cause.
var filesStatus = map[string]int{"invalid_argument": 400, "not_found": 404, "unauthenticated": 401}

// checkFilesAnswer checks an answer of GET or POST /files.
func checkFilesAnswer(t *testing.T, what, method string, w *httptest.ResponseRecorder) {
	t.Helper()
	b := w.Body.Bytes()
	ct := w.Header().Get("Content-Type")
	switch {
	case w.Code >= 400:
		var e struct{ Code, Message string }
		if ct != "application/json" || decodeStrict(b, &e) != nil || e.Message == "" || filesStatus[e.Code] != w.Code {
			t.Fatalf("%s: %d %q %q", what, w.Code, ct, b)
		}
	case method == "GET":
		n, err := strconv.Atoi(w.Header().Get("Content-Length"))
		if w.Code != http.StatusOK || ct != "application/octet-stream" || err != nil || n != len(b) {
			t.Fatalf("%s: %d %q, Content-Length %q, %d bytes", what, w.Code, ct, w.Header().Get("Content-Length"), len(b))
		}
	default:
		var out []struct{ Path, Name, Type string }
		if w.Code != http.StatusOK || ct != "application/json" || decodeStrict(b, &out) != nil || len(out) == 0 {
			t.Fatalf("%s: %d %q %q", what, w.Code, ct, b)
		}
	}
}
