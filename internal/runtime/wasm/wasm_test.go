package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/runtime"
	"github.com/frostdev/frost/internal/testguest"
)

func load(t testing.TB, r *Runtime, guest string, limits registry.Limits, env map[string]string) runtime.Program {
	t.Helper()
	code, err := os.ReadFile(testguest.Path(t, guest))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(code)
	if limits.MemoryBytes == 0 {
		limits.MemoryBytes = 64 << 20
	}
	if limits.Timeout == 0 {
		limits.Timeout = 10 * time.Second
	}
	p, err := r.Load(context.Background(), runtime.Spec{
		Release: registry.Release{ID: guest, App: guest, Module: hex.EncodeToString(sum[:]), Limits: limits},
		Code:    code,
		Env:     env,
	})
	if err != nil {
		t.Fatalf("load %s: %v", guest, err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

func newRuntime(t testing.TB) *Runtime {
	r, err := New(Config{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func get(uri string) *runtime.Request {
	return &runtime.Request{Method: "GET", URI: uri, Proto: "HTTP/1.1", Host: "app.localhost", Header: http.Header{}, RemoteAddr: "127.0.0.1:1234"}
}

func TestInspect(t *testing.T) {
	r := newRuntime(t)
	cases := []struct {
		guest, shape string
		err          error
	}{
		{"hello-c", ShapeHTTPWasm, nil},
		{"go-httpwasm", ShapeHTTPWasm, nil},
		{"cgi", ShapeWAGI, nil},
		{"go-cgi", ShapeWAGI, nil},
		{"noshape", "", runtime.ErrUnsupportedShape},
		{"not-wasm", "", runtime.ErrInvalidCode},
		{"truncated", "", runtime.ErrInvalidCode},
	}
	for _, c := range cases {
		t.Run(c.guest, func(t *testing.T) {
			code, err := os.ReadFile(testguest.Path(t, c.guest))
			if err != nil {
				t.Fatal(err)
			}
			shape, err := r.Inspect(code)
			if !errors.Is(err, c.err) || shape != c.shape {
				t.Fatalf("Inspect = %q, %v; want %q, %v", shape, err, c.shape, c.err)
			}
		})
	}
}

func TestHTTPWasmBootsAndReuse(t *testing.T) {
	r := newRuntime(t)
	p := load(t, r, "hello-c", registry.Limits{}, nil)
	var boots []string
	for i := 0; i < 3; i++ {
		resp, tm, err := p.Handle(context.Background(), get("/"))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != 200 || string(resp.Body) != "hello from frost\n" {
			t.Fatalf("response %d %q", resp.Status, resp.Body)
		}
		boots = append(boots, tm.Boot.String())
		p.Release(resp)
	}
	if strings.Join(boots, ",") != "thaw,warm,warm" {
		t.Errorf("boots %v, want thaw then warm", boots)
	}
}

// TestHandleResponseOnlyAfterNext checks the http-wasm lifecycle: the host
// calls handle_response only when handle_request returned next=1, with the
// request context from the upper 32 bits; there is no next handler behind an
// app, so that answer is a 404.
func TestHandleResponseOnlyAfterNext(t *testing.T) {
	r := newRuntime(t)
	p := load(t, r, "probe", registry.Limits{}, nil)
	for _, c := range []struct {
		uri, called string
		status      int
	}{
		{"/", "", 200},
		{"/?next=1", "42,0", 404},
		{"/", "", 200}, // the same instance, reset: nothing carried over
	} {
		req := get(c.uri)
		req.RespHeader = http.Header{}
		resp, _, err := p.Handle(context.Background(), req)
		if err != nil {
			t.Fatalf("%s: %v", c.uri, err)
		}
		if got := resp.Header.Get("X-Handle-Response"); got != c.called || resp.Status != c.status {
			t.Errorf("%s: status %d, handle_response called with %q; want %d, %q", c.uri, resp.Status, got, c.status, c.called)
		}
		p.Release(resp)
	}
}

// TestResetRestoresEveryKindOfState drives the probe guest sequentially and
// concurrently: every request must find the post-init state.
func TestResetRestoresEveryKindOfState(t *testing.T) {
	r := newRuntime(t)
	p := load(t, r, "probe", registry.Limits{}, nil)
	var wg sync.WaitGroup
	errs := make(chan string, 1000)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				req := get("/")
				if i%10 == 3 {
					req.URI = "/?grow=1"
				}
				req.Header.Set("X-Secret", "s"+strings.Repeat("x", w+i))
				resp, _, err := p.Handle(context.Background(), req)
				if err != nil {
					errs <- err.Error()
					continue
				}
				if !strings.Contains(string(resp.Body), `"counter":0`) || strings.Contains(string(resp.Body), `"sx`) {
					errs <- string(resp.Body)
				}
				p.Release(resp)
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestCPULimit(t *testing.T) {
	r := newRuntime(t)
	p := load(t, r, "spin", registry.Limits{Timeout: 100 * time.Millisecond}, nil)
	start := time.Now()
	_, _, err := p.Handle(context.Background(), get("/?mode=forever"))
	if !errors.Is(err, runtime.ErrCPULimit) {
		t.Fatalf("err = %v, want ErrCPULimit", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stopped after %s", d)
	}
	resp, _, err := p.Handle(context.Background(), get("/?mode=work&n=100"))
	if err != nil || resp.Status != 200 {
		t.Fatalf("after a kill: %v", err)
	}
}

// TestCancelStopsGuest: a request whose context ends (its client went
// away) stops its guest long before the time limit would, fails with
// ErrCanceled, and leaves the program serving.
func TestCancelStopsGuest(t *testing.T) {
	r := newRuntime(t)
	p := load(t, r, "spin", registry.Limits{Timeout: time.Minute}, nil)
	ctx, cancel := context.WithCancelCause(context.Background())
	gone := errors.New("the client went away")
	time.AfterFunc(50*time.Millisecond, func() { cancel(gone) })
	_, _, err := p.Handle(ctx, get("/?mode=forever"))
	if !errors.Is(err, runtime.ErrCanceled) || !strings.Contains(err.Error(), gone.Error()) {
		t.Fatalf("err = %v, want ErrCanceled with its cause", err)
	}
	// Ended before it ran: no instance is taken.
	if _, _, err := p.Handle(ctx, get("/?mode=work&n=100")); !errors.Is(err, runtime.ErrCanceled) {
		t.Fatalf("canceled before: err = %v, want ErrCanceled", err)
	}
	// A context that ends after its call does not touch the next call
	// on the same instance.
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		resp, _, err := p.Handle(ctx, get("/?mode=work&n=1000"))
		cancel()
		if err != nil || resp.Status != 200 {
			t.Fatalf("request %d after a cancel: %v", i, err)
		}
		p.Release(resp)
	}
}

// TestCancelStopsSleepingGuest: a guest that sleeps (WASI poll_oneoff) is
// woken and stopped when its request's context ends, not at the end of
// its sleep.
func TestCancelStopsSleepingGuest(t *testing.T) {
	r := newRuntime(t)
	p := load(t, r, "go-cgi", registry.Limits{Timeout: 2 * time.Minute}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	done := make(chan error, 1)
	go func() {
		_, _, err := p.Handle(ctx, get("/sleep?d=1m"))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, runtime.ErrCanceled) {
			t.Fatalf("err = %v, want ErrCanceled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the sleeping guest was not stopped when its request's context ended")
	}
	resp, _, err := p.Handle(context.Background(), get("/sleep?d=1ms"))
	if err != nil || !strings.Contains(string(resp.Body), "slept 1ms") {
		t.Fatalf("after a cancel: %v", err)
	}
	p.Release(resp)
}

func TestCGI(t *testing.T) {
	r := newRuntime(t)
	p := load(t, r, "cgi", registry.Limits{}, map[string]string{"GREETING": "hey"})
	req := get("/a/b?c=d")
	req.Method = "POST"
	req.Body = []byte("payload")
	req.Header.Set("X-Test", "yes")
	req.Header.Set("Content-Type", "text/plain")
	resp, tm, err := p.Handle(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	body := string(resp.Body)
	for _, want := range []string{"method=POST", "path=/a/b", "query=c=d", "content_length=7", "x_test=yes", "GREETING=hey", "payload"} {
		if !strings.Contains(body, want) {
			t.Errorf("CGI output lacks %q:\n%s", want, body)
		}
	}
	if tm.Boot != runtime.BootCold {
		t.Errorf("boot %v", tm.Boot)
	}
	p.SetEnv(map[string]string{"GREETING": "changed"})
	resp, _, _ = p.Handle(context.Background(), get("/"))
	if !strings.Contains(string(resp.Body), "GREETING=changed") {
		t.Errorf("SetEnv not applied: %s", resp.Body)
	}
}

func TestParseCGI(t *testing.T) {
	cases := []struct {
		name, in string
		status   int
		body     string
		wantErr  bool
	}{
		{"status", "Status: 201 Created\nContent-Type: text/plain\n\nhi", 201, "hi", false},
		{"crlf", "Content-Type: text/plain\r\n\r\nhello", 200, "hello", false},
		{"location", "Location: /x\n\n", 302, "", false},
		{"empty", "", 0, "", true},
		{"no blank line", "Content-Type: text/plain\nhello", 0, "", true},
		{"bad status", "Status: abc\n\n", 0, "", true},
		{"header continuation garbage", ": bad\n\n", 0, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := &runtime.Response{Header: http.Header{}}
			err := parseCGI([]byte(c.in), resp)
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v", err)
			}
			if err == nil && (resp.Status != c.status || string(resp.Body) != c.body) {
				t.Errorf("got %d %q", resp.Status, resp.Body)
			}
		})
	}
}

func FuzzParseCGI(f *testing.F) {
	f.Add([]byte("Status: 200 OK\nContent-Type: text/plain\n\nbody"))
	f.Add([]byte("Location: http://x/\r\n\r\n"))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		resp := &runtime.Response{Header: http.Header{}}
		if err := parseCGI(b, resp); err == nil && (resp.Status < 100 || resp.Status > 999) {
			t.Fatalf("accepted status %d", resp.Status)
		}
	})
}

// TestSpinningGuestDoesNotStallGC: Go cannot preempt a goroutine inside
// compiled guest code, so a spinning guest that never left it would block
// every stop-the-world phase of the garbage collector — and the whole
// process with it. The instrumented yields let a collection finish while the
// guest is still spinning.
func TestSpinningGuestDoesNotStallGC(t *testing.T) {
	r := newRuntime(t)
	p := load(t, r, "spin", registry.Limits{Timeout: 5 * time.Second}, nil)
	guestDone := make(chan error, 1)
	go func() {
		_, _, err := p.Handle(context.Background(), get("/?mode=forever"))
		guestDone <- err
	}()
	time.Sleep(100 * time.Millisecond)
	gcDone := make(chan struct{})
	go func() {
		goruntime.GC()
		goruntime.GC()
		close(gcDone)
	}()
	select {
	case <-gcDone:
	case err := <-guestDone:
		t.Fatalf("the guest ended (%v) before a garbage collection could finish", err)
	}
	if err := <-guestDone; !errors.Is(err, runtime.ErrCPULimit) {
		t.Fatalf("guest: %v", err)
	}
}

// TestTrappedInstanceIsRestoredAndReused: an instance whose call trapped
// serves the next request once restored (Boot warm, not a new
// instantiation), and that request finds the post-init state, not the
// secret the trapped one stored before it trapped.
func TestTrappedInstanceIsRestoredAndReused(t *testing.T) {
	r := newRuntime(t)
	p := load(t, r, "probe", registry.Limits{}, nil)
	if resp, _, err := p.Handle(context.Background(), get("/")); err != nil || resp.Status != 200 {
		t.Fatalf("first request: %v", err)
	}
	req := get("/?trap=1")
	req.Header.Set("X-Secret", "trapped-secret")
	if _, _, err := p.Handle(context.Background(), req); !errors.Is(err, runtime.ErrTrap) {
		t.Fatalf("?trap=1: %v, want ErrTrap", err)
	}
	resp, tm, err := p.Handle(context.Background(), get("/"))
	if err != nil || resp.Status != 200 {
		t.Fatalf("after the trap: %v", err)
	}
	if tm.Boot != runtime.BootWarm {
		t.Errorf("after the trap the request booted %v, want warm: the trapped instance was not reused", tm.Boot)
	}
	if body := string(resp.Body); strings.Contains(body, "trapped-secret") || !strings.Contains(body, `"counter":0`) {
		t.Errorf("after the trap the guest found %s, want the post-init state", body)
	}
	if s := p.Stats(); s.Instances != 1 {
		t.Errorf("%d instances, want the one reused", s.Instances)
	}
}
