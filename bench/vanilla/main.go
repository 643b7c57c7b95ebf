// Command vanilla is the baseline for Frost's per-request benchmark: a plain
// net/http hello world answering what examples/hello-c answers, with no
// sandbox. `make bench` runs it beside frost under the same load.
package main

import (
	"flag"
	"log"
	"net/http"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18081", "listen address")
	flag.Parse()
	body := []byte("hello from frost\n")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	log.Fatal(http.ListenAndServe(*addr, h))
}
