// cgi.c is a WAGI/CGI guest: a WASI command that reads the request from CGI
// environment variables and stdin and writes a CGI response to stdout:
//
//	Status: 200 OK
//	Content-Type: text/plain
//
//	method=GET
//	path=/x
//	query=a=1
//	content_length=0
//	server_name=example.com
//	x_test=<HTTP_X_TEST>
//	env GREETING=<GREETING>
//	<the request body, echoed>
//
// and one line, "cgi guest served /x", to stderr (the app's log).
#include <stdio.h>
#include <stdlib.h>

static const char *env(const char *name) {
	const char *v = getenv(name);
	return v ? v : "";
}

int main(void) {
	printf("Status: 200 OK\n");
	printf("Content-Type: text/plain\n\n");
	printf("method=%s\n", env("REQUEST_METHOD"));
	printf("path=%s\n", env("PATH_INFO"));
	printf("query=%s\n", env("QUERY_STRING"));
	printf("content_length=%s\n", env("CONTENT_LENGTH"));
	printf("server_name=%s\n", env("SERVER_NAME"));
	printf("x_test=%s\n", env("HTTP_X_TEST"));
	printf("env GREETING=%s\n", env("GREETING"));

	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) fwrite(buf, 1, n, stdout);
	fflush(stdout);

	fprintf(stderr, "cgi guest served %s\n", env("PATH_INFO"));
	return 0;
}
