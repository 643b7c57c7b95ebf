// Command neighbours measures what a hostile app costs the apps beside it:
// the latency of a well-behaved app (hello-c), alone and while clients keep
// a hostile guest busy on the same node (a loop that never calls the host, a
// loop of host calls, runaway recursion, a memory bomb, a body or headers
// written forever, and slowloris clients), with Frost's fair CPU scheduling
// on (the default), and for the loop also off (--long-runners -1): both
// servers started by this run on the same machine. For reference, the same
// measurement beside an honest app kept just as busy. Each kind is measured
// with one client keeping the hostile app busy (a hostile request is always
// running) and with as many as -clients says (two on a 2-core machine: the
// hostile app and its clients then take every core). The hostile clients
// run in a child process at nice 19, as clients on other machines would
// cost the node nothing. Each measurement
// beside a hostile app follows one of the app alone, and rounds repeat the
// whole set, to spread machine noise. It prints a Markdown report.
//
//	go run ./bench/neighbours -frost bin/frost -guests build/guests
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/bench/internal/frostproc"
	"github.com/frostdev/frost/bench/internal/stats"
)

func main() {
	frost := flag.String("frost", "bin/frost", "the frost binary")
	guests := flag.String("guests", "build/guests", "directory of the guest modules")
	n := flag.Int("n", 2000, "requests to the well-behaved app per measurement")
	rounds := flag.Int("rounds", 5, "rounds; each measures both servers alone and beside the spinners")
	clients := flag.String("clients", "1,2", "numbers of clients keeping the hostile app busy, comma-separated: one row each")
	only := flag.String("only", "", "measure only the hostile kinds whose description contains this")
	loadAddr := flag.String("load", "", "internal: run as the hostile clients' process against this address")
	loadApp := flag.String("load-app", "", "internal: the hostile app")
	loadPath := flag.String("load-path", "", "internal: the hostile request's path")
	loadWant := flag.Int("load-want", 0, "internal: the status the hostile requests must get")
	loadClients := flag.Int("load-clients", 1, "internal: hostile clients")
	flag.Parse()
	if *loadAddr != "" {
		load(*loadAddr, *loadApp, *loadPath, *loadWant, *loadClients)
		return
	}
	log.SetFlags(0)
	log.SetPrefix("neighbours: ")

	var ks []int
	for _, f := range strings.Split(*clients, ",") {
		k, err := strconv.Atoi(f)
		if err != nil || k < 1 {
			log.Fatalf("-clients: %q is not a positive number", f)
		}
		ks = append(ks, k)
	}
	maxClients := slices.Max(ks)

	ctx := context.Background()
	modes := []struct {
		name string
		args []string
	}{
		{"fair scheduling (default)", nil},
		{"no fair scheduling (--long-runners -1)", []string{"--long-runners", "-1"}},
	}
	servers := make([]*frostproc.Server, len(modes))
	for i, m := range modes {
		s, err := frostproc.Start(ctx, *frost, m.args...)
		if err != nil {
			log.Fatal(err)
		}
		defer s.Stop()
		for _, d := range []struct {
			app, module string
			limits      api.Limits
		}{
			{"spin", "spin", api.Limits{Timeout: api.Duration(200 * time.Millisecond), Concurrency: maxClients}},
			{"bomb", "membomb", api.Limits{MemoryBytes: 64 << 20, Concurrency: maxClients}},
			{"hello", "hello-c", api.Limits{}},
		} {
			if _, err := s.API.DeployFile(ctx, d.app, filepath.Join(*guests, d.module+".wasm"), api.DeployRequest{Limits: d.limits}); err != nil {
				log.Fatal(err)
			}
		}
		servers[i] = s
	}
	hostiles := []hostile{
		{"an honest app as busy (`spin ?mode=work&n=300000`, the reference)", "spin", "/?mode=work&n=300000", http.StatusOK, false},
		{"loop without host calls (`spin ?mode=forever`, 200 ms limit)", "spin", "/?mode=forever", http.StatusGatewayTimeout, true},
		{"loop of host calls (`spin ?mode=log`)", "spin", "/?mode=log", http.StatusGatewayTimeout, false},
		{"runaway recursion (`spin ?mode=recurse`)", "spin", "/?mode=recurse", http.StatusInternalServerError, false},
		{"memory bomb (`membomb ?mode=trap`, 64 MiB limit)", "bomb", "/?mode=trap", http.StatusInternalServerError, false},
		{"body forever (`spin ?mode=body`)", "spin", "/?mode=body", http.StatusBadGateway, false},
		{"headers forever (`spin ?mode=headers`)", "spin", "/?mode=headers", http.StatusBadGateway, false},
		{"200 slowloris connections", "", "", 0, false},
	}
	hostiles = slices.DeleteFunc(hostiles, func(h hostile) bool { return !strings.Contains(h.name, *only) })
	type result struct{ alone, beside []time.Duration }
	type row struct {
		h       hostile
		server  int // index in modes
		clients int
		results []result
		stopped int64
	}
	var rows []*row
	for _, k := range ks {
		for _, h := range hostiles {
			for i := range modes {
				if i > 0 && !h.compare || h.app == "" && k != ks[0] {
					continue
				}
				rows = append(rows, &row{h: h, server: i, clients: k})
			}
		}
	}
	for r := 0; r < *rounds; r++ {
		for _, rw := range rows {
			s := servers[rw.server]
			if _, err := measure(s, 200); err != nil { // warm up
				log.Fatal(err)
			}
			alone, err := measure(s, *n)
			if err != nil {
				log.Fatal(err)
			}
			stopped, beside, err := rw.h.beside(s, rw.clients, *n)
			if err != nil {
				log.Fatalf("%s: %v", rw.h.name, err)
			}
			rw.stopped += stopped
			rw.results = append(rw.results, result{alone, beside})
		}
	}

	fmt.Println("### A well-behaved app beside a hostile one")
	fmt.Println()
	fmt.Printf("hello-c, %d sequential requests per measurement, alone and then while clients keep the hostile app busy (each sends its next request as soon as the last is answered), or 200 slowloris connections are open; %d rounds; median over rounds; µs. The first row of each group is the reference: an honest app kept just as busy. The last column counts the hostile requests answered with the error their kind must get (504, 500 or 502; 200 for the honest app), or the slowloris connections the server closed.\n\n", *n, *rounds)
	fmt.Println("| hostile app, server | clients | alone p50 / p99 | beside it p50 / p99 | p99 beside ÷ alone | hostile requests stopped |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, rw := range rows {
		var a50, a99, b50, b99, ratio []float64
		for _, res := range rw.results {
			a50 = append(a50, us(stats.Percentile(res.alone, 50)))
			a99 = append(a99, us(stats.Percentile(res.alone, 99)))
			b50 = append(b50, us(stats.Percentile(res.beside, 50)))
			b99 = append(b99, us(stats.Percentile(res.beside, 99)))
			ratio = append(ratio, float64(stats.Percentile(res.beside, 99))/float64(stats.Percentile(res.alone, 99)))
		}
		clients := strconv.Itoa(rw.clients)
		if rw.h.app == "" {
			clients = "200 idle"
		}
		fmt.Printf("| %s, %s | %s | %.0f / %.0f | %.0f / %.0f | %.2f× (rounds: %s) | %d |\n", rw.h.name, modes[rw.server].name, clients,
			stats.Median(a50), stats.Median(a99), stats.Median(b50), stats.Median(b99), stats.Median(ratio), list(ratio), rw.stopped)
	}
}

// hostile is a kind of hostile traffic: k clients sending path to app, each
// request to be answered with want; with app "", slowloris connections.
type hostile struct {
	name      string
	app, path string
	want      int
	compare   bool // also measured on the server without fair scheduling
}

// measure sends n sequential requests to hello and returns their latencies.
func measure(s *frostproc.Server, n int) ([]time.Duration, error) {
	d := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if err := get(s, "hello", "/", http.StatusOK); err != nil {
			return nil, err
		}
		d = append(d, time.Since(start))
	}
	return d, nil
}

// beside measures hello while k clients keep the hostile app busy, and
// returns how many hostile requests got the answer they must get.
//
// The hostile clients run in a child process at the lowest CPU priority
// (nice 19), standing in for clients on other machines: in the same
// process, or at the same priority, the load generator's own CPU use on
// the shared cores would be measured as the hostile app's cost.
func (h hostile) beside(s *frostproc.Server, k, n int) (int64, []time.Duration, error) {
	if h.app == "" {
		return slowloris(s, 200, n)
	}
	self, err := os.Executable()
	if err != nil {
		return 0, nil, err
	}
	args := []string{self, "-load", s.HTTP, "-load-app", h.app, "-load-path", h.path, "-load-want", strconv.Itoa(h.want), "-load-clients", strconv.Itoa(k)}
	if nice, err := exec.LookPath("nice"); err == nil {
		args = append([]string{nice, "-n", "19"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, nil, err
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	time.Sleep(100 * time.Millisecond)
	d, err := measure(s, n)
	stdin.Close() // the load stops when its stdin closes
	if werr := cmd.Wait(); werr != nil && err == nil {
		err = fmt.Errorf("hostile clients: %v", werr)
	}
	stopped, _ := strconv.ParseInt(strings.TrimSpace(out.String()), 10, 64)
	return stopped, d, err
}

// load is the child process of beside: k clients send path to app at addr
// until stdin closes, then it prints how many were answered want.
func load(addr, app, path string, want, k int) {
	s := &frostproc.Server{HTTP: addr, Client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: k}}}
	var stop atomic.Bool
	var stopped atomic.Int64
	var wg sync.WaitGroup
	for range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if get(s, app, path, want) == nil {
					stopped.Add(1)
				}
			}
		}()
	}
	io.Copy(io.Discard, os.Stdin)
	stop.Store(true)
	wg.Wait()
	fmt.Println(stopped.Load())
}

// slowloris opens c connections that send a request's headers a byte every
// 100 ms, measures hello meanwhile, and returns how many of the connections
// the server had closed by the end.
func slowloris(s *frostproc.Server, c, n int) (int64, []time.Duration, error) {
	var closed atomic.Int64
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range c {
		conn, err := net.Dial("tcp", s.HTTP)
		if err != nil {
			return 0, nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			req := "GET / HTTP/1.1\r\nHost: hello.localhost\r\nX-Slow: " + strings.Repeat("a", 1<<16)
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				case <-tick.C:
				}
				if _, err := conn.Write([]byte{req[i%len(req)]}); err != nil {
					closed.Add(1)
					return
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	d, err := measure(s, n)
	close(done)
	wg.Wait()
	return closed.Load(), d, err
}

func get(s *frostproc.Server, app, path string, want int) error {
	req, _ := http.NewRequest("GET", "http://"+s.HTTP+path, nil)
	req.Host = app + ".localhost"
	resp, err := s.Client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("%s%s: %d, want %d", app, path, resp.StatusCode, want)
	}
	return nil
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func list(v []float64) string {
	out := ""
	for i, x := range v {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%.2f", x)
	}
	return out
}
