// probe.c is an http-wasm guest that looks for traces of earlier requests.
//
// It keeps state in every place a guest can: a counter in linear memory, a
// mutable wasm global that is not exported, a static buffer, a malloc'd
// buffer, the file /probe.txt and the environment (wasi-libc reads it on the
// first getenv). Each request first reports what it finds, as JSON:
//
//	{"counter":0,"global":0,"static":"","heap":"","file":"","env":"",
//	 "body_len":0,"pages":2,"sp":N,"init":1,"file_written":true}
//
// and then stores the value of its x-secret request header everywhere. On a
// host that isolates requests every response shows counter 0 and empty
// strings, whatever came before.
//
// Query parameters: ?grow=N grows memory by N pages after the report is
// built (a host must discard an instance whose memory grew); ?trap=1 traps
// after the secret was stored, before any response is written.
//
// ?next=1 returns next=1 with request context 42 and writes nothing: the host
// then calls handle_response(42, 0), which adds the header x-handle-response:
// "42,0". Every call of handle_response sets that header, so a host that calls
// it after next=0 (which the ABI forbids) shows up too.
//
// Descriptors: ?asset=NAME reads /assets/NAME and adds "asset" (its first
// bytes) and "asset_fd" (the descriptor it had) to the report; with &leak=1
// the descriptor is left open. ?fd=N reads descriptor N, whatever it is, and
// adds "fd_read" (what it read) or "fd_error" (the errno's text): a host
// must never let a descriptor one request left open reach the next.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_handler.h"

#define SECRET_MAX 256

static int counter;              // in linear memory
static char static_buf[SECRET_MAX]; // in the data section
static char *heap_buf;           // allocated by init, before any request
static int init_calls;

// probe_global is a mutable i32 wasm global, invisible to the host: only a
// host that restores every global (not just exported ones) resets it.
__asm__(".globaltype probe_global, i32\nprobe_global:\n");
static int global_get(void) {
	int v;
	__asm__ volatile("global.get probe_global\n\tlocal.set %0" : "=r"(v));
	return v;
}
static void global_set(int v) { __asm__ volatile("local.get %0\n\tglobal.set probe_global" ::"r"(v)); }

// init is the optional export Frost calls once, before the first request.
HH_EXPORT(init) void init(void) {
	fprintf(stderr, "probe: init ran\n"); // a host that thaws instead never shows it
	init_calls++;
	if (!heap_buf) heap_buf = calloc(1, SECRET_MAX);
}

// json is a tiny bounded JSON writer over a static buffer.
static char out[4 * SECRET_MAX * 6 + 512];
static size_t out_len;

static void put(const char *s) {
	size_t n = strlen(s);
	if (out_len + n < sizeof out) memcpy(out + out_len, s, n), out_len += n;
}
static void put_num(const char *key, long long v) {
	char b[64];
	snprintf(b, sizeof b, "%s\"%s\":%lld", out_len > 1 ? "," : "", key, v);
	put(b);
}
static void put_bool(const char *key, int v) {
	char b[64];
	snprintf(b, sizeof b, ",\"%s\":%s", key, v ? "true" : "false");
	put(b);
}
static void put_str(const char *key, const char *v) {
	char b[8];
	put(out_len > 1 ? ",\"" : "\"");
	put(key);
	put("\":\"");
	for (; *v; v++) {
		unsigned char c = (unsigned char)*v;
		if (c == '"' || c == '\\') b[0] = '\\', b[1] = (char)c, b[2] = 0;
		else if (c < 0x20) snprintf(b, sizeof b, "\\u%04x", c);
		else b[0] = (char)c, b[1] = 0;
		put(b);
	}
	put("\"");
}

static void read_file(char *buf, size_t size) {
	buf[0] = 0;
	FILE *f = fopen("/probe.txt", "r");
	if (!f) return;
	size_t n = fread(buf, 1, size - 1, f);
	buf[n] = 0;
	fclose(f);
}

static int write_file(const char *s) {
	FILE *f = fopen("/probe.txt", "w");
	if (!f) return 0;
	int ok = fputs(s, f) >= 0;
	return fclose(f) == 0 && ok;
}

// read_fd reads up to size-1 bytes from fd into buf; it returns 0 or errno.
static int read_fd(int fd, char *buf, size_t size) {
	ssize_t n = read(fd, buf, size - 1);
	if (n < 0) {
		buf[0] = 0;
		return errno;
	}
	buf[n] = 0;
	return 0;
}

static void probe_fds(const char *uri) {
	static char path[300], buf[SECRET_MAX];
	const char *name = hh_query(uri, "asset");
	if (name) {
		snprintf(path, sizeof path, "/assets/%s", name);
		char *amp = strchr(path, '&');
		if (amp) *amp = 0;
		int fd = open(path, O_RDONLY);
		if (fd < 0) {
			put_str("asset_error", strerror(errno));
		} else {
			int err = read_fd(fd, buf, sizeof buf);
			put_str("asset", err ? strerror(err) : buf);
			put_num("asset_fd", fd);
			const char *leak = hh_query(uri, "leak");
			if (!leak || leak[0] != '1') close(fd);
		}
	}
	const char *fd = hh_query(uri, "fd");
	if (fd) {
		int err = read_fd((int)hh_atou(fd), buf, sizeof buf);
		if (err) put_str("fd_error", strerror(err));
		else put_str("fd_read", buf);
	}
}

HH_EXPORT(handle_request) int64_t handle_request(void) {
	static char uri[1024], secret[SECRET_MAX], file_buf[SECRET_MAX], body[4096];
	int sp_marker; // its address tracks the shadow stack pointer

	if (!heap_buf) init(); // a host that never calls init still gets a heap buffer

	hh_uri(uri, sizeof uri);
	if (hh_header("x-secret", secret, sizeof secret) < 0) secret[0] = 0;

	long long body_len = 0;
	for (;;) {
		int64_t eof_len = hh_read_body(HH_REQUEST, body, sizeof body);
		body_len += (int32_t)eof_len;
		if (eof_len >> 32) break;
	}

	// Report what earlier requests left behind.
	read_file(file_buf, sizeof file_buf);
	const char *env = getenv("SECRET_ENV");
	out_len = 0;
	put("{");
	put_num("counter", counter);
	put_num("global", global_get());
	put_str("static", static_buf);
	put_str("heap", heap_buf ? heap_buf : "");
	put_str("file", file_buf);
	put_str("env", env ? env : "");
	put_num("body_len", body_len);
	put_num("pages", (long long)__builtin_wasm_memory_size(0));
	put_num("sp", (long long)(uintptr_t)&sp_marker);
	put_num("init", init_calls);
	probe_fds(uri);

	// Leave traces everywhere.
	counter++;
	global_set(global_get() + 1);
	strncpy(static_buf, secret, sizeof static_buf - 1);
	if (heap_buf) strncpy(heap_buf, secret, SECRET_MAX - 1);
	put_bool("file_written", write_file(secret));
	put("}\n");

	const char *grow = hh_query(uri, "grow");
	if (grow && __builtin_wasm_memory_grow(0, hh_atou(grow)) == (size_t)-1)
		hh_log_str(HH_LOG_WARN, "probe: memory.grow failed");
	const char *trap = hh_query(uri, "trap");
	if (trap && trap[0] == '1') __builtin_trap();
	const char *next = hh_query(uri, "next");
	if (next && next[0] == '1') return (int64_t)42 << 32 | 1;

	hh_set_status_code(200);
	hh_set_header("content-type", "application/json");
	hh_write_body(HH_RESPONSE, out, (int32_t)out_len);
	return 0;
}

HH_EXPORT(handle_response) void handle_response(int32_t req_ctx, int32_t is_error) {
	char v[32];
	snprintf(v, sizeof v, "%d,%d", (int)req_ctx, (int)is_error);
	hh_set_header("x-handle-response", v);
}
