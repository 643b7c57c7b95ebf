// Command go-cgi is a stock Go CGI (WAGI) guest built with net/http/cgi.
//
// On any path it echoes the request:
//
//	method=POST
//	path=/echo
//	query=a=1
//	x-test=<X-Test header>
//	body=<request body>
//
// On /probe it behaves like testdata/guests/probe.c for Go guests: it reports
// as JSON what earlier requests left in a global variable, a heap map and the
// file /probe.txt, then stores its X-Secret header in all three. A host that
// isolates requests always shows counter 0 and empty strings.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"os"
)

var (
	counter int
	heap    = map[string]string{}
)

func main() {
	if err := cgi.Serve(http.HandlerFunc(serve)); err != nil {
		fmt.Fprintln(os.Stderr, "go-cgi:", err)
		os.Exit(1)
	}
}

func serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.URL.Path == "/probe" {
		probe(w, r, body)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "method=%s\npath=%s\nquery=%s\nx-test=%s\nbody=%s\n",
		r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("X-Test"), body)
}

func probe(w http.ResponseWriter, r *http.Request, body []byte) {
	file, _ := os.ReadFile("/probe.txt") // absent on a fresh file system
	report := map[string]any{
		"counter":  counter,
		"heap":     heap["secret"],
		"file":     string(file),
		"env":      os.Getenv("SECRET_ENV"),
		"body_len": len(body),
	}

	secret := r.Header.Get("X-Secret")
	counter++
	heap["secret"] = secret
	report["file_written"] = os.WriteFile("/probe.txt", []byte(secret), 0o644) == nil

	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(report)
}
