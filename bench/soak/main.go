// Command soak keeps a frost server under sustained mixed load for a
// while and reports whether its resources stay flat: `make soak`.
//
// Load: request-mode apps (the C http-wasm hello, the C CGI echo) and
// session-mode apps (the probe, which keeps state), hit by -clients
// clients in a loop, each request checked; every -cycle every session app
// is frozen (frost freeze), so the next request thaws it: thousands of
// freeze/thaw cycles in a run. Every -every the server's RSS, goroutines
// (go_goroutines on /metrics) and open files (/proc/PID/fd) are sampled.
//
// It prints the samples as a Markdown table and a verdict comparing the
// last third of the run with the first third (after a warm-up of one
// sample): RSS, goroutines and open files must not grow by more than
// -tolerance (default 10%, and goroutines and files by at most 16 above),
// and no request may fail. It exits 1 otherwise.
//
//	go run ./bench/soak -frost bin/frost -guests build/guests -duration 3m
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/bench/internal/frostproc"
)

type sample struct {
	at         time.Duration
	rss        int64
	goroutines int
	fds        int
	requests   int64
	thaws      int64
}

func main() {
	frost := flag.String("frost", "bin/frost", "the frost binary")
	guests := flag.String("guests", "build/guests", "directory of the guest modules")
	duration := flag.Duration("duration", 3*time.Minute, "how long to keep the load on")
	every := flag.Duration("every", 10*time.Second, "sampling interval")
	cycle := flag.Duration("cycle", 2*time.Second, "how often every session app is frozen")
	clients := flag.Int("clients", 8, "concurrent clients")
	sessions := flag.Int("sessions", 8, "session apps")
	tolerance := flag.Float64("tolerance", 0.10, "allowed growth, last third over first third")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("soak: ")

	ctx := context.Background()
	s, err := frostproc.Start(ctx, *frost)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Stop()

	deploy := func(name, file string, req api.DeployRequest) {
		if _, err := s.API.DeployFile(ctx, name, filepath.Join(*guests, file), req); err != nil {
			log.Fatalf("deploy %s: %v", name, err)
		}
	}
	deploy("hello", "hello-c.wasm", api.DeployRequest{})
	deploy("cgi", "cgi.wasm", api.DeployRequest{})
	var sessionApps []string
	for i := range *sessions {
		name := fmt.Sprintf("sess%d", i)
		deploy(name, "probe.wasm", api.DeployRequest{Mode: "session", Idle: api.Duration(time.Hour)})
		sessionApps = append(sessionApps, name)
	}
	targets := append([]string{"hello", "cgi"}, sessionApps...)

	var requests, failures, thaws atomic.Int64
	var firstErr atomic.Value
	loadCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for c := range *clients {
		wg.Go(func() {
			for i := c; loadCtx.Err() == nil; i++ {
				app := targets[i%len(targets)]
				req, _ := http.NewRequestWithContext(loadCtx, "POST", "http://"+app+".localhost/", strings.NewReader("soak"))
				resp, err := s.Client.Do(req)
				if err != nil {
					if loadCtx.Err() == nil {
						failures.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: %s", app, resp.Status))
					continue
				}
				if strings.HasPrefix(resp.Header.Get("Server-Timing"), "boot;desc=thaw") {
					thaws.Add(1)
				}
				requests.Add(1)
			}
		})
	}
	wg.Go(func() {
		t := time.NewTicker(*cycle)
		defer t.Stop()
		for {
			select {
			case <-loadCtx.Done():
				return
			case <-t.C:
			}
			for _, app := range sessionApps {
				if _, err := s.API.Freeze(loadCtx, app); err != nil && loadCtx.Err() == nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, "freeze "+app+": "+err.Error())
				}
			}
		}
	})

	start := time.Now()
	var samples []sample
	for {
		time.Sleep(*every)
		sm, err := measure(ctx, s)
		if err != nil {
			log.Fatal(err)
		}
		sm.at, sm.requests, sm.thaws = time.Since(start).Round(time.Second), requests.Load(), thaws.Load()
		samples = append(samples, sm)
		log.Printf("%v: RSS %d MiB, %d goroutines, %d files, %d requests, %d thaws", sm.at, sm.rss>>20, sm.goroutines, sm.fds, sm.requests, sm.thaws)
		if time.Since(start) >= *duration {
			break
		}
	}
	stop()
	wg.Wait()

	fmt.Printf("### Soak: %v of load, %d clients, %d session apps frozen every %v\n\n", *duration, *clients, *sessions, *cycle)
	fmt.Println("| t | RSS MiB | goroutines | open files | requests | thaws |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, sm := range samples {
		fmt.Printf("| %v | %d | %d | %d | %d | %d |\n", sm.at, sm.rss>>20, sm.goroutines, sm.fds, sm.requests, sm.thaws)
	}
	fmt.Println()
	ok := true
	if n := failures.Load(); n > 0 {
		ok = false
		fmt.Printf("- FAIL: %d requests or freezes failed, e.g. %v\n", n, firstErr.Load())
	}
	if len(samples) < 4 {
		log.Fatalf("only %d samples: run longer than 4 × -every", len(samples))
	}
	body := samples[1:] // the first sample is the warm-up
	third := max(1, len(body)/3)
	first, last := body[:third], body[len(body)-third:]
	check := func(what string, get func(sample) float64, slack float64) {
		a, b := medianOf(first, get), medianOf(last, get)
		growth := (b - a) / a
		verdict := "flat"
		if b > a*(1+*tolerance) && b-a > slack {
			verdict, ok = "GREW", false
		}
		fmt.Printf("- %s: median %.0f in the first third, %.0f in the last (%+.1f%%): %s\n", what, a, b, 100*growth, verdict)
	}
	check("RSS MiB", func(s sample) float64 { return float64(s.rss >> 20) }, 0)
	check("goroutines", func(s sample) float64 { return float64(s.goroutines) }, 16)
	check("open files", func(s sample) float64 { return float64(s.fds) }, 16)
	fmt.Printf("- %d requests served (%d thaws), %d failed\n", requests.Load(), thaws.Load(), failures.Load())
	if !ok {
		s.Stop()
		os.Exit(1)
	}
}

func medianOf(ss []sample, get func(sample) float64) float64 {
	vs := make([]float64, len(ss))
	for i, s := range ss {
		vs[i] = get(s)
	}
	slices.Sort(vs)
	return vs[len(vs)/2]
}

// measure reads the server's RSS, open files and goroutines.
func measure(ctx context.Context, s *frostproc.Server) (sample, error) {
	var sm sample
	var err error
	if sm.rss, err = s.RSS(); err != nil {
		return sm, err
	}
	if sm.fds, err = s.FDs(); err != nil {
		return sm, err
	}
	req, err := http.NewRequestWithContext(ctx, "GET", s.API.BaseURL()+"/metrics", nil)
	if err != nil {
		return sm, err
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return sm, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			sm.goroutines, err = strconv.Atoi(strings.TrimSpace(v))
			return sm, err
		}
	}
	return sm, fmt.Errorf("no go_goroutines on /metrics")
}
