// membomb.c is an http-wasm guest that takes all the memory it can get: it
// mallocs 1 MiB chunks and writes to every page of each, until malloc fails
// (the host's memory limit, or wasm32's 4 GiB), then answers
// "membomb got N MiB\n". It never frees, so the host must discard the
// instance afterwards. With ?mode=trap it traps when malloc fails instead,
// as a guest that does not check for out-of-memory would.
#include <stdlib.h>

#include "http_handler.h"

#define MIB (1 << 20)

HH_EXPORT(handle_request) int64_t handle_request(void) {
	static char msg[64] = "membomb got ";
	static char uri[256];
	hh_uri(uri, sizeof uri);
	const char *mode = hh_query(uri, "mode");
	int trap = mode && mode[0] == 't';
	uint64_t mib = 0;
	for (char *p; (p = malloc(MIB)) != 0; mib++)
		for (int off = 0; off < MIB; off += 4096) ((volatile char *)p)[off] = 1;
	if (trap) __builtin_trap();

	int32_t n = 12; // strlen("membomb got ")
	n += hh_utoa(mib, msg + n);
	for (const char *s = " MiB\n"; *s; s++) msg[n++] = *s;
	hh_set_status_code(200);
	hh_set_header("content-type", "text/plain");
	hh_write_body(HH_RESPONSE, msg, n);
	return 0;
}

HH_EXPORT(handle_response) void handle_response(int32_t req_ctx, int32_t is_error) {
	(void)req_ctx;
	(void)is_error;
}
