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
//
// Read-only assets (mounted by the host at /assets):
//
//	/asset?name=X        the content of /assets/X (for a directory, the
//	                     names in it, a line each); 404 if it does not exist
//	/asset-write?name=X  tries to create /assets/X; answers "written" or
//	                     "error=<the error's text>"
//	/write-read?path=P   writes P, reads it back and lists its directory:
//	                     "written=<content>\nls=<names>" or "error=<text>"
//
// Network:
//
//	/dial?addr=HOST:PORT  tries a TCP connection: "connected" or
//	                      "error=<the error's text>"
//
// Waiting:
//
//	/sleep?d=DURATION  sleeps (WASI poll_oneoff) for d, then answers
//	                   "slept d"
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"path/filepath"
	"strings"
	"time"
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
	switch r.URL.Path {
	case "/probe":
		probe(w, r, body)
		return
	case "/asset":
		asset(w, r.URL.Query().Get("name"))
		return
	case "/asset-write":
		tryWrite(w, "/assets/"+r.URL.Query().Get("name"), false)
		return
	case "/write-read":
		tryWrite(w, r.URL.Query().Get("path"), true)
		return
	case "/sleep":
		// Sleeps (WASI poll_oneoff) for ?d, then answers: a guest
		// waiting, not computing.
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		time.Sleep(d)
		fmt.Fprintf(w, "slept %s\n", d)
		return
	case "/dial":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		c, err := net.Dial("tcp", r.URL.Query().Get("addr"))
		if err != nil {
			fmt.Fprintf(w, "error=%v\n", err)
			return
		}
		c.Close()
		fmt.Fprintln(w, "connected")
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

func asset(w http.ResponseWriter, name string) {
	path := "/assets/" + name
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		ents, err := os.ReadDir(path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		for _, e := range ents {
			fmt.Fprintln(w, e.Name())
		}
		return
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		http.Error(w, err.Error(), http.StatusNotFound)
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(b)
	}
}

// tryWrite creates the file at path and reports what happened; with
// readBack it also reads the file back and lists its directory.
func tryWrite(w http.ResponseWriter, path string, readBack bool) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := os.WriteFile(path, []byte("overwritten"), 0o644); err != nil {
		fmt.Fprintf(w, "error=%v\n", err)
		return
	}
	if !readBack {
		fmt.Fprintln(w, "written")
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(w, "error=%v\n", err)
		return
	}
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		fmt.Fprintf(w, "error=%v\n", err)
		return
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	fmt.Fprintf(w, "written=%s\nls=%s\n", b, strings.Join(names, ","))
}
