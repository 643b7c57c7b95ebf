package front

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/certs"
	"github.com/frostdev/frost/internal/rawio"
)

// BenchmarkHTTP2Stall: GETs of a 32 KiB answer over one HTTP/2
// connection, 16 at a time, served with the stall cut as ServeTLS makes
// it (writes below TLS in watched steps), without any cut, and with
// net/http's own (WriteByteTimeout: a write deadline set and cleared
// around each write): what the cut costs HTTP/2.
func BenchmarkHTTP2Stall(b *testing.B) {
	answer := make([]byte, 32<<10)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(answer) })
	cert, _, err := certs.Development(b.TempDir(), certs.Names("app.test"), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	for _, v := range []string{"front", "none", "deadline"} {
		b.Run(v, func(b *testing.B) {
			srv := &http.Server{Handler: h}
			if v == "deadline" {
				srv.HTTP2 = &http.HTTP2Config{WriteByteTimeout: time.Minute}
			}
			f := New(Config{Fallback: srv, Handler: h, Logger: slog.New(slog.DiscardHandler)})
			defer f.Shutdown(context.Background())
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			tc := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}}
			if v == "front" {
				go f.ServeTLS(ln, tc)
			} else {
				go f.Serve(tls.NewListener(rawio.Listener(ln), tc)) // as ServeTLS, less the wrapper
			}
			tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			url := "https://" + ln.Addr().String() + "/"
			get := func() (*http.Response, error) { return client.Get(url) }
			if resp := answered(b, get); resp != nil && resp.ProtoMajor != 2 {
				b.Fatalf("served over %s", resp.Proto)
			}
			b.SetBytes(int64(len(answer)))
			b.SetParallelism(8) // 16 goroutines on 2 processors
			b.ResetTimer()
			hammer(b, get)
		})
	}
}

// BenchmarkPaceBody: chunked POSTs of 4 KiB (served by net/http) whose
// handler reads the body paced (a read deadline set before each read and
// cleared at the end) or as it is: what PaceBody costs the requests it
// applies to. Eight keep-alive connections.
func BenchmarkPaceBody(b *testing.B) {
	payload := strings.Repeat("x", 4<<10)
	for _, paced := range []bool{true, false} {
		b.Run(map[bool]string{true: "paced", false: "plain"}[paced], func(b *testing.B) {
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body := r.Body
				if paced {
					body = PaceBody(w, r, time.Minute)
				}
				n, _ := io.Copy(io.Discard, body)
				if n != int64(len(payload)) {
					http.Error(w, "short body", http.StatusBadRequest)
				}
			})
			_, addr := serveFront(b, h, nil)
			tr := &http.Transport{MaxIdleConnsPerHost: 8}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			b.SetParallelism(4) // 8 goroutines on 2 processors
			b.ResetTimer()
			hammer(b, func() (*http.Response, error) {
				// A reader of unknown length: sent chunked.
				return client.Post("http://"+addr+"/", "text/plain", io.MultiReader(strings.NewReader(payload)))
			})
		})
	}
}

// BenchmarkFrontUpload: POSTs of 64 KiB of known length, answered by the
// front itself, 8 keep-alive connections: the body's reads that wait for
// the connection are paced (a read deadline each).
func BenchmarkFrontUpload(b *testing.B) {
	payload := strings.Repeat("x", 64<<10)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n, _ := io.Copy(io.Discard, r.Body); n != int64(len(payload)) {
			http.Error(w, "short body", http.StatusBadRequest)
		}
	})
	f, addr := serveFront(b, h, nil)
	tr := &http.Transport{MaxIdleConnsPerHost: 8}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	b.SetBytes(int64(len(payload)))
	b.SetParallelism(4)
	b.ResetTimer()
	hammer(b, func() (*http.Response, error) {
		return client.Post("http://"+addr+"/", "text/plain", strings.NewReader(payload))
	})
	if f.Served() == 0 {
		b.Error("the front answered none itself")
	}
}

// hammer sends requests with do from b's parallel goroutines until b.N
// are answered.
func hammer(b *testing.B, do func() (*http.Response, error)) {
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if answered(b, do) == nil {
				return
			}
		}
	})
}

// answered sends a request with do and reads its answer, which must be
// a 200; nil (and b fails) if it is not.
func answered(b *testing.B, do func() (*http.Response, error)) *http.Response {
	resp, err := do()
	if err != nil {
		b.Error(err)
		return nil
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Errorf("status %d", resp.StatusCode)
		return nil
	}
	return resp
}
