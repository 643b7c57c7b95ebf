// Package api serves Frost's control API: HTTP+JSON under /v1/, bearer-token
// authentication, and Prometheus metrics. errors.go maps every error to a
// status in one place. Wire types live in the public package
// github.com/frostdev/frost/api; docs/API.md documents every route.
package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	wire "github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/blob"
	"github.com/frostdev/frost/internal/front"
	"github.com/frostdev/frost/internal/node"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/sandbox"
)

// Config configures the handler.
type Config struct {
	// AdminToken is the bearer token that may call every route.
	AdminToken string
	// Version is reported by /v1/health.
	Version string
	Domain  string
	// E2BDomain is the domain E2B's SDK addresses sandboxes under
	// (https://PORT-ID.E2BDomain): Domain and, unless it is the default
	// one, the port of the HTTPS listener, or of the app listener without
	// one.
	E2BDomain string
	// HTTPAddr is the app listener, reported by /v1/health.
	HTTPAddr string
	// MaxModuleBytes caps an uploaded blob.
	MaxModuleBytes int64
	Logger         *slog.Logger
	// Status answers GET /v1/status (nil: the role "all" and nothing else).
	Status func() wire.Status
	// Registry holds the tenants and who owns each app and sandbox (nil:
	// no tenants; only the admin token is accepted).
	Registry registry.Store
	// BodyTimeout cuts an upload (a module, a file, a JSON body) that
	// goes this long without a byte, or comes slower than
	// front.MinBodyRate past front.BodyGrace: 408 body_timeout (0:
	// front.DefaultBodyTimeout). An exec's stdin is not cut: it is a
	// person's or a program's input, which may rest for minutes.
	BodyTimeout time.Duration
}

// Handler is the control API.
type Handler struct {
	cfg       Config
	node      *node.Node
	blobs     blob.Store
	sandboxes *sandbox.Manager // nil: agent sandboxes are not enabled
	mux       *http.ServeMux
	log       *slog.Logger
	e2bKeys   e2bKeyCache // e2bTenant's (tenants.go)
}

// New returns the control API handler. sandboxes may be nil: the sandbox
// routes then answer 501 and say how to enable them.
func New(cfg Config, n *node.Node, blobs blob.Store, sandboxes *sandbox.Manager) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxModuleBytes <= 0 {
		cfg.MaxModuleBytes = node.DefaultConfig().MaxModuleBytes
	}
	h := &Handler{cfg: cfg, node: n, blobs: blobs, sandboxes: sandboxes, mux: http.NewServeMux(), log: cfg.Logger}
	h.mux.HandleFunc("GET /v1/health", h.health)
	h.mux.Handle("GET /metrics", h.auth(promhttp.HandlerFor(prometheus.Gatherers{n.Metrics()}, promhttp.HandlerOpts{}), true))
	h.adminRoute("GET /v1/status", h.status)
	h.route("HEAD /v1/blobs/{digest}", h.statBlob)
	h.adminRoute("GET /v1/blobs/{digest}", h.getBlob) // for peers: the bytes of any app's module
	h.tenantRoutes()
	h.route("PUT /v1/blobs/{digest}", h.putBlob)
	h.route("GET /v1/apps", h.listApps)
	h.route("GET /v1/apps/{name}", h.getApp)
	h.route("POST /v1/apps/{name}/releases", h.deploy)
	h.route("DELETE /v1/apps/{name}", h.deleteApp)
	h.route("PATCH /v1/apps/{name}/env", h.setEnv)
	h.route("GET /v1/apps/{name}/logs", h.logs)
	h.route("POST /v1/apps/{name}/freeze", h.freezeApp)
	h.route("POST /v1/apps/{name}/wake", h.wakeApp)
	h.sandboxRoutes()
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if _, err := h.principal(r); err != nil {
			writeError(w, err)
			return
		}
		writeError(w, fmt.Errorf("%w: no route %s %s; see docs/API.md", errNoRoute, r.Method, r.URL.Path))
	})
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// route serves pattern to the admin and to tenants (each within its own
// apps and sandboxes: see scope).
func (h *Handler) route(pattern string, fn handlerFunc) { h.handle(pattern, fn, false, true) }

// adminRoute serves pattern to the admin only.
func (h *Handler) adminRoute(pattern string, fn handlerFunc) { h.handle(pattern, fn, true, true) }

// streamRoute is route for a body that streams input for as long as the
// call lasts (an exec's stdin): it is not paced.
func (h *Handler) streamRoute(pattern string, fn handlerFunc) { h.handle(pattern, fn, false, false) }

// handle serves pattern; with paced, the request's body is cut once it
// stops coming (Config.BodyTimeout): a client that starts an upload and
// stalls would otherwise hold its handler, and a tenant could hold many.
func (h *Handler) handle(pattern string, fn handlerFunc, adminOnly, paced bool) {
	h.mux.Handle(pattern, h.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if paced {
			r.Body = front.PaceBody(w, r, h.cfg.BodyTimeout)
		}
		err := h.scope(r)
		if err == nil {
			err = fn(w, r)
		}
		if err != nil {
			h.log.Debug("api error", "method", r.Method, "path", r.URL.Path, "err", err)
			writeError(w, err)
		}
	}), adminOnly))
}

// auth lets a request through with a valid token: the admin's, or (unless
// adminOnly) a tenant's, whose name then rides in the request's context
// (registry.WithTenant).
func (h *Handler) auth(next http.Handler, adminOnly bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := h.principal(r)
		switch {
		case err != nil:
			writeError(w, err)
			return
		case p.tenant != "" && adminOnly:
			writeError(w, fmt.Errorf("%w: %s %s needs the admin token", errForbidden, r.Method, r.Pattern))
			return
		case p.tenant != "":
			r = r.WithContext(registry.WithTenant(r.Context(), p.tenant))
		}
		next.ServeHTTP(w, r)
	})
}

func (h *Handler) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, wire.Health{Status: "ok", Version: h.cfg.Version, Domain: h.cfg.Domain, HTTP: h.cfg.HTTPAddr})
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) error {
	st := wire.Status{Role: "all", Version: h.cfg.Version}
	if h.cfg.Status != nil {
		st = h.cfg.Status()
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (h *Handler) statBlob(w http.ResponseWriter, r *http.Request) error {
	info, err := h.blobs.Stat(r.Context(), r.PathValue("digest"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
	w.WriteHeader(http.StatusOK)
	return nil
}

// getBlob serves a blob's bytes from this node's own store (in a cluster,
// the node does not ask its peers for it: they ask it).
func (h *Handler) getBlob(w http.ResponseWriter, r *http.Request) error {
	store := h.blobs
	if l, ok := store.(interface{ Local() blob.Store }); ok {
		store = l.Local()
	}
	rc, info, err := store.Open(r.Context(), r.PathValue("digest"))
	if err != nil {
		return err
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
	w.WriteHeader(http.StatusOK)
	io.Copy(w, rc)
	return nil
}

func (h *Handler) putBlob(w http.ResponseWriter, r *http.Request) error {
	digest := r.PathValue("digest")
	status := http.StatusCreated
	if _, err := h.blobs.Stat(r.Context(), digest); err == nil {
		status = http.StatusOK
	}
	if r.ContentLength > h.cfg.MaxModuleBytes {
		return fmt.Errorf("%w: module is %d bytes; the limit is %d", blob.ErrTooLarge, r.ContentLength, h.cfg.MaxModuleBytes)
	}
	info, err := h.blobs.Put(r.Context(), digest, r.Body, h.cfg.MaxModuleBytes)
	if err != nil {
		if errors.Is(err, blob.ErrTooLarge) {
			return fmt.Errorf("%w: the limit is %d bytes", err, h.cfg.MaxModuleBytes)
		}
		return err
	}
	writeJSON(w, status, wire.Blob{Digest: info.Digest, Size: info.Size})
	return nil
}

func (h *Handler) listApps(w http.ResponseWriter, r *http.Request) error {
	apps, err := h.node.Apps(r.Context())
	if err != nil {
		return err
	}
	if tenant, ok := registry.TenantOf(r.Context()); ok {
		apps = slices.DeleteFunc(apps, func(a wire.App) bool { return a.Tenant != tenant })
	}
	for i := range apps {
		publicApp(r, &apps[i])
	}
	writeJSON(w, http.StatusOK, apps)
	return nil
}

// publicURL is the URL of the host sub under the (first) public base r
// carries (wire.PublicBaseHeader, set by a gateway), or own without a
// valid one.
func publicURL(r *http.Request, sub, own string) string {
	scheme, host, ok := wire.ParsePublicBase(r.Header.Get(wire.PublicBaseHeader))
	if !ok {
		return own
	}
	return scheme + "://" + sub + "." + host + "/"
}

// publicApp gives a the URL it answers at for r's caller.
func publicApp(r *http.Request, a *wire.App) { a.URL = publicURL(r, a.Name, a.URL) }

func (h *Handler) getApp(w http.ResponseWriter, r *http.Request) error {
	d, err := h.node.App(r.Context(), r.PathValue("name"))
	if err != nil {
		return notFoundApp(r.PathValue("name"), err)
	}
	publicApp(r, &d.App)
	writeJSON(w, http.StatusOK, d)
	return nil
}

// freezeApp freezes an app now: its snapshot is baked if needed, its
// instances and their memory are dropped.
func (h *Handler) freezeApp(w http.ResponseWriter, r *http.Request) error {
	d, err := h.node.FreezeApp(r.Context(), r.PathValue("name"))
	if err != nil {
		return notFoundApp(r.PathValue("name"), err)
	}
	publicApp(r, &d.App)
	writeJSON(w, http.StatusOK, d)
	return nil
}

// wakeApp is a gateway's prewarm: 204 once the app is ready to serve.
func (h *Handler) wakeApp(w http.ResponseWriter, r *http.Request) error {
	if err := h.node.WakeApp(r.Context(), r.PathValue("name")); err != nil {
		return notFoundApp(r.PathValue("name"), err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// maxJSON caps a JSON request body.
const maxJSON = 1 << 20

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, front.ErrBodyTimeout) {
			return err
		}
		return fmt.Errorf("%w: request body: %v", errBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: request body has data after the JSON value", errBadRequest)
	}
	return nil
}

func (h *Handler) deploy(w http.ResponseWriter, r *http.Request) error {
	var req wire.DeployRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	name := r.PathValue("name")
	if _, err := h.node.Deploy(r.Context(), name, req); err != nil {
		return err
	}
	d, err := h.node.App(r.Context(), name)
	if err != nil {
		return err
	}
	publicApp(r, &d.App)
	writeJSON(w, http.StatusCreated, d)
	return nil
}

func (h *Handler) deleteApp(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := h.node.Delete(r.Context(), name); err != nil {
		return notFoundApp(name, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) setEnv(w http.ResponseWriter, r *http.Request) error {
	var req wire.EnvRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	name := r.PathValue("name")
	if _, err := h.node.SetEnv(r.Context(), name, req); err != nil {
		return notFoundApp(name, err)
	}
	d, err := h.node.App(r.Context(), name)
	if err != nil {
		return err
	}
	publicApp(r, &d.App)
	writeJSON(w, http.StatusOK, d.App)
	return nil
}

func (h *Handler) logs(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	q := r.URL.Query()
	tail := 100
	if s := q.Get("tail"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return fmt.Errorf("%w: tail must be a non-negative number", errBadRequest)
		}
		tail = n
	}
	follow := q.Get("follow") == "true" || q.Get("follow") == "1"
	if _, err := h.node.App(r.Context(), name); err != nil {
		return notFoundApp(name, err)
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	enc := json.NewEncoder(w)
	err := h.node.Logs(r.Context(), name, tail, follow, func(l wire.LogLine) error {
		if err := enc.Encode(l); err != nil {
			return err
		}
		if fl != nil && follow {
			fl.Flush()
		}
		return nil
	})
	if err != nil {
		h.log.Debug("log stream ended", "app", name, "err", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
