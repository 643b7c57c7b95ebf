package rawio

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pair returns a loopback connection's two ends, the server's wrapped
// when raw.
func pair(t testing.TB, raw bool) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if raw {
		ln = Listener(ln)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

func TestWrapped(t *testing.T) {
	if !supported {
		t.Skip("no raw calls on this platform")
	}
	s, _ := pair(t, true)
	if _, ok := s.(*conn); !ok {
		t.Fatalf("accepted %T, want a raw conn", s)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Fatal("a pipe was wrapped")
	}
	// FROST_RAWIO=0
	enabled = false
	defer func() { enabled = true }()
	s, _ = pair(t, true)
	if _, ok := s.(*net.TCPConn); !ok {
		t.Fatalf("accepted %T with raw calls off, want the *net.TCPConn", s)
	}
}

// TestEcho sends 8 MiB each way through raw ends on both sides, so that
// writes fill the socket buffers, come back EAGAIN or partial, and wait
// in the poller.
func TestEcho(t *testing.T) {
	s, c := pair(t, true)
	c = Wrap(c)
	want := make([]byte, 8<<20)
	rand.Read(want)
	go func() {
		// Echo with a small buffer: the client's writes get ahead.
		buf := make([]byte, 1500)
		io.CopyBuffer(onlyWriter{s}, onlyReader{s}, buf)
		s.(interface{ CloseWrite() error }).CloseWrite()
	}()
	errc := make(chan error, 1)
	go func() {
		n, err := c.Write(want)
		if err == nil && n != len(want) {
			err = io.ErrShortWrite
		}
		c.(interface{ CloseWrite() error }).CloseWrite()
		errc <- err
	}()
	got, err := io.ReadAll(onlyReader{c})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("echoed %d bytes, not the %d sent", len(got), len(want))
	}
}

// onlyReader and onlyWriter hide ReadFrom and WriteTo: the copies must
// go through Read and Write.
type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }

func TestReadDeadline(t *testing.T) {
	for _, raw := range []bool{false, true} {
		s, _ := pair(t, raw)
		s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		n, err := s.Read(make([]byte, 10))
		var ne net.Error
		if n != 0 || !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("raw %v: read past its deadline: %d, %v", raw, n, err)
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "read" || oe.Net != "tcp" {
			t.Fatalf("raw %v: %#v, not a read's OpError", raw, err)
		}
	}
}

func TestWriteDeadline(t *testing.T) {
	s, _ := pair(t, true)
	// The client reads nothing: the buffers fill, the write waits, then
	// times out having written part.
	s.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	big := make([]byte, 64<<20)
	n, err := s.Write(big)
	if n == 0 || n == len(big) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past its deadline: %d of %d, %v", n, len(big), err)
	}
}

func TestCloseWhileReading(t *testing.T) {
	s, _ := pair(t, true)
	errc := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 10))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	s.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on a closed conn: %v, want net.ErrClosed", err)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a closed conn: %v, want net.ErrClosed", err)
	}
}

func TestEOFAndReset(t *testing.T) {
	s, c := pair(t, true)
	c.Write([]byte("bye"))
	c.Close()
	b := make([]byte, 10)
	if n, err := s.Read(b); n != 3 || err != nil {
		t.Fatalf("read %d, %v; want 3 bytes", n, err)
	}
	if n, err := s.Read(b); n != 0 || err != io.EOF {
		t.Fatalf("read %d, %v; want io.EOF", n, err)
	}
	if n, err := s.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty read: %d, %v", n, err)
	}

	s, c = pair(t, true)
	c.(*net.TCPConn).SetLinger(0) // close with a reset
	c.Close()
	_, err := s.Read(b)
	var se *os.SyscallError
	if !errors.Is(err, syscall.ECONNRESET) || !errors.As(err, &se) || se.Syscall != "read" {
		t.Fatalf("read after a reset: %v, want read's ECONNRESET", err)
	}
}

// TestConcurrent has several goroutines read and write one connection
// at once (run with -race): each direction's calls take turns.
func TestConcurrent(t *testing.T) {
	s, c := pair(t, true)
	const writers, each = 4, 2000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			msg := bytes.Repeat([]byte{byte('a' + w)}, 64)
			for range each {
				if _, err := s.Write(msg); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	go func() { wg.Wait(); s.(interface{ CloseWrite() error }).CloseWrite() }()
	// Two raw readers of the client's end.
	c = Wrap(c)
	var mu sync.Mutex
	counts := map[byte]int{}
	var rg sync.WaitGroup
	for range 2 {
		rg.Go(func() {
			b := make([]byte, 64)
			for {
				n, err := c.Read(b)
				mu.Lock()
				for _, x := range b[:n] {
					counts[x]++
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	rg.Wait()
	for w := range writers {
		if got := counts[byte('a'+w)]; got != 64*each {
			t.Errorf("writer %d: %d bytes arrived, want %d", w, got, 64*each)
		}
	}
}

// cpuTime is the process's CPU time so far, user and system, in ns.
func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkEcho serves an echo over loopback connections, its calls
// plain (net) or raw, to a client in another process (this test binary
// again, plain) that sends 100 bytes and reads them back, on one
// connection and on 16 at once: the two processes share the machine's
// cores, as a node and its clients do. cpu-ns/op is the echoing
// process's CPU time per exchange.
func BenchmarkEcho(b *testing.B) {
	for _, conns := range []int{1, 16} {
		for _, v := range []struct {
			name string
			raw  bool
		}{{"net", false}, {"raw", true}} {
			b.Run(fmt.Sprintf("%s/conns-%d", v.name, conns), func(b *testing.B) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				defer ln.Close()
				if v.raw {
					ln = Listener(ln)
				}
				go func() {
					for {
						c, err := ln.Accept()
						if err != nil {
							return
						}
						go echo(c)
					}
				}()
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), fmt.Sprintf("RAWIO_PING=%s,%d,%d", ln.Addr(), conns, b.N))
				cmd.Stderr = os.Stderr
				start := cpuTime()
				b.ResetTimer()
				if err := cmd.Run(); err != nil {
					b.Fatalf("client: %v", err)
				}
				b.StopTimer()
				b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// TestMain is, with RAWIO_PING=ADDR,CONNS,N, BenchmarkEcho's client:
// N exchanges over CONNS connections to ADDR.
func TestMain(m *testing.M) {
	arg := os.Getenv("RAWIO_PING")
	if arg == "" {
		os.Exit(m.Run())
	}
	var addr string
	var conns, total int
	if f := strings.Split(arg, ","); len(f) == 3 {
		addr = f[0]
		conns, _ = strconv.Atoi(f[1])
		total, _ = strconv.Atoi(f[2])
	}
	var wg sync.WaitGroup
	failed := make(chan error, conns)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		n := total/conns + min(1, max(0, total%conns-i))
		wg.Go(func() {
			defer c.Close()
			msg := make([]byte, 100)
			for range n {
				if _, err := c.Write(msg); err != nil {
					failed <- err
					return
				}
				if _, err := io.ReadFull(c, msg); err != nil {
					failed <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(failed)
	if err := <-failed; err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// echo sends back what it reads, 100 bytes at a time.
func echo(c net.Conn) {
	buf := make([]byte, 100)
	for {
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}
