// hello.c is the smallest useful Frost guest: an http-wasm handler
// (https://http-wasm.io/http-handler-abi/) that answers every request with
// 200, content-type text/plain and "hello from frost\n".
//
// It is Frost's benchmark guest, so a request costs three host calls and
// nothing else: no libc, no malloc, no start-up code. Build (see
// scripts/build-guests.sh for the exact flags):
//
//	clang --target=wasm32-wasi -O2 -nostdlib -Wl,--no-entry \
//	  -Wl,--initial-memory=65536 -Wl,-z,stack-size=4096 -o hello-c.wasm hello.c
#include <stdint.h>

// Host functions, imported from the "http_handler" module.
#define IMPORT(name) __attribute__((import_module("http_handler"), import_name(#name)))
IMPORT(set_status_code) void set_status_code(int32_t code);
IMPORT(set_header_value)
void set_header_value(int32_t kind, const char *name, int32_t name_len, const char *value, int32_t value_len);
IMPORT(write_body) void write_body(int32_t kind, const char *body, int32_t body_len);

enum { RESPONSE = 1 }; // header_kind and body_kind of the response

static const char name[] = "content-type";
static const char value[] = "text/plain";
static const char body[] = "hello from frost\n";

// handle_request writes the response itself and returns 0: ctx=0 in the high
// 32 bits, next=0 (do not call a next handler) in the low 32 bits.
__attribute__((export_name("handle_request"))) int64_t handle_request(void) {
	set_status_code(200);
	set_header_value(RESPONSE, name, sizeof name - 1, value, sizeof value - 1);
	write_body(RESPONSE, body, sizeof body - 1);
	return 0;
}

// handle_response is only called when handle_request returns next=1, which
// this guest never does; the ABI still requires the export.
__attribute__((export_name("handle_response"))) void handle_response(int32_t req_ctx, int32_t is_error) {
	(void)req_ctx;
	(void)is_error;
}
