// http_handler.h declares the http-wasm handler ABI host functions
// (https://http-wasm.io/http-handler-abi/) and a few helpers shared by the
// C test guests. Every helper is static and libc-free, so guests built with
// -nostdlib can use it too.
#ifndef FROST_HTTP_HANDLER_H
#define FROST_HTTP_HANDLER_H

#include <stdint.h>

#define HH_IMPORT(name) __attribute__((import_module("http_handler"), import_name(#name)))
#define HH_EXPORT(name) __attribute__((export_name(#name)))

enum { HH_REQUEST = 0, HH_RESPONSE = 1 }; // header_kind and body_kind
enum { HH_LOG_DEBUG = -1, HH_LOG_INFO = 0, HH_LOG_WARN = 1, HH_LOG_ERROR = 2 };

HH_IMPORT(get_method) int32_t hh_get_method(char *buf, int32_t limit);
HH_IMPORT(get_uri) int32_t hh_get_uri(char *buf, int32_t limit);
HH_IMPORT(get_header_values)
int64_t hh_get_header_values(int32_t kind, const char *name, int32_t name_len, char *buf, int32_t limit);
HH_IMPORT(set_header_value)
void hh_set_header_value(int32_t kind, const char *name, int32_t name_len, const char *value, int32_t value_len);
HH_IMPORT(read_body) int64_t hh_read_body(int32_t kind, char *buf, int32_t limit);
HH_IMPORT(write_body) void hh_write_body(int32_t kind, const char *buf, int32_t len);
HH_IMPORT(set_status_code) void hh_set_status_code(int32_t code);
HH_IMPORT(log) void hh_log(int32_t level, const char *buf, int32_t len);

static inline int32_t hh_strlen(const char *s) {
	int32_t n = 0;
	while (s[n]) n++;
	return n;
}

static inline void hh_write_str(const char *s) { hh_write_body(HH_RESPONSE, s, hh_strlen(s)); }

static inline void hh_log_str(int32_t level, const char *s) { hh_log(level, s, hh_strlen(s)); }

static inline void hh_set_header(const char *name, const char *value) {
	hh_set_header_value(HH_RESPONSE, name, hh_strlen(name), value, hh_strlen(value));
}

// hh_header reads the first value of request header name into buf
// (NUL-terminated) and returns its length, or -1 if the header is absent or
// does not fit.
static inline int32_t hh_header(const char *name, char *buf, int32_t limit) {
	int64_t count_len = hh_get_header_values(HH_REQUEST, name, hh_strlen(name), buf, limit);
	int32_t len = (int32_t)count_len;
	if ((count_len >> 32) == 0 || len > limit) return -1;
	return hh_strlen(buf); // values are NUL-terminated; stop at the first
}

// hh_uri reads the request URI into buf, NUL-terminated; an URI that does
// not fit reads as "".
static inline int32_t hh_uri(char *buf, int32_t size) {
	int32_t n = hh_get_uri(buf, size - 1);
	if (n > size - 1) n = 0;
	buf[n] = 0;
	return n;
}

// hh_query finds key in the query string of uri (NUL-terminated) and returns
// a pointer to its value, which ends at '&' or NUL; 0 if the key is absent.
static inline const char *hh_query(const char *uri, const char *key) {
	const char *p = uri;
	while (*p && *p != '?') p++;
	while (*p) {
		p++; // skip '?' or '&'
		const char *k = key;
		while (*k && *p == *k) p++, k++;
		if (*k == 0 && *p == '=') return p + 1;
		while (*p && *p != '&') p++;
	}
	return 0;
}

// hh_atou parses the decimal digits at s (stopping at the first non-digit).
static inline uint64_t hh_atou(const char *s) {
	uint64_t v = 0;
	while (s && *s >= '0' && *s <= '9') v = v * 10 + (uint64_t)(*s++ - '0');
	return v;
}

// hh_utoa writes v in decimal to buf (at least 21 bytes), NUL-terminated,
// and returns the length.
static inline int32_t hh_utoa(uint64_t v, char *buf) {
	char tmp[20];
	int32_t n = 0, i = 0;
	do tmp[n++] = (char)('0' + v % 10), v /= 10; while (v);
	while (n) buf[i++] = tmp[--n];
	buf[i] = 0;
	return i;
}

#endif
