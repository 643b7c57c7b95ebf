// fat.c is an http-wasm guest whose init fills FAT_MIB MiB of linear memory
// with pseudo-random words (incompressible: the worst case for a snapshot's
// transfer), the state a snapshot of a large app carries. Frost's
// cross-node wake benchmark builds it at 1, 64 and 512 MiB (fat-1.wasm,
// fat-64.wasm, fat-512.wasm). /?i=N answers "fat word[N]=V\n", so a wake
// that lost the memory shows.
#include "http_handler.h"

#ifndef FAT_MIB
#define FAT_MIB 1
#endif

static uint32_t *fat;
static uint32_t words;

static uint32_t mix(uint32_t x) {
	x ^= x >> 16;
	x *= 0x7feb352dU;
	x ^= x >> 15;
	x *= 0x846ca68bU;
	x ^= x >> 16;
	return x;
}

HH_EXPORT(init) void init(void) {
	int32_t old = __builtin_wasm_memory_grow(0, FAT_MIB * 16); // 64 KiB pages
	if (old < 0) __builtin_trap();
	fat = (uint32_t *)((uintptr_t)old * 65536);
	words = FAT_MIB * 262144u;
	for (uint32_t i = 0; i < words; i++) fat[i] = mix(i + 1);
}

HH_EXPORT(handle_request) int64_t handle_request(void) {
	static char uri[256], msg[64] = "fat word[";
	hh_uri(uri, sizeof uri);
	const char *q = hh_query(uri, "i");
	uint32_t i = q ? (uint32_t)hh_atou(q) % words : words - 1;
	int32_t n = 9; // strlen("fat word[")
	n += hh_utoa(i, msg + n);
	msg[n++] = ']';
	msg[n++] = '=';
	n += hh_utoa(fat[i], msg + n);
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
