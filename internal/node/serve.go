package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/frostdev/frost/internal/front"
	"github.com/frostdev/frost/internal/runtime"
)

// ServeHTTP serves app traffic: NAME.DOMAIN → app NAME.
func (n *Node) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if n.name != nil {
		w.Header()["Frost-Node"] = n.name
	}
	name, ok := n.appName(r.Host)
	if !ok {
		n.fail(w, nil, http.StatusNotFound, "no_app",
			fmt.Sprintf("frost: %q is not an app address; apps answer at NAME.%s", r.Host, n.cfg.Domain))
		return
	}
	a := n.lookup(name)
	if a == nil {
		var known bool
		if a, known = n.awaitApp(r.Context(), name); a == nil {
			if known {
				w.Header().Set("Retry-After", "1")
				// The next node's watch may have brought it.
				n.offerReplay(w, name)
				n.fail(w, nil, http.StatusServiceUnavailable, "not_synced",
					fmt.Sprintf("frost: app %q is deployed but has not reached this node yet; retry", name))
				return
			}
			n.fail(w, nil, http.StatusNotFound, "no_app",
				fmt.Sprintf("frost: no app named %q is deployed here; deploy one with: frost deploy %s FILE.wasm", name, name))
			return
		}
	}
	rel := a.release.Load()
	limits := rel.Limits

	// Concurrency: beyond the limit, refuse at once with a retry hint.
	if a.inflight.Add(1) > int64(limits.Concurrency) {
		a.inflight.Add(-1)
		a.limitKills[limitConcurrency].Add(1)
		n.metrics.limitKills.WithLabelValues(name, "concurrency").Inc()
		w.Header().Set("Retry-After", "1")
		// Another node may have room.
		n.offerReplay(w, name)
		n.fail(w, a, http.StatusServiceUnavailable, "concurrency_limit",
			fmt.Sprintf("frost: app %q is at its limit of %d concurrent requests; retry shortly", name, limits.Concurrency))
		return
	}
	defer a.inflight.Add(-1)
	a.lastUsed.Store(start.UnixNano())

	// A warm-pool app that is not ready here: if the gateway can send the
	// request on, the next node in ring order (which keeps it ready)
	// serves it while this node wakes it.
	if a.cur.Load() == nil && rel.Warm > 0 &&
		r.Header.Get("Frost-Can-Replay") != "" && r.Header.Get("Frost-Replayed") == "" {
		if other := n.replayTarget(name); other != "" {
			n.wakeInBackground(a)
			w.Header().Set("Frost-Replay", other)
			n.fail(w, a, http.StatusServiceUnavailable, "warming",
				fmt.Sprintf("frost: app %q is waking on this node; node %s serves it meanwhile", name, other))
			return
		}
	}

	req := reqPool.Get().(*runtime.Request)
	defer putRequest(req)
	r.Body = front.PaceBody(w, r, n.cfg.BodyTimeout)
	if err := readBody(r, limits.MaxBodyBytes, req); err != nil {
		if errors.Is(err, errBodyTooLarge) {
			a.limitKills[limitBody].Add(1)
			n.metrics.limitKills.WithLabelValues(name, "body").Inc()
			n.fail(w, a, http.StatusRequestEntityTooLarge, "body_limit",
				fmt.Sprintf("frost: request body is larger than app %q's limit of %d bytes", name, limits.MaxBodyBytes))
			return
		}
		if errors.Is(err, front.ErrBodyTimeout) {
			n.fail(w, a, http.StatusRequestTimeout, "body_timeout", "frost: reading the request body: "+err.Error())
			return
		}
		n.fail(w, a, http.StatusBadRequest, "bad_body", "frost: reading the request body: "+err.Error())
		return
	}
	req.Method = r.Method
	req.URI = r.RequestURI
	if r.URL.IsAbs() {
		// absolute-form (RFC 9112 3.2.2): guests see origin-form
		req.URI = r.URL.RequestURI()
	}
	req.Proto = r.Proto
	req.Host, req.ServerPort = splitHostPort(r.Host)
	req.Header = r.Header
	req.RemoteAddr = r.RemoteAddr
	req.Start = start
	req.RespHeader = w.Header()

	l, err := n.acquire(r.Context(), a)
	if err != nil {
		n.log.Error("load failed", "app", name, "err", err)
		n.fail(w, a, http.StatusInternalServerError, "load_failed", fmt.Sprintf("frost: app %q could not be loaded: %v", name, err))
		return
	}
	resp, t, err := l.prog.Handle(r.Context(), req)
	if err != nil {
		l.release()
		n.guestFailed(w, a, l, t, err)
		return
	}
	if a.wakeBoot.Load() != 0 {
		// the first request after a wake reports how the app woke
		if b := a.wakeBoot.Swap(0); b != 0 {
			t.Boot = runtime.Boot(b - 1)
			t.Wake = time.Duration(a.wakeDur.Load())
			t.WakeAhead = a.wakeEnd.Load() < start.UnixNano()
			t.Fetch = time.Duration(a.wakeFetch.Load())
		}
	}
	a.boots[t.Boot].Add(1)
	a.bootCtr[t.Boot].Inc()
	h := resp.Header // w.Header(), filled by the guest
	h["Server-Timing"] = []string{serverTiming(t)}
	if len(resp.Body) > smallBody && h.Get("Content-Length") == "" {
		h["Content-Length"] = []string{strconv.Itoa(len(resp.Body))}
	}
	w.WriteHeader(resp.Status)
	w.Write(resp.Body)
	status := resp.Status
	l.prog.Release(resp)
	l.release()
	a.requests.Add(1)
	if status == 200 {
		a.req200.Inc()
	} else {
		n.metrics.requests.WithLabelValues(name, itoa3(status)).Inc()
	}
	a.duration.Observe((t.Start + t.Run).Seconds())
}

// replayTarget names the node a request for app refused here may be
// re-sent to (Config.Replay): "" on one machine or with no other member.
func (n *Node) replayTarget(app string) string {
	if n.cfg.Replay == nil {
		return ""
	}
	return n.cfg.Replay(app)
}

// offerReplay names, in a Frost-Replay header, the node a gateway may
// re-send a request refused here to (once), when there is one.
func (n *Node) offerReplay(w http.ResponseWriter, app string) {
	if other := n.replayTarget(app); other != "" {
		w.Header().Set("Frost-Replay", other)
	}
}

// guestFailed answers a request whose guest failed, in the one place that
// maps runtime errors to statuses.
func (n *Node) guestFailed(w http.ResponseWriter, a *app, l *loaded, t runtime.Timing, err error) {
	clear(w.Header()) // whatever the guest set before it failed
	status, code, limit := http.StatusInternalServerError, "guest_error", -1
	switch {
	case errors.Is(err, runtime.ErrCanceled):
		// Nobody reads it: the client went away. nginx's code for that,
		// so that it counts apart from the app's own failures.
		status, code = statusClientClosed, "client_closed"
	case errors.Is(err, runtime.ErrCPULimit):
		status, code, limit = http.StatusGatewayTimeout, "time_limit", limitCPU
		err = fmt.Errorf("%w (limit %s)", err, l.rel.Limits.Timeout)
	case errors.Is(err, runtime.ErrMemoryLimit):
		status, code, limit = http.StatusInternalServerError, "memory_limit", limitMemory
		err = fmt.Errorf("%w (limit %d MiB)", err, l.rel.Limits.MemoryBytes>>20)
	case errors.Is(err, runtime.ErrBadResponse):
		status, code = http.StatusBadGateway, "bad_response"
	case errors.Is(err, runtime.ErrTrap):
		status, code = http.StatusInternalServerError, "guest_trap"
	case errors.Is(err, runtime.ErrClosed), errors.Is(err, context.Canceled):
		status, code = http.StatusServiceUnavailable, "unavailable"
	case errors.Is(err, runtime.ErrInit):
		status, code = http.StatusInternalServerError, "init_failed"
	}
	if limit >= 0 {
		a.limitKills[limit].Add(1)
		n.metrics.limitKills.WithLabelValues(a.name, limitNames[limit]).Inc()
	}
	n.logs.add(logLineFor(a.name, l.rel.ID, err))
	n.log.Debug("guest failed", "app", a.name, "err", err)
	w.Header().Set("Server-Timing", serverTiming(t))
	n.fail(w, a, status, code, fmt.Sprintf("frost: app %q failed: %v", a.name, err))
}

// statusClientClosed answers a request whose client went away before its
// answer (nginx's 499).
const statusClientClosed = 499

// fail writes a plain-text error and counts it.
func (n *Node) fail(w http.ResponseWriter, a *app, status int, code, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frost-Error", code)
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
	app := ""
	if a != nil {
		app = a.name
		a.errors.Add(1)
		a.requests.Add(1)
	}
	n.metrics.requests.WithLabelValues(app, itoa3(status)).Inc()
	n.metrics.errors.WithLabelValues(app, code).Inc()
}

// appName extracts NAME from NAME.DOMAIN[:port].
func (n *Node) appName(host string) (string, bool) {
	for i := 0; i < len(host); i++ {
		if host[i] >= 0x80 {
			// Unicode case folding would alias valid names (K → k).
			return "", false
		}
	}
	host, _ = splitHostPort(host)
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	name, ok := strings.CutSuffix(host, "."+n.cfg.Domain)
	if !ok || ValidAppName(name) != nil {
		return "", false
	}
	return name, true
}

func splitHostPort(hostport string) (string, string) {
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		return h, p
	}
	return hostport, ""
}

var errBodyTooLarge = errors.New("body too large")

// smallBody is the size below which net/http computes Content-Length itself
// (it buffers the whole body before sending headers).
const smallBody = 2048

// readBody reads at most limit bytes of the body into req.Body.
func readBody(r *http.Request, limit int64, req *runtime.Request) error {
	if r.ContentLength > limit {
		return errBodyTooLarge
	}
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		req.Body = req.Body[:0]
		return nil
	}
	buf := req.Body[:0]
	if r.ContentLength > 0 && int64(cap(buf)) < r.ContentLength {
		buf = make([]byte, 0, r.ContentLength)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		m, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if int64(len(buf)) > limit {
			req.Body = buf[:0]
			return errBodyTooLarge
		}
		if err == io.EOF {
			req.Body = buf
			return nil
		}
		if err != nil {
			req.Body = buf[:0]
			return err
		}
	}
}

var reqPool = sync.Pool{New: func() any { return &runtime.Request{} }}

func putRequest(r *runtime.Request) {
	if cap(r.Body) > 1<<20 {
		r.Body = nil
	}
	body := r.Body[:0]
	*r = runtime.Request{Body: body}
	reqPool.Put(r)
}

// serverTiming formats the Server-Timing header: the boot kind and phase
// durations in milliseconds.
func serverTiming(t runtime.Timing) string {
	b := make([]byte, 0, 64)
	b = append(b, "boot;desc="...)
	b = append(b, t.Boot.String()...)
	if t.Wake > 0 {
		b = append(b, ", wake;dur="...)
		b = strconv.AppendFloat(b, float64(t.Wake.Microseconds())/1000, 'f', 3, 64)
		if t.WakeAhead {
			b = append(b, ";desc=ahead"...)
		}
		if t.Fetch > 0 {
			b = append(b, ", fetch;dur="...)
			b = strconv.AppendFloat(b, float64(t.Fetch.Microseconds())/1000, 'f', 3, 64)
		}
	}
	b = append(b, ", start;dur="...)
	b = strconv.AppendFloat(b, float64(t.Start.Microseconds())/1000, 'f', 3, 64)
	b = append(b, ", run;dur="...)
	b = strconv.AppendFloat(b, float64(t.Run.Microseconds())/1000, 'f', 3, 64)
	return string(b)
}
