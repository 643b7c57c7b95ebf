package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/frostdev/frost/bench/internal/stats"
)

// tlsSample is one request over a new TLS connection.
type tlsSample struct {
	total     time.Duration // dial start → response body read
	handshake time.Duration // dial start → handshake done
	boot      string        // Server-Timing boot;desc
	wake      float64       // Server-Timing wake;dur, ms (-1: absent)
	start     float64       // Server-Timing start;dur, ms
}

// prewarm is section 2's figures.
type prewarm struct {
	app     string
	a, b, c []tlsSample // SNI names the frozen app / names no app / app live
	n       int
	mode    string
	pause   time.Duration
	rtt     time.Duration // emulated client round trip (0: loopback)
}

// measurePrewarm deploys heavy and, n times each, sends one GET over a
// new TLS connection to the gateway: A, the app frozen (frost freeze) and
// the TLS server name naming it (the gateway has its node wake it during
// the handshake); B, frozen, the server name naming no app (no prewarm);
// C, the app live (the floor: a new TLS connection and a warm request).
// Every sample comes after the same pause, since one after a pause is
// slower than one straight after another; the pause also keeps A samples
// over a second apart, as the gateway prewarms an app at most once a
// second.
func measurePrewarm(ctx context.Context, c *cluster, module, mode string, n int, pause, rtt time.Duration) (*prewarm, error) {
	const app = "heavy"
	flags := []string{"--idle", "1h"}
	if mode != "" {
		flags = append(flags, "--mode", mode)
	}
	if err := c.deploy(app, module, flags...); err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(c.gw.ca)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate", c.gw.ca)
	}
	r := &prewarm{app: app, n: n, mode: mode, pause: pause, rtt: rtt}
	if r.mode == "" {
		r.mode = "request (the default)"
	}
	host := app + "." + domain
	var last time.Time
	// The first round is not counted: the first thaw reads a freshly
	// written snapshot.
	for i := -1; i < n; i++ {
		for _, v := range []struct {
			sni    string
			frozen bool
			to     *[]tlsSample
		}{{host, true, &r.a}, {domain, true, &r.b}, {domain, false, &r.c}} {
			if v.frozen {
				d, err := c.api.Freeze(ctx, app)
				if err != nil {
					return nil, fmt.Errorf("freeze %s: %w", app, err)
				}
				if d.State != "frozen" {
					return nil, fmt.Errorf("%s is %q after frost freeze, want frozen", app, d.State)
				}
			}
			time.Sleep(time.Until(last.Add(r.pause)))
			last = time.Now()
			s, err := tlsGet(ctx, c.gw.https, v.sni, host, roots, rtt)
			if err != nil {
				return nil, err
			}
			if want := map[bool]string{true: "thaw", false: "warm"}[v.frozen]; v.sni == domain && s.boot != want {
				return nil, fmt.Errorf("GET %s (frozen: %v) reported boot %q, want %s", host, v.frozen, s.boot, want)
			}
			if i >= 0 {
				*v.to = append(*v.to, s)
			}
		}
	}
	return r, nil
}

// tlsGet dials addr, handshakes with server name sni (trusting roots),
// sends GET / with Host host over HTTP/1.1 and reads the whole response.
//
// With rtt > 0 the client is emulated as that far away: each of its
// writes (a flight of the handshake, the request) leaves only after rtt,
// one round trip's worth of network time per flight, during which the
// machine's CPUs are free, as they are for a real remote client.
func tlsGet(ctx context.Context, addr, sni, host string, roots *x509.CertPool, rtt time.Duration) (tlsSample, error) {
	var s tlsSample
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	t0 := time.Now()
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return s, err
	}
	defer raw.Close()
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	if rtt > 0 {
		raw = &distantConn{Conn: raw, rtt: rtt}
	}
	conn := tls.Client(raw, &tls.Config{ServerName: sni, RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if err := conn.HandshakeContext(ctx); err != nil {
		return s, fmt.Errorf("TLS handshake as %s: %w", sni, err)
	}
	s.handshake = time.Since(t0)
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n"); err != nil {
		return s, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return s, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	s.total = time.Since(t0)
	if err != nil {
		return s, err
	}
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("GET %s over TLS (SNI %s): %s %q", host, sni, resp.Status, body)
	}
	var dur map[string]float64
	s.boot, dur = serverTiming(resp.Header.Get("Server-Timing"))
	s.wake, s.start = -1, dur["start"]
	if w, ok := dur["wake"]; ok {
		s.wake = w
	}
	return s, nil
}

func (r *prewarm) print() {
	if r.rtt > 0 {
		fmt.Printf("### SNI pre-warm, the client %s away (emulated)\n\n", r.rtt)
		fmt.Printf("As below, but each client write (handshake flight, request) leaves %s late: network time during which the CPUs are free.\n\n", r.rtt)
	} else {
		fmt.Println("### SNI pre-warm: a frozen app's first request over a new TLS connection")
		fmt.Println()
	}
	fmt.Printf("heavy (a guest with an expensive init; a wake thaws its post-init snapshot), mode %s. Each sample: a new TLS connection to the gateway's HTTPS listener (development CA trusted, HTTP/1.1) and one GET with Host %s.%s, timed from dial start to the response read in full. "+
		"A: the app frozen by `frost freeze`, TLS server name %s.%s, so the gateway asks the app's node to wake it during the handshake. B: frozen, server name %s (the certificate covers it; it names no app: no pre-warm). C: the app live, server name %s (the floor). "+
		"%d rounds of A, B, C; every sample after the same %s pause. Server-Timing as the node reported it. ms.\n\n",
		r.mode, r.app, domain, r.app, domain, domain, domain, r.n, r.pause)
	fmt.Println("| variant | total p50 / p99 | handshake p50 | after the handshake p50 | wake;dur p50 (samples reporting it) | start;dur p50 | boot reported |")
	fmt.Println("|---|---|---|---|---|---|---|")
	total := func(s tlsSample) time.Duration { return s.total }
	row := func(name string, ss []tlsSample) {
		var wakes []float64
		boots := map[string]int{}
		for _, s := range ss {
			if s.wake >= 0 {
				wakes = append(wakes, s.wake)
			}
			boots[s.boot]++
		}
		wake := "—"
		if len(wakes) > 0 {
			wake = fmt.Sprintf("%.2f (%d of %d)", stats.Median(wakes), len(wakes), len(ss))
		}
		fmt.Printf("| %s | %s / %s | %s | %s | %s | %.3f | %s |\n", name,
			ms(pctDur(ss, 50, total)), ms(pctDur(ss, 99, total)),
			ms(pctDur(ss, 50, func(s tlsSample) time.Duration { return s.handshake })),
			ms(pctDur(ss, 50, func(s tlsSample) time.Duration { return s.total - s.handshake })),
			wake, median(ss, func(s tlsSample) float64 { return s.start }), counts(boots))
	}
	row("A: frozen, SNI names the app (pre-warm)", r.a)
	row("B: frozen, SNI names no app", r.b)
	row("C: live, SNI names no app", r.c)
	fmt.Println()
	a, b, c := pctDur(r.a, 50, total), pctDur(r.b, 50, total), pctDur(r.c, 50, total)
	var bWakes, diffs []float64
	done := 0 // A samples whose wake was over before the request needed the app
	for i := range r.b {
		if r.b[i].wake >= 0 {
			bWakes = append(bWakes, r.b[i].wake)
		}
		diffs = append(diffs, float64(r.b[i].total-r.a[i].total)/1e6)
		if r.a[i].start < 0.1 {
			done++
		}
	}
	saving := float64(b-a) / 1e6
	fmt.Printf("Saving B − A: **%.2f ms** at the median (median of the paired differences: %.2f ms).", saving, stats.Median(diffs))
	if len(bWakes) > 0 {
		wake := stats.Median(bWakes)
		fmt.Printf(" The median wake without pre-warm (B's wake;dur) is %.2f ms: the pre-warm hides **%.0f%%** of a wake.", wake, 100*saving/wake)
	}
	fmt.Printf(" As the client sees it, a wake costs B − C = %.2f ms; with the pre-warm A − C = %.2f ms is left (%.0f%% hidden).", float64(b-c)/1e6, float64(a-c)/1e6, 100*float64(b-a)/float64(b-c))
	aStart, bStart := median(r.a, func(s tlsSample) float64 { return s.start }), median(r.b, func(s tlsSample) float64 { return s.start })
	fmt.Printf(" At the node, start;dur (from the request's arrival to its instance ready, so any wait for a wake included) is %.2f ms for A against %.2f ms for B: the pre-warm spares the request %.2f ms of waiting there, and in %d of %d A samples the wake was over before the request arrived (start;dur < 0.1 ms). Every A request still reports boot thaw and the whole wake;dur, though part or all of that wake happened before it arrived.\n\n",
		aStart, bStart, bStart-aStart, done, len(r.a))
}

// counts formats a tally as "thaw 30, warm 2".
func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += ", "
		}
		if k == "" {
			s += fmt.Sprintf("none %d", m[k])
		} else {
			s += fmt.Sprintf("%s %d", k, m[k])
		}
	}
	return s
}

// distantConn delays every write by rtt: a client one round trip away.
type distantConn struct {
	net.Conn
	rtt time.Duration
}

func (c *distantConn) Write(b []byte) (int, error) {
	time.Sleep(c.rtt)
	return c.Conn.Write(b)
}
