package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// h2load runs h2load against the HTTPS listener at addr, for
// https://HOST/ (its TLS server name and :authority), and reads its
// report and its per-request log (h2load reports no percentiles).
func h2load(ctx context.Context, o wrkOptions, addr, host string, d time.Duration) (wrkResult, error) {
	logFile, err := os.CreateTemp("", "h2load-*.log")
	if err != nil {
		return wrkResult{}, err
	}
	logFile.Close()
	defer os.Remove(logFile.Name())
	cmd := exec.CommandContext(ctx, o.h2load, "-t"+strconv.Itoa(o.threads), "-c"+strconv.Itoa(o.conns),
		"-m"+strconv.Itoa(o.streams), "-D"+strconv.Itoa(int(d.Round(time.Second)/time.Second)),
		"--connect-to="+addr, "--log-file="+logFile.Name(), "https://"+host+"/")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = o.pins.start("wrk", cmd)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		return wrkResult{}, fmt.Errorf("h2load: %v: %s", err, out.Bytes())
	}
	r, err := parseH2load(out.String())
	if err != nil {
		return r, err
	}
	f, err := os.Open(logFile.Name())
	if err != nil {
		return r, err
	}
	defer f.Close()
	r.p50, r.p99, err = h2loadLatencies(f)
	return r, err
}

// parseH2load reads h2load's summary: req/s from "finished in", the
// requests that succeeded, and errors (failed, errored and timed out
// requests, 4xx and 5xx answers).
func parseH2load(out string) (wrkResult, error) {
	var r wrkResult
	var haveRPS, haveReqs bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "finished in "):
			// finished in 5.00s, 23939.60 req/s, 2.51MB/s
			f := strings.Fields(l)
			for i := 1; i < len(f); i++ {
				if strings.TrimSuffix(f[i], ",") == "req/s" {
					v, err := strconv.ParseFloat(f[i-1], 64)
					if err != nil {
						return r, fmt.Errorf("h2load: %q: %v", l, err)
					}
					r.rps, haveRPS = v, true
				}
			}
		case strings.HasPrefix(l, "requests: "):
			// requests: 10 total, 10 started, 10 done, 9 succeeded, 1 failed, 0 errored, 0 timeout
			for _, part := range strings.Split(strings.TrimPrefix(l, "requests: "), ", ") {
				v, what, _ := strings.Cut(part, " ")
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return r, fmt.Errorf("h2load: %q: %v", l, err)
				}
				switch what {
				case "succeeded":
					r.requests, haveReqs = n, true
				case "failed", "errored", "timeout":
					r.errors += int(n)
				}
			}
		case strings.HasPrefix(l, "status codes: "):
			// status codes: 10 2xx, 0 3xx, 0 4xx, 0 5xx
			for _, part := range strings.Split(strings.TrimPrefix(l, "status codes: "), ", ") {
				v, class, _ := strings.Cut(part, " ")
				if n, err := strconv.Atoi(v); err == nil && (class == "4xx" || class == "5xx") {
					r.errors += n
				}
			}
		}
	}
	if !haveRPS || !haveReqs {
		return r, fmt.Errorf("h2load output without req/s or requests:\n%s", out)
	}
	return r, nil
}

// h2loadLatencies reads h2load's --log-file (one request a line: start
// time µs, status, duration µs, tab-separated) and returns the median
// and 99th percentile of the durations.
func h2loadLatencies(log io.Reader) (p50, p99 time.Duration, err error) {
	var v []time.Duration
	sc := bufio.NewScanner(log)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 3 {
			return 0, 0, fmt.Errorf("h2load log line %q: want 3 tab-separated fields", sc.Text())
		}
		n, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("h2load log line %q: %v", sc.Text(), err)
		}
		v = append(v, time.Duration(n)*time.Microsecond)
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if len(v) == 0 {
		return 0, 0, fmt.Errorf("h2load logged no requests")
	}
	slices.Sort(v)
	return pctDur(v, 50, func(d time.Duration) time.Duration { return d }), pctDur(v, 99, func(d time.Duration) time.Duration { return d }), nil
}

// getTLS asks the HTTPS listener at addr for app's / over HTTP/2, as
// h2load will (the certificate is the server's development one: not
// checked here).
func getTLS(ctx context.Context, addr, app string) (*http.Response, string, error) {
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		ForceAttemptHTTP2: true,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+app+"."+domain+"/", nil)
	if err != nil {
		return nil, "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil && resp.ProtoMajor != 2 {
		err = fmt.Errorf("%s answered over %s, not HTTP/2", addr, resp.Proto)
	}
	return resp, string(b), err
}
