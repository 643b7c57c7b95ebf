// Command wake measures freeze and thaw over a real frost server, as a user
// sees them, and prints a Markdown report:
//
//  1. Wake latency, frozen → first response byte over HTTP, for each guest
//     given, against two baselines measured in the same run on the same
//     server: a warm request (the app is live) and a cold boot (the app is
//     frozen and its snapshot is gone, so init runs again: the node's
//     fallback path). Iterations interleave the three kinds to spread
//     machine noise; every response is checked to be the boot kind it
//     claims (Server-Timing) and a 200.
//  2. Memory: the server's RSS with no app deployed, with N session apps
//     deployed and live (one request each), and with the same N frozen.
//
// It starts its own servers from the frost binary named by -frost, on
// loopback ports and throwaway data directories.
//
//	go run ./bench/wake -frost bin/frost -guests build/guests -n 300 -apps 1000
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/bench/internal/frostproc"
	"github.com/frostdev/frost/bench/internal/stats"
)

func main() {
	frost := flag.String("frost", "bin/frost", "the frost binary")
	guests := flag.String("guests", "build/guests", "directory of the guest modules")
	names := flag.String("wake", "hello-c,go-httpwasm,heavy", "guests whose wake latency to measure (NAME.wasm in -guests)")
	n := flag.Int("n", 300, "wake iterations of each kind per guest")
	apps := flag.Int("apps", 1000, "session apps for the memory figure (0 to skip)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("wake: ")

	ctx := context.Background()
	if list := strings.Split(*names, ","); *names != "" && *n > 0 {
		s, err := start(ctx, *frost)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("### Wake latency over HTTP (frozen → first byte)")
		fmt.Println()
		fmt.Printf("%d iterations of each kind per guest, interleaved; µs.\n\n", *n)
		fmt.Println("| guest | warm p50 / p99 | thaw p50 / p99 | cold p50 / p99 | thaw − warm (p50 / p99) | cold ÷ thaw (p50 / p99) |")
		fmt.Println("|---|---|---|---|---|---|")
		for _, g := range list {
			r, err := s.wake(ctx, g, filepath.Join(*guests, g+".wasm"), *n)
			if err != nil {
				s.Stop()
				log.Fatalf("%s: %v", g, err)
			}
			fmt.Println(r.row(g))
		}
		s.Stop()
		fmt.Println()
	}
	if *apps > 0 {
		if err := memory(ctx, *frost, filepath.Join(*guests, "hello-c.wasm"), *apps); err != nil {
			log.Fatal(err)
		}
	}
}

// server is a running frost server.
type server struct{ *frostproc.Server }

// start runs `frost server` and waits until it is ready.
func start(ctx context.Context, bin string) (*server, error) {
	s, err := frostproc.Start(ctx, bin)
	if err != nil {
		return nil, err
	}
	return &server{s}, nil
}

// get requests / of app and returns the time to the first response byte
// and the boot kind the server reports. The body is read to the end.
func (s *server) get(ctx context.Context, app string) (time.Duration, string, error) {
	var start, first time.Time
	trace := &httptrace.ClientTrace{GotFirstResponseByte: func() { first = time.Now() }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), "GET", "http://"+app+".localhost/", nil)
	if err != nil {
		return 0, "", err
	}
	start = time.Now()
	resp, err := s.Client.Do(req)
	if err != nil {
		return 0, "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, "", err
	}
	if resp.StatusCode != 200 {
		return 0, "", fmt.Errorf("%s: %s %q", app, resp.Status, body)
	}
	_, boot, _ := strings.Cut(resp.Header.Get("Server-Timing"), "boot;desc=")
	boot, _, _ = strings.Cut(boot, ",")
	return first.Sub(start), boot, nil
}

// result holds the latencies of one guest.
type result struct{ warm, thaw, cold []time.Duration }

// wake deploys the guest and measures n wakes of each kind.
func (s *server) wake(ctx context.Context, name, path string, n int) (*result, error) {
	d, err := s.API.DeployFile(ctx, name, path, api.DeployRequest{Idle: api.Duration(time.Hour)})
	if err != nil {
		return nil, err
	}
	snapDir := filepath.Join(s.Data, "snapshots", d.Release)
	r := &result{}
	// One request of each kind first, unmeasured: the first thaw reads a
	// freshly written snapshot, the first cold boot a fresh compile cache.
	for i := -1; i < n; i++ {
		for _, kind := range []string{"warm", "thaw", "cold"} {
			if kind == "warm" {
				if _, _, err := s.get(ctx, name); err != nil { // make sure it is live
					return nil, err
				}
			} else {
				if _, err := s.API.Freeze(ctx, name); err != nil {
					return nil, err
				}
				if kind == "cold" {
					if err := os.RemoveAll(snapDir); err != nil {
						return nil, err
					}
				}
			}
			lat, boot, err := s.get(ctx, name)
			if err != nil {
				return nil, err
			}
			if boot != kind {
				return nil, fmt.Errorf("a %s request reported boot %q", kind, boot)
			}
			if i < 0 {
				continue
			}
			switch kind {
			case "warm":
				r.warm = append(r.warm, lat)
			case "thaw":
				r.thaw = append(r.thaw, lat)
			default:
				r.cold = append(r.cold, lat)
			}
		}
	}
	return r, s.API.DeleteApp(ctx, name)
}

func us(d time.Duration) string { return strconv.FormatFloat(float64(d.Nanoseconds())/1e3, 'f', 0, 64) }

func (r *result) row(name string) string {
	w50, w99 := stats.Percentile(r.warm, 50), stats.Percentile(r.warm, 99)
	t50, t99 := stats.Percentile(r.thaw, 50), stats.Percentile(r.thaw, 99)
	c50, c99 := stats.Percentile(r.cold, 50), stats.Percentile(r.cold, 99)
	return fmt.Sprintf("| %s | %s / %s | %s / %s | %s / %s | %s / %s | %.1f× / %.1f× |", name,
		us(w50), us(w99), us(t50), us(t99), us(c50), us(c99), us(t50-w50), us(t99-w99),
		float64(c50)/float64(t50), float64(c99)/float64(t99))
}

// memory deploys apps session apps of the module on a fresh server and
// reports its RSS before, with them live and with them frozen.
func memory(ctx context.Context, bin, module string, apps int) error {
	s, err := start(ctx, bin)
	if err != nil {
		return err
	}
	defer s.Stop()
	time.Sleep(time.Second)
	none, err := s.RSS()
	if err != nil {
		return err
	}
	begin := time.Now()
	for i := 0; i < apps; i++ {
		name := fmt.Sprintf("s%d", i)
		if _, err := s.API.DeployFile(ctx, name, module, api.DeployRequest{Mode: "session", Idle: api.Duration(time.Hour)}); err != nil {
			return fmt.Errorf("deploy %s: %w", name, err)
		}
		if _, _, err := s.get(ctx, name); err != nil {
			return err
		}
	}
	deployed := time.Since(begin)
	time.Sleep(time.Second)
	live, err := s.RSS()
	if err != nil {
		return err
	}
	for i := 0; i < apps; i++ {
		d, err := s.API.Freeze(ctx, fmt.Sprintf("s%d", i))
		if err != nil {
			return err
		}
		if d.State != "frozen" {
			return fmt.Errorf("%s is %s after a freeze", d.Name, d.State)
		}
	}
	// The server hands freed memory back within a few seconds of freezes
	// (node.returnMemory); measure after that.
	time.Sleep(7 * time.Second)
	frozen, err := s.RSS()
	if err != nil {
		return err
	}
	// Every app still answers: a thaw each.
	for i := 0; i < apps; i++ {
		_, boot, err := s.get(ctx, fmt.Sprintf("s%d", i))
		if err != nil {
			return err
		}
		if boot != "thaw" {
			return fmt.Errorf("s%d woke %q after its freeze, want thaw", i, boot)
		}
	}
	mib := func(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) }
	fmt.Println("### Memory: session apps, live and frozen")
	fmt.Println()
	fmt.Printf("%d session apps of %s (deployed and given one request each in %s), server RSS:\n\n", apps, filepath.Base(module), deployed.Round(time.Second))
	fmt.Println("| state | RSS MiB | per app KiB |")
	fmt.Println("|---|---|---|")
	fmt.Printf("| none deployed | %s | |\n", mib(none))
	fmt.Printf("| %d live | %s | %.0f |\n", apps, mib(live), float64(live-none)/1024/float64(apps))
	fmt.Printf("| %d frozen | %s | %.0f |\n", apps, mib(frozen), float64(frozen-none)/1024/float64(apps))
	fmt.Println()
	return nil
}
