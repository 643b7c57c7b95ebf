// Command neighbours measures what a hostile app costs the apps beside it:
// the latency of a well-behaved app (hello-c), alone and while clients keep
// a guest that spins forever (until its time limit) busy on the same node,
// with Frost's fair CPU scheduling on (the default) and off
// (--long-runners -1), both servers started by this run on the same
// machine. Rounds alternate between the servers and between alone and
// beside the spinners to spread machine noise. It prints a Markdown report.
//
//	go run ./bench/neighbours -frost bin/frost -guests build/guests
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/bench/internal/frostproc"
)

func main() {
	frost := flag.String("frost", "bin/frost", "the frost binary")
	guests := flag.String("guests", "build/guests", "directory of the guest modules")
	n := flag.Int("n", 1000, "requests to the well-behaved app per measurement")
	rounds := flag.Int("rounds", 3, "rounds; each measures both servers alone and beside the spinners")
	spinners := flag.Int("spinners", 2, "clients keeping the hostile app busy")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("neighbours: ")

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
		if _, err := s.API.DeployFile(ctx, "spin", filepath.Join(*guests, "spin.wasm"), api.DeployRequest{
			Limits: api.Limits{Timeout: api.Duration(200 * time.Millisecond), Concurrency: *spinners}}); err != nil {
			log.Fatal(err)
		}
		if _, err := s.API.DeployFile(ctx, "hello", filepath.Join(*guests, "hello-c.wasm"), api.DeployRequest{}); err != nil {
			log.Fatal(err)
		}
		servers[i] = s
	}
	type result struct{ alone, beside []time.Duration }
	results := make([][]result, len(modes)) // per mode, per round
	kills := make([]int64, len(modes))
	for r := 0; r < *rounds; r++ {
		for i, s := range servers {
			if _, err := measure(s, 200); err != nil { // warm up
				log.Fatal(err)
			}
			alone, err := measure(s, *n)
			if err != nil {
				log.Fatal(err)
			}
			k, beside, err := besideSpinners(s, *spinners, *n)
			if err != nil {
				log.Fatal(err)
			}
			kills[i] += k
			results[i] = append(results[i], result{alone, beside})
		}
	}

	fmt.Println("### A well-behaved app beside a hostile one")
	fmt.Println()
	fmt.Printf("hello-c, %d sequential requests per measurement, alone and while %d clients keep `spin ?mode=forever` (time limit 200 ms) busy; %d rounds, servers alternating; median over rounds; µs.\n\n", *n, *spinners, *rounds)
	fmt.Println("| server | alone p50 / p99 | beside the spinner p50 / p99 | p99 beside ÷ alone | hostile requests stopped |")
	fmt.Println("|---|---|---|---|---|")
	for i, m := range modes {
		var a50, a99, b50, b99, ratio []float64
		for _, res := range results[i] {
			a50 = append(a50, us(pct(res.alone, 50)))
			a99 = append(a99, us(pct(res.alone, 99)))
			b50 = append(b50, us(pct(res.beside, 50)))
			b99 = append(b99, us(pct(res.beside, 99)))
			ratio = append(ratio, float64(pct(res.beside, 99))/float64(pct(res.alone, 99)))
		}
		fmt.Printf("| %s | %.0f / %.0f | %.0f / %.0f | %.2f× (rounds: %s) | %d |\n", m.name,
			median(a50), median(a99), median(b50), median(b99), median(ratio), list(ratio), kills[i])
	}
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

// besideSpinners measures hello while k clients keep spin busy, and returns
// how many spin requests its time limit stopped.
func besideSpinners(s *frostproc.Server, k, n int) (int64, []time.Duration, error) {
	var stop atomic.Bool
	var kills atomic.Int64
	var wg sync.WaitGroup
	for range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if get(s, "spin", "/?mode=forever", http.StatusGatewayTimeout) == nil {
					kills.Add(1)
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	d, err := measure(s, n)
	stop.Store(true)
	wg.Wait()
	return kills.Load(), d, err
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

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

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
