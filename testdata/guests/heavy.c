// heavy.c is an http-wasm guest with an expensive init: it builds a 256 KiB
// lookup table whose every entry takes 400 rounds of an integer mixing
// function, tens of milliseconds of work, like a guest that precomputes
// tables or parses a large configuration at start. Requests only read the
// table: /?i=N answers "heavy table[N]=V\n". Frost's thaw benchmark uses it
// to compare a wake from the snapshot with a cold boot that reruns init.
#include "http_handler.h"

#define ENTRIES (64 * 1024)
#define ROUNDS 400

static uint32_t table[ENTRIES];

static uint32_t mix(uint32_t x) {
	x ^= x >> 16;
	x *= 0x7feb352dU;
	x ^= x >> 15;
	x *= 0x846ca68bU;
	x ^= x >> 16;
	return x;
}

HH_EXPORT(init) void init(void) {
	for (uint32_t i = 0; i < ENTRIES; i++) {
		uint32_t v = i;
		for (int r = 0; r < ROUNDS; r++) v = mix(v + (uint32_t)r);
		table[i] = v;
	}
}

HH_EXPORT(handle_request) int64_t handle_request(void) {
	static char uri[256], msg[64] = "heavy table[";
	hh_uri(uri, sizeof uri);
	const char *q = hh_query(uri, "i");
	uint32_t i = q ? (uint32_t)hh_atou(q) % ENTRIES : 0;
	int32_t n = 12; // strlen("heavy table[")
	n += hh_utoa(i, msg + n);
	msg[n++] = ']';
	msg[n++] = '=';
	n += hh_utoa(table[i], msg + n);
	msg[n++] = '\n';
	hh_set_status_code(200);
	hh_set_header("content-type", "text/plain");
	hh_write_body(HH_RESPONSE, msg, n);
	return 0;
}

HH_EXPORT(handle_response) void handle_response(int32_t req_ctx, int32_t is_error) {
	(void)req_ctx;
	(void)is_error;
}
