package wasm

import (
	"context"
	"fmt"
	"net/http"
	"net/textproto"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// The http-wasm handler ABI (https://http-wasm.io/http-handler-abi/), host
// side. Every function finds its request through the calling instance, which
// rides in the call's context; the guest's pointers are bounds-checked and a
// bad one traps the guest.

const (
	headerRequest  = 0
	headerResponse = 1
	bodyRequest    = 0
	bodyResponse   = 1

	featureBufferRequest  = 1
	featureBufferResponse = 2
)

const (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

func instantiateHTTPHandler(ctx context.Context, rt wazero.Runtime) error {
	b := rt.NewHostModuleBuilder("http_handler")
	def := func(name string, fn api.GoModuleFunc, params, results []api.ValueType) {
		b.NewFunctionBuilder().WithGoModuleFunction(fn, params, results).Export(name)
	}
	def("enable_features", hEnableFeatures, []api.ValueType{i32}, []api.ValueType{i32})
	def("get_config", hGetConfig, []api.ValueType{i32, i32}, []api.ValueType{i32})
	def("log", hLog, []api.ValueType{i32, i32, i32}, nil)
	def("log_enabled", hLogEnabled, []api.ValueType{i32}, []api.ValueType{i32})
	def("get_method", hGetMethod, []api.ValueType{i32, i32}, []api.ValueType{i32})
	def("set_method", hSetMethod, []api.ValueType{i32, i32}, nil)
	def("get_uri", hGetURI, []api.ValueType{i32, i32}, []api.ValueType{i32})
	def("set_uri", hSetURI, []api.ValueType{i32, i32}, nil)
	def("get_protocol_version", hGetProto, []api.ValueType{i32, i32}, []api.ValueType{i32})
	def("get_header_names", hGetHeaderNames, []api.ValueType{i32, i32, i32}, []api.ValueType{i64})
	def("get_header_values", hGetHeaderValues, []api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i64})
	def("set_header_value", hSetHeaderValue, []api.ValueType{i32, i32, i32, i32, i32}, nil)
	def("add_header_value", hAddHeaderValue, []api.ValueType{i32, i32, i32, i32, i32}, nil)
	def("remove_header", hRemoveHeader, []api.ValueType{i32, i32, i32}, nil)
	def("read_body", hReadBody, []api.ValueType{i32, i32, i32}, []api.ValueType{i64})
	def("write_body", hWriteBody, []api.ValueType{i32, i32, i32}, nil)
	def("get_status_code", hGetStatus, nil, []api.ValueType{i32})
	def("set_status_code", hSetStatus, []api.ValueType{i32}, nil)
	def("get_source_addr", hGetSourceAddr, []api.ValueType{i32, i32}, []api.ValueType{i32})
	_, err := b.Instantiate(ctx)
	return err
}

// guestError traps the guest with a message the operator can act on.
type guestError string

func (e guestError) Error() string { return string(e) }

func current(ctx context.Context) *instance {
	in, _ := ctx.Value(instanceKey{}).(*instance)
	if in == nil || in.req == nil {
		panic(guestError("http_handler called outside a request"))
	}
	in.hostWork(1)
	return in
}

// view returns guest memory [ptr, ptr+n) or traps.
func view(mod api.Module, ptr, n uint32) []byte {
	b, ok := mod.Memory().Read(ptr, n)
	if !ok {
		panic(guestError(fmt.Sprintf("http_handler: guest pointer %#x+%d is out of bounds", ptr, n)))
	}
	return b
}

// writeIfFits copies s to guest memory when it fits in limit and returns its length.
func writeIfFits(mod api.Module, buf, limit uint32, s string) uint64 {
	n := uint32(len(s))
	if n <= limit && n > 0 {
		copy(view(mod, buf, n), s)
	}
	return uint64(n)
}

func hEnableFeatures(_ context.Context, _ api.Module, s []uint64) {
	s[0] = uint64(uint32(s[0]) & (featureBufferRequest | featureBufferResponse))
}

func hGetConfig(_ context.Context, _ api.Module, s []uint64) { s[0] = 0 }

func hLog(ctx context.Context, mod api.Module, s []uint64) {
	level, ptr, n := int32(s[0]), uint32(s[1]), uint32(s[2])
	in, _ := ctx.Value(instanceKey{}).(*instance)
	msg := view(mod, ptr, n)
	if in != nil && in.p.spec.Logs != nil {
		in.p.spec.Logs(logLevel(level), msg)
		in.hostWork(copyWork(len(msg)))
	}
}

func logLevel(l int32) string {
	switch l {
	case -1:
		return "debug"
	case 0:
		return "info"
	case 1:
		return "warn"
	default:
		return "error"
	}
}

func hLogEnabled(_ context.Context, _ api.Module, s []uint64) {
	if int32(s[0]) >= 0 && int32(s[0]) < 3 {
		s[0] = 1
	} else {
		s[0] = 0
	}
}

func hGetMethod(ctx context.Context, mod api.Module, s []uint64) {
	s[0] = writeIfFits(mod, uint32(s[0]), uint32(s[1]), current(ctx).req.Method)
}

func hSetMethod(ctx context.Context, mod api.Module, s []uint64) {
	current(ctx).req.Method = string(view(mod, uint32(s[0]), uint32(s[1])))
}

func hGetURI(ctx context.Context, mod api.Module, s []uint64) {
	s[0] = writeIfFits(mod, uint32(s[0]), uint32(s[1]), current(ctx).req.URI)
}

func hSetURI(ctx context.Context, mod api.Module, s []uint64) {
	current(ctx).req.URI = string(view(mod, uint32(s[0]), uint32(s[1])))
}

func hGetProto(ctx context.Context, mod api.Module, s []uint64) {
	s[0] = writeIfFits(mod, uint32(s[0]), uint32(s[1]), current(ctx).req.Proto)
}

func (in *instance) headers(kind uint32) http.Header {
	switch kind {
	case headerRequest:
		return in.req.Header
	case headerResponse:
		return in.resp.Header
	default: // trailers are not supported: always empty
		return nil
	}
}

// writeList writes NUL-terminated strings if they all fit and returns count<<32|length.
func writeList(mod api.Module, buf, limit uint32, list []string) uint64 {
	var n uint32
	for _, v := range list {
		n += uint32(len(v)) + 1
	}
	if n > 0 && n <= limit {
		out := view(mod, buf, n)
		i := 0
		for _, v := range list {
			i += copy(out[i:], v)
			out[i] = 0
			i++
		}
	}
	return uint64(len(list))<<32 | uint64(n)
}

func hGetHeaderNames(ctx context.Context, mod api.Module, s []uint64) {
	in := current(ctx)
	h := in.headers(uint32(s[0]))
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	s[0] = writeList(mod, uint32(s[1]), uint32(s[2]), names)
}

// headerName returns the canonical header name at ptr. Names a guest uses
// again are served from a small per-instance cache: no allocation.
func (in *instance) headerName(mod api.Module, ptr, n uint32) string {
	b := view(mod, ptr, n)
	if s, ok := in.names[string(b)]; ok {
		return s
	}
	s := textproto.CanonicalMIMEHeaderKey(string(b))
	if len(in.names) < maxInterned && len(b) <= maxInternedLen {
		if in.names == nil {
			in.names = make(map[string]string)
		}
		in.names[string(b)] = s
	}
	return s
}

// headerValue returns the one-element value list for the bytes at ptr,
// cached per instance like names. The lists are only ever read.
func (in *instance) headerValue(mod api.Module, ptr, n uint32) []string {
	b := view(mod, ptr, n)
	if v, ok := in.values[string(b)]; ok {
		return v
	}
	v := []string{string(b)}
	if len(in.values) < maxInterned && len(b) <= maxInternedLen {
		if in.values == nil {
			in.values = make(map[string][]string)
		}
		in.values[string(b)] = v
	}
	return v
}

const (
	maxInterned    = 64
	maxInternedLen = 128
)

func hGetHeaderValues(ctx context.Context, mod api.Module, s []uint64) {
	in := current(ctx)
	h := in.headers(uint32(s[0]))
	vals := h[in.headerName(mod, uint32(s[1]), uint32(s[2]))]
	s[0] = writeList(mod, uint32(s[3]), uint32(s[4]), vals)
}

func (in *instance) mutableHeaders(kind uint32) http.Header {
	h := in.headers(kind)
	if h == nil {
		panic(guestError(fmt.Sprintf("http_handler: header kind %d cannot be changed", kind)))
	}
	return h
}

// maxHeaderBytes caps the header bytes (names and values) a guest may set
// or add while it handles one request, so that a guest that sets headers
// in a loop fails at once instead of growing the host's memory until its
// time limit.
const maxHeaderBytes = 1 << 20

// countHeader charges n header bytes to the request.
func (in *instance) countHeader(name, value uint32) {
	in.headerBytes += int(name) + int(value)
	if in.headerBytes > maxHeaderBytes {
		panic(fmt.Errorf("%w: the guest set more than %d bytes of headers", errResponseTooLarge, maxHeaderBytes))
	}
}

func hSetHeaderValue(ctx context.Context, mod api.Module, s []uint64) {
	in := current(ctx)
	h := in.mutableHeaders(uint32(s[0]))
	in.countHeader(uint32(s[2]), uint32(s[4]))
	h[in.headerName(mod, uint32(s[1]), uint32(s[2]))] = in.headerValue(mod, uint32(s[3]), uint32(s[4]))
}

func hAddHeaderValue(ctx context.Context, mod api.Module, s []uint64) {
	in := current(ctx)
	h := in.mutableHeaders(uint32(s[0]))
	in.countHeader(uint32(s[2]), uint32(s[4]))
	k := in.headerName(mod, uint32(s[1]), uint32(s[2]))
	h[k] = append(h[k], string(view(mod, uint32(s[3]), uint32(s[4]))))
}

func hRemoveHeader(ctx context.Context, mod api.Module, s []uint64) {
	in := current(ctx)
	delete(in.mutableHeaders(uint32(s[0])), in.headerName(mod, uint32(s[1]), uint32(s[2])))
}

func hReadBody(ctx context.Context, mod api.Module, s []uint64) {
	in := current(ctx)
	kind, buf, limit := uint32(s[0]), uint32(s[1]), uint32(s[2])
	var src []byte
	switch kind {
	case bodyRequest:
		src = in.req.Body
	case bodyResponse:
		src = in.resp.Body
	default:
		panic(guestError(fmt.Sprintf("http_handler: read_body: unknown body kind %d", kind)))
	}
	rest := src[min(in.bodyRead, len(src)):]
	n := min(uint32(len(rest)), limit)
	if n > 0 {
		copy(view(mod, buf, n), rest[:n])
		in.hostWork(copyWork(int(n)))
	}
	if kind == bodyRequest {
		in.bodyRead += int(n)
	}
	var eof uint64
	if int(n) == len(rest) {
		eof = 1
	}
	s[0] = eof<<32 | uint64(n)
}

func hWriteBody(ctx context.Context, mod api.Module, s []uint64) {
	in := current(ctx)
	kind, buf, n := uint32(s[0]), uint32(s[1]), uint32(s[2])
	data := view(mod, buf, n)
	switch kind {
	case bodyResponse:
		if int64(len(in.resp.Body))+int64(n) > in.p.r.cfg.MaxResponseBytes {
			panic(fmt.Errorf("%w (%d bytes)", errResponseTooLarge, in.p.r.cfg.MaxResponseBytes))
		}
		in.resp.Body = appendPreemptible(in.resp.Body, data)
		in.hostWork(copyWork(len(data)))
	case bodyRequest:
		in.req.Body = append(in.req.Body[:0:0], data...)
		in.bodyRead = 0
	default:
		panic(guestError(fmt.Sprintf("http_handler: write_body: unknown body kind %d", kind)))
	}
}

func hGetStatus(ctx context.Context, _ api.Module, s []uint64) {
	s[0] = uint64(uint32(current(ctx).resp.Status))
}

func hSetStatus(ctx context.Context, _ api.Module, s []uint64) {
	code := int32(s[0])
	if code < 100 || code > 999 {
		panic(guestError(fmt.Sprintf("http_handler: set_status_code: %d is not an HTTP status", code)))
	}
	current(ctx).resp.Status = int(code)
}

func hGetSourceAddr(ctx context.Context, mod api.Module, s []uint64) {
	s[0] = writeIfFits(mod, uint32(s[0]), uint32(s[1]), current(ctx).req.RemoteAddr)
}
