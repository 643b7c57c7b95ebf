//go:build wasip1

// Command go-httpwasm is an http-wasm handler written in plain Go: a wasip1
// reactor (go build -buildmode=c-shared) that exports handle_request and
// handle_response with //go:wasmexport and imports the http_handler host
// functions with //go:wasmimport. It answers
//
//	hello from go http-wasm
//	path=/the/request/uri
//
// and, for /?env=NAME, a third line "env=VALUE" with os.Getenv(NAME). The
// Go runtime reads its environment once, in _initialize.
//
// The Go runtime initialises in _initialize; main is never called.
package main

import (
	"os"
	"strings"
	"unsafe"
)

//go:wasmimport http_handler get_uri
func getURI(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport http_handler set_status_code
func setStatusCode(code uint32)

//go:wasmimport http_handler set_header_value
func setHeaderValue(kind uint32, name unsafe.Pointer, nameLen uint32, value unsafe.Pointer, valueLen uint32)

//go:wasmimport http_handler write_body
func writeBody(kind uint32, body unsafe.Pointer, bodyLen uint32)

const response = 1 // header_kind and body_kind of the response

// uri asks the host for the length first (limit 0 writes nothing), then
// reads the URI into a buffer of that size.
func uri() string {
	n := getURI(nil, 0)
	if n == 0 {
		return "/"
	}
	buf := make([]byte, n)
	getURI(unsafe.Pointer(&buf[0]), n)
	return string(buf)
}

func setHeader(name, value string) {
	setHeaderValue(response,
		unsafe.Pointer(unsafe.StringData(name)), uint32(len(name)),
		unsafe.Pointer(unsafe.StringData(value)), uint32(len(value)))
}

func write(body []byte) {
	if len(body) > 0 {
		writeBody(response, unsafe.Pointer(&body[0]), uint32(len(body)))
	}
}

// handleRequest serves the response itself and returns ctx=0, next=0.
//
//go:wasmexport handle_request
func handleRequest() uint64 {
	setStatusCode(200)
	setHeader("content-type", "text/plain")
	u := uri()
	body := "hello from go http-wasm\npath=" + u + "\n"
	if _, name, ok := strings.Cut(u, "?env="); ok {
		body += "env=" + os.Getenv(name) + "\n"
	}
	write([]byte(body))
	return 0
}

//go:wasmexport handle_response
func handleResponse(reqCtx, isError uint32) {}

func main() {}
