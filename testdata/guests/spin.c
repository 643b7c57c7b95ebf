// spin.c is an http-wasm guest that burns CPU, for testing CPU limits.
//
//	?mode=forever     loops forever without calling the host
//	?mode=work&n=N    runs N rounds of a cheap hash and answers the result in
//	                  decimal, e.g. "12345\n" (for measuring the overhead of
//	                  CPU-limit instrumentation; deterministic)
//	?mode=recurse     recurses until the stack overflows (a trap)
//	?mode=headers     sets response headers forever (new names, 1 KiB values)
//	?mode=body        writes the response body forever, 16 KiB at a time
//	?mode=log         logs forever: an endless loop of host calls
//
// Built without libc: a request does no work besides the loop it asks for.
#include "http_handler.h"

// work is the hash loop: one multiply, one xor, one rotate per round
// (a 64-bit mix in the style of splitmix). Tests compute the same value.
static uint64_t work(uint64_t n) {
	uint64_t h = 0x9e3779b97f4a7c15ull;
	for (uint64_t i = 0; i < n; i++) {
		h ^= i;
		h *= 0xbf58476d1ce4e5b9ull;
		h = (h << 31) | (h >> 33);
	}
	return h;
}

static volatile uint32_t sink;

static void forever(void) {
	for (;;) sink++; // volatile: the loop cannot be optimised away
}

// recurse keeps a frame on the shadow stack and uses it after the call, so
// the compiler can neither drop the frames nor turn the recursion into a loop.
// The depth check never fires: the stack runs out long before.
static uint32_t recurse(uint32_t depth) {
	volatile char frame[256];
	if (depth == 0xffffffffu) return 0;
	frame[depth & 255] = (char)depth;
	uint32_t r = recurse(depth + 1);
	return r + frame[(depth * 7) & 255];
}

static char chunk[16 * 1024]; // zeros: filling it would need memset (no libc)

static void headers(void) {
	static char name[32] = "x-flood-";
	for (uint64_t i = 0;; i++) {
		int32_t n = 8 + hh_utoa(i, name + 8);
		hh_set_header_value(HH_RESPONSE, name, n, chunk, 1024);
	}
}

static void body(void) {
	hh_set_status_code(200);
	for (;;) hh_write_body(HH_RESPONSE, chunk, sizeof chunk);
}

static void logs(void) {
	for (;;) hh_log_str(HH_LOG_INFO, "spin: still going");
}

HH_EXPORT(handle_request) int64_t handle_request(void) {
	static char uri[1024], num[24];
	hh_uri(uri, sizeof uri);

	const char *mode = hh_query(uri, "mode");
	if (!mode) mode = "";
	if (mode[0] == 'f') { // forever
		forever();
	} else if (mode[0] == 'h') { // headers
		headers();
	} else if (mode[0] == 'b') { // body
		body();
	} else if (mode[0] == 'l') { // log
		logs();
	} else if (mode[0] == 'r') { // recurse
		sink = recurse(0);
	} else if (mode[0] == 'w') { // work
		int32_t n = hh_utoa(work(hh_atou(hh_query(uri, "n"))), num);
		num[n++] = '\n';
		hh_set_status_code(200);
		hh_set_header("content-type", "text/plain");
		hh_write_body(HH_RESPONSE, num, n);
		return 0;
	}
	hh_set_status_code(400);
	hh_write_str("spin: want ?mode=forever, work&n=N, recurse, headers, body or log\n");
	return 0;
}

HH_EXPORT(handle_response) void handle_response(int32_t req_ctx, int32_t is_error) {
	(void)req_ctx;
	(void)is_error;
}
