package main

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// failoverRun is one kill -9 of the app's node under load.
type failoverRun struct {
	victim   string
	left     time.Duration // kill → gone from the gateway's /v1/nodes
	rejoined time.Duration // restart (exec) → listed again
	ok       int64
	failed   int64
	okAfter  int64             // succeeded after the kill
	why      map[string]int    // failures by kind
	slowest  time.Duration     // the slowest request of the run, or the oldest still waiting at its end
	held     int               // requests still waiting at the end of the run, sent before the node left
	byNode   map[string]*int64 // successes after the kill, by Frost-Node
}

// failover is section 3's figures: the node killed (SIGKILL), or frozen
// (SIGSTOP: it answers nothing and closes nothing, as a machine without
// power or network; killed once out of the member list).
type failover struct {
	runs          []failoverRun
	clients       int
	before, after time.Duration
	sig           syscall.Signal
}

// measureFailover sends sig (SIGKILL or SIGSTOP) to hello's node under
// load through the gateway, runs times, restarting it (same name and
// data) in between.
func measureFailover(ctx context.Context, c *cluster, sig syscall.Signal, runs, clients int, before, after time.Duration) (*failover, error) {
	f := &failover{clients: clients, before: before, after: after, sig: sig}
	hc := &http.Client{Timeout: 10 * time.Second}
	for range runs {
		resp, body, err := get(ctx, hc, c.gw.http, "hello")
		if err != nil {
			return nil, err
		}
		victim := c.node(resp.Header.Get("Frost-Node"))
		if resp.StatusCode != http.StatusOK || victim == nil {
			return nil, fmt.Errorf("hello through the gateway: %s from node %q: %q", resp.Status, resp.Header.Get("Frost-Node"), body)
		}
		r, err := killUnderLoad(ctx, c, victim, sig, clients, before, after)
		if err != nil {
			return nil, err
		}
		// Back with the same name and data directory, for the next run
		// and for a whole cluster at the end.
		start := time.Now()
		if err := c.restart(victim); err != nil {
			return nil, err
		}
		if _, err := c.waitListed(ctx, victim.name, true, 30*time.Second); err != nil {
			return nil, err
		}
		r.rejoined = time.Since(start)
		f.runs = append(f.runs, r)
	}
	return f, nil
}

// killUnderLoad runs clients goroutines of GETs to hello through the
// gateway; after before, sends victim sig (SIGKILL or SIGSTOP), waits
// until the gateway no longer lists it (polling every 20ms), and keeps
// the load on for after more. A stopped victim is killed then.
func killUnderLoad(ctx context.Context, c *cluster, victim *proc, sig syscall.Signal, clients int, before, after time.Duration) (failoverRun, error) {
	r := failoverRun{victim: victim.name, why: map[string]int{}, byNode: map[string]*int64{}}
	for _, p := range c.nodes {
		r.byNode[p.name] = new(int64)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	defer hc.CloseIdleConnections()
	load, stop := context.WithCancel(ctx)
	defer stop()
	var (
		ok, failed, okAfter atomic.Int64
		killed              atomic.Bool
		mu                  sync.Mutex
		wg                  sync.WaitGroup
	)
	// When each client's request under way began (0: none), to see at
	// the end the ones still waiting: the run's end cuts them short.
	began := make([]atomic.Int64, clients)
	for i := range clients {
		wg.Go(func() {
			for load.Err() == nil {
				t0 := time.Now()
				began[i].Store(t0.UnixNano())
				resp, body, err := get(load, hc, c.gw.http, "hello")
				began[i].Store(0)
				d := time.Since(t0)
				if load.Err() != nil {
					return // cut short by the end of the run: not counted
				}
				mu.Lock()
				r.slowest = max(r.slowest, d)
				switch {
				case err != nil:
					r.why[failureKind(err.Error())]++
				case resp.StatusCode != http.StatusOK || body != "hello from frost\n":
					r.why[fmt.Sprintf("%d %s", resp.StatusCode, failureKind(body))]++
				}
				mu.Unlock()
				if err != nil || resp.StatusCode != http.StatusOK || body != "hello from frost\n" {
					failed.Add(1)
					continue
				}
				ok.Add(1)
				if killed.Load() {
					okAfter.Add(1)
					if n := r.byNode[resp.Header.Get("Frost-Node")]; n != nil {
						atomic.AddInt64(n, 1)
					}
				}
			}
		})
	}
	time.Sleep(before)
	kill := time.Now()
	killed.Store(true)
	victim.cmd.Process.Signal(sig)
	if sig == syscall.SIGKILL {
		<-victim.done
	}
	_, err := c.waitListed(ctx, victim.name, false, 30*time.Second)
	r.left = time.Since(kill)
	if err == nil {
		time.Sleep(after)
	}
	end := time.Now()
	for i := range began {
		if b := began[i].Load(); b != 0 && end.Sub(time.Unix(0, b)) > after {
			r.held++
			r.slowest = max(r.slowest, end.Sub(time.Unix(0, b)))
		}
	}
	stop()
	wg.Wait()
	if sig != syscall.SIGKILL {
		victim.cmd.Process.Signal(syscall.SIGKILL)
		<-victim.done
	}
	if err != nil {
		return r, err
	}
	r.ok, r.failed, r.okAfter = ok.Load(), failed.Load(), okAfter.Load()
	return r, nil
}

// failureKind shortens an error for the tally: its last clause.
func failureKind(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, ": "); i >= 0 && len(s)-i > 8 {
		s = s[i+2:]
	}
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

func (f *failover) print() {
	title, did, then := "kill -9 of the app's node", "SIGKILL", ""
	if f.sig != syscall.SIGKILL {
		title, did, then = "the app's node frozen (SIGSTOP)", "SIGSTOP (it answers nothing and closes nothing, as a machine without power or network would)", ", and the node is killed"
	}
	fmt.Printf("### Failover: %s under load through the gateway\n\n", title)
	fmt.Printf("%d goroutines of keep-alive GETs to hello through the gateway's HTTP listener (10 s client timeout); %s after the load starts, the node serving hello gets %s; the gateway's GET /v1/nodes is polled every 20 ms until it no longer lists the node; the load runs %s more%s. The node is then started again (same name, same data directory) and the bench waits until it is listed again. Requests cut short by the end of a run are not counted as failed; those then waiting longer than the load ran after the node left are counted as still waiting.\n\n",
		f.clients, f.before, did, f.after, then)
	fmt.Println("| run | node | signal → out of /v1/nodes ms | requests ok (after the signal, by node) | failed | failures | still waiting at the end | slowest request ms | restart → listed again ms |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for i, r := range f.runs {
		var nodes []string
		for _, name := range slices.Sorted(maps.Keys(r.byNode)) {
			if n := *r.byNode[name]; n > 0 {
				nodes = append(nodes, fmt.Sprintf("%s %d", name, n))
			}
		}
		why := "—"
		if len(r.why) > 0 {
			why = counts(r.why)
		}
		fmt.Printf("| %d | %s | %s | %d (%d: %s) | %d | %s | %d | %s | %s |\n", i+1, r.victim, ms(r.left), r.ok, r.okAfter, strings.Join(nodes, ", "), r.failed, why, r.held, ms(r.slowest), ms(r.rejoined))
	}
	left := median(f.runs, func(r failoverRun) float64 { return float64(r.left) })
	failed := median(f.runs, func(r failoverRun) float64 { return float64(r.failed) })
	okm := median(f.runs, func(r failoverRun) float64 { return float64(r.ok) })
	fmt.Println()
	slowest := median(f.runs, func(r failoverRun) float64 { return float64(r.slowest) })
	held := median(f.runs, func(r failoverRun) float64 { return float64(r.held) })
	fmt.Printf("Median: out of the gateway's member list **%s ms** after the signal (membership TTL 3 s); **%.0f failed** of %.0f requests a run, **%.0f still waiting** at the end (sent more than %s before it); the slowest request **%s ms** (one still waiting counts with its age).\n\n", ms(time.Duration(left)), failed, okm+failed, held, f.after, ms(time.Duration(slowest)))
}
