package front

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/hop"
)

// A connection that opens with hop's preface goes to the Hop; every
// other connection on the same listener is HTTP as before, and Shutdown
// drains both.
func TestHopConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello "+r.URL.Path) })
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	f := New(Config{Fallback: srv, Handler: h, Hop: &hop.Server{Handler: h}, Logger: slog.New(slog.DiscardHandler)})
	go f.Serve(ln)
	addr := ln.Addr().String()

	tr := &hop.Transport{Dial: (&net.Dialer{}).DialContext}
	for _, path := range []string{"/one", "/two"} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("over a hop: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello "+path {
			t.Errorf("over a hop: %q", b)
		}
	}
	resp, err := http.Get("http://" + addr + "/plain")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello /plain" {
		t.Errorf("plain HTTP: %q", b)
	}
	if f.Served() != 1 {
		t.Errorf("the front answered %d requests itself, want the plain one", f.Served())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a hop connection open: %v", err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/after", nil)
	if _, err := tr.RoundTrip(req); err == nil {
		t.Error("a request after shutdown was answered")
	}
}
