// Command hello-go is Frost's demo app: a stock Go program that serves one
// HTTP request as CGI (WAGI) with net/http/cgi. Build it with nothing but Go:
//
//	GOOS=wasip1 GOARCH=wasm go build -o hello-go.wasm ./examples/hello-go
//
// It answers "hello from frost (go)", the request path and, when the app's
// environment sets it, the value of GREETING.
package main

import (
	"fmt"
	"net/http"
	"net/http/cgi"
	"os"
)

func main() {
	err := cgi.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "hello from frost (go)\npath: %s\n", r.URL.Path)
		if g, ok := os.LookupEnv("GREETING"); ok {
			fmt.Fprintf(w, "GREETING: %s\n", g)
		}
	}))
	if err != nil {
		fmt.Fprintln(os.Stderr, "hello-go:", err)
		os.Exit(1)
	}
}
