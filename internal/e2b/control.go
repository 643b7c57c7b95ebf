// Package e2b makes Frost's agent sandboxes answer E2B's API, so that the
// official E2B SDK, unmodified, drives them: a compatibility layer over
// package sandbox, not a second implementation. This file is E2B's control
// plane (what the SDK calls at E2B_API_URL: create, list, get, kill,
// timeout, pause, connect/resume); the in-sandbox data plane ("envd":
// commands and files over the Connect protocol) is the next step.
//
// E2B's conventions, kept exactly because the SDKs depend on them: JSON
// error bodies {"code": <the HTTP status>, "message": …} (the JS SDK reads
// "not found" and "already paused" from the body's code), create answers
// 201, kill/timeout/pause 204, pause of a paused sandbox 409, connect 200
// for a running sandbox and 201 for one it resumed; timeouts in seconds.
package e2b

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/front"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/sandbox"
)

// EnvdVersion is the envd version Frost advertises: the SDK gates features
// on it, so it names what the data plane implements.
const EnvdVersion = "0.4.0"

// Config configures the handler.
type Config struct {
	// AdminToken is Frost's admin token ("frost_HEX"); the SDK's API key is
	// "e2b_HEX" with the same HEX (newer SDKs insist on that shape), or
	// the token itself.
	AdminToken string
	// Tenant, if set, returns the tenant whose key (E2B's API key) is
	// another than the admin's, or an error: the calls then act as that
	// tenant's (registry.WithTenant), on its own sandboxes alone.
	Tenant func(ctx context.Context, key string) (string, error)
	// Domain is what sandbox hosts are under ({port}-{id}.{domain}),
	// unless a call forwarded by a gateway names its own
	// (api.PublicBaseHeader).
	Domain string
	// BodyTimeout cuts a request body that stops coming (408), as the
	// control API's own routes do (front.PaceBody; 0: its default).
	BodyTimeout time.Duration
}

// Handler serves E2B's control plane.
type Handler struct {
	cfg Config
	m   *sandbox.Manager
	mux *http.ServeMux
}

// New returns the handler; mount it at "/sandboxes", "/sandboxes/",
// "/v2/sandboxes", "/v2/sandboxes/", "/snapshots" and "/templates/".
func New(cfg Config, m *sandbox.Manager) *Handler {
	h := &Handler{cfg: cfg, m: m, mux: http.NewServeMux()}
	for _, prefix := range []string{"", "/v2"} {
		h.mux.HandleFunc("POST "+prefix+"/sandboxes", h.create)
		for pattern, fn := range map[string]http.HandlerFunc{
			"GET /sandboxes/{id}":            h.get,
			"DELETE /sandboxes/{id}":         h.kill,
			"POST /sandboxes/{id}/timeout":   h.timeout,
			"PUT /sandboxes/{id}/network":    h.network,
			"POST /sandboxes/{id}/pause":     h.pause,
			"POST /sandboxes/{id}/connect":   h.connect,
			"POST /sandboxes/{id}/resume":    h.resume,
			"GET /sandboxes/{id}/metrics":    h.metrics,
			"POST /sandboxes/{id}/snapshots": h.snapshot,
			"POST /sandboxes/{id}/fork":      h.fork,
		} {
			method, path, _ := strings.Cut(pattern, " ")
			h.mux.HandleFunc(method+" "+prefix+path, h.scoped(fn))
		}
	}
	h.mux.HandleFunc("GET /snapshots", h.snapshots)
	h.mux.HandleFunc("DELETE /templates/{id...}", h.deleteTemplate) // NAME or TENANT/NAME
	h.mux.HandleFunc("GET /sandboxes", h.list(false))
	h.mux.HandleFunc("GET /v2/sandboxes", h.list(true))
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tenant, ok := h.authorized(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, "missing or wrong API key: set E2B_API_KEY to e2b_ followed by the hex part of Frost's admin token (DATA/admin.token), or to a tenant's token")
		return
	}
	if tenant != "" {
		r = r.WithContext(registry.WithTenant(r.Context(), tenant))
	}
	r.Body = front.PaceBody(w, r, h.cfg.BodyTimeout)
	h.mux.ServeHTTP(w, r)
}

// authorized says whose r's key is: the admin's (tenant "") or a
// tenant's.
func (h *Handler) authorized(r *http.Request) (tenant string, ok bool) {
	if h.cfg.AdminToken == "" {
		return "", false
	}
	hexPart := strings.TrimPrefix(h.cfg.AdminToken, "frost_")
	same := func(got, want string) bool {
		return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
	}
	key := r.Header.Get("X-API-Key")
	if same(key, "e2b_"+hexPart) || same(key, h.cfg.AdminToken) {
		return "", true
	}
	bearer, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if found && same(bearer, h.cfg.AdminToken) {
		return "", true
	}
	if found && key == "" {
		key = bearer
	}
	if key == "" || h.cfg.Tenant == nil {
		return "", false
	}
	tenant, err := h.cfg.Tenant(r.Context(), key)
	return tenant, err == nil && tenant != ""
}

// scoped answers a tenant's call on another's sandbox as for one that
// does not exist (404).
func (h *Handler) scoped(fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h.m.Owned(r.Context(), r.PathValue("id")); err != nil {
			h.fail(w, err)
			return
		}
		fn(w, r)
	}
}

// newSandbox is the body of POST /sandboxes.
type newSandbox struct {
	TemplateID          string            `json:"templateID"`
	Timeout             *int              `json:"timeout"` // seconds
	Metadata            map[string]string `json:"metadata"`
	EnvVars             map[string]string `json:"envVars"`
	Secure              *bool             `json:"secure"`
	AllowInternetAccess *bool             `json:"allow_internet_access"`
	AutoPause           *bool             `json:"autoPause"`
	Network             struct {
		// AllowPublicTraffic false: requests to the sandbox's ports
		// need its traffic access token (E2B's default is public).
		AllowPublicTraffic *bool `json:"allowPublicTraffic"`
		// AllowOut and DenyOut: IPv4 addresses and CIDR ranges the
		// sandbox may or may not connect to (allow wins).
		AllowOut []string `json:"allowOut"`
		DenyOut  []string `json:"denyOut"`
	} `json:"network"`
}

// sandboxBody is E2B's Sandbox: the answer of create and connect.
type sandboxBody struct {
	TemplateID      string  `json:"templateID"`
	SandboxID       string  `json:"sandboxID"`
	ClientID        string  `json:"clientID"`
	EnvdVersion     string  `json:"envdVersion"`
	EnvdAccessToken string  `json:"envdAccessToken"`
	Domain          *string `json:"domain"`
	// TrafficAccessToken, for a sandbox whose ports are not public, goes
	// in the E2b-Traffic-Access-Token header of requests to its ports.
	TrafficAccessToken *string `json:"trafficAccessToken,omitempty"`
}

// listedSandbox is E2B's ListedSandbox; detail adds the token and domain.
type listedSandbox struct {
	TemplateID      string            `json:"templateID"`
	SandboxID       string            `json:"sandboxID"`
	ClientID        string            `json:"clientID"`
	StartedAt       time.Time         `json:"startedAt"`
	EndAt           time.Time         `json:"endAt"`
	CPUCount        int               `json:"cpuCount"`
	MemoryMB        int64             `json:"memoryMB"`
	DiskSizeMB      int64             `json:"diskSizeMB"`
	State           string            `json:"state"`
	EnvdVersion     string            `json:"envdVersion"`
	Metadata        map[string]string `json:"metadata,omitempty"`
	EnvdAccessToken string            `json:"envdAccessToken,omitempty"`
	Domain          *string           `json:"domain,omitempty"`
	// AllowInternetAccess and Network: the detail's (GET /sandboxes/{id}).
	AllowInternetAccess *bool        `json:"allowInternetAccess,omitempty"`
	Network             *networkInfo `json:"network,omitempty"`
}

// networkInfo is E2B's SandboxNetworkConfig as the detail shows it.
type networkInfo struct {
	AllowOut           []string `json:"allowOut"`
	DenyOut            []string `json:"denyOut"`
	AllowPublicTraffic bool     `json:"allowPublicTraffic"`
}

// networkUpdate is the body of PUT /sandboxes/{id}/network: the whole
// new egress configuration (what it leaves out is cleared).
type networkUpdate struct {
	AllowOut            []string `json:"allowOut"`
	DenyOut             []string `json:"denyOut"`
	AllowInternetAccess *bool    `json:"allow_internet_access"`
}

// frostNetwork is the Frost network of E2B's fields (nil: unlimited).
func frostNetwork(allowInternet *bool, allowOut, denyOut []string) *api.SandboxNetwork {
	offline := allowInternet != nil && !*allowInternet
	if !offline && len(allowOut) == 0 && len(denyOut) == 0 {
		return nil
	}
	return &api.SandboxNetwork{Offline: offline, AllowOut: allowOut, DenyOut: denyOut}
}

const clientID = "frost"

// domain is the domain r's caller reaches sandboxes under: the gateway's
// that forwarded r (its https base, the one the SDK uses, else its plain
// one), or this server's own.
func (h *Handler) domain(r *http.Request) string {
	bases := r.Header.Values(api.PublicBaseHeader)
	if len(bases) == 0 {
		return h.cfg.Domain
	}
	_, host, ok := api.ParsePublicBase(bases[0])
	if !ok {
		return h.cfg.Domain
	}
	if len(bases) > 1 {
		if scheme, tls, ok := api.ParsePublicBase(bases[1]); ok && scheme == "https" {
			return tls
		}
	}
	return host
}

func (h *Handler) body(r *http.Request, s api.Sandbox) sandboxBody {
	d := h.domain(r)
	b := sandboxBody{TemplateID: s.Template, SandboxID: s.ID, ClientID: clientID, EnvdVersion: EnvdVersion, EnvdAccessToken: s.Token, Domain: &d}
	if !s.PublicPorts {
		b.TrafficAccessToken = &s.Token
	}
	return b
}

func (h *Handler) listed(r *http.Request, s api.Sandbox, detail bool) listedSandbox {
	cpus := int(s.Limits.CPUs + 0.999)
	l := listedSandbox{
		TemplateID: s.Template, SandboxID: s.ID, ClientID: clientID,
		StartedAt: s.CreatedAt, EndAt: s.ExpiresAt, CPUCount: max(cpus, 1),
		MemoryMB: s.Limits.MemoryBytes >> 20, DiskSizeMB: s.Limits.MemoryBytes >> 20,
		State: s.State, EnvdVersion: EnvdVersion, Metadata: s.Metadata,
	}
	if detail {
		d := h.domain(r)
		l.EnvdAccessToken, l.Domain = s.Token, &d
		internet := true
		n := &networkInfo{AllowOut: []string{}, DenyOut: []string{}, AllowPublicTraffic: s.PublicPorts}
		if s.Network != nil {
			internet = !s.Network.Offline
			n.AllowOut = append(n.AllowOut, s.Network.AllowOut...)
			n.DenyOut = append(n.DenyOut, s.Network.DenyOut...)
		}
		l.AllowInternetAccess, l.Network = &internet, n
	}
	return l
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	var req newSandbox
	if err := decode(r, &req); err != nil {
		bodyError(w, err)
		return
	}
	cr := api.SandboxCreateRequest{Template: req.TemplateID, Metadata: req.Metadata, Env: req.EnvVars, OnTimeout: "kill",
		PublicPorts: req.Network.AllowPublicTraffic == nil || *req.Network.AllowPublicTraffic}
	if req.Timeout != nil {
		if *req.Timeout <= 0 {
			writeError(w, http.StatusBadRequest, "timeout must be a positive number of seconds")
			return
		}
		cr.Timeout = api.Duration(time.Duration(*req.Timeout) * time.Second)
	}
	if req.AutoPause != nil && *req.AutoPause {
		cr.OnTimeout = "pause"
	}
	cr.Network = frostNetwork(req.AllowInternetAccess, req.Network.AllowOut, req.Network.DenyOut)
	s, err := h.m.Create(r.Context(), cr)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, h.body(r, s))
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	s, err := h.m.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, h.listed(r, s, true))
}

// list answers GET /sandboxes (a plain array) and GET /v2/sandboxes
// (filtered by metadata and state, paged with limit/nextToken and the
// x-next-token header).
func (h *Handler) list(v2 bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		all, err := h.m.List(r.Context())
		if err != nil {
			h.fail(w, err)
			return
		}
		q := r.URL.Query()
		meta, err := url.ParseQuery(q.Get("metadata"))
		if err != nil {
			writeError(w, http.StatusBadRequest, "metadata must be url-encoded key=value pairs")
			return
		}
		states := map[string]bool{}
		for _, st := range strings.Split(q.Get("state"), ",") {
			if st != "" {
				states[st] = true
			}
		}
		if !v2 && len(states) == 0 {
			states["running"] = true // the v1 list shows running sandboxes
		}
		tenant, scoped := registry.TenantOf(r.Context())
		var out []listedSandbox
		for _, s := range all {
			if len(states) > 0 && !states[s.State] || scoped && s.Tenant != tenant {
				continue
			}
			match := true
			for k := range meta {
				if s.Metadata[k] != meta.Get(k) {
					match = false
				}
			}
			if match {
				out = append(out, h.listed(r, s, false))
			}
		}
		sort.Slice(out, func(i, j int) bool {
			return out[i].StartedAt.After(out[j].StartedAt) || out[i].StartedAt.Equal(out[j].StartedAt) && out[i].SandboxID < out[j].SandboxID
		})
		if v2 {
			start := 0
			if tok := q.Get("nextToken"); tok != "" {
				n, err := strconv.Atoi(tok)
				if err != nil || n < 0 {
					writeError(w, http.StatusBadRequest, "bad nextToken")
					return
				}
				start = min(n, len(out))
			}
			limit := 100
			if l := q.Get("limit"); l != "" {
				if n, err := strconv.Atoi(l); err == nil && n > 0 {
					limit = min(n, 1000)
				}
			}
			end := min(start+limit, len(out))
			if end < len(out) {
				w.Header().Set("X-Next-Token", strconv.Itoa(end))
			}
			out = out[start:end]
		}
		if out == nil {
			out = []listedSandbox{}
		}
		writeJSON(w, http.StatusOK, out)
	}
}

func (h *Handler) kill(w http.ResponseWriter, r *http.Request) {
	if err := h.m.Kill(r.Context(), r.PathValue("id")); err != nil {
		h.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) timeout(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Timeout int `json:"timeout"`
	}
	if err := decode(r, &req); errors.Is(err, front.ErrBodyTimeout) {
		bodyError(w, err)
		return
	} else if err != nil || req.Timeout <= 0 {
		writeError(w, http.StatusBadRequest, "want {\"timeout\": SECONDS} with a positive number")
		return
	}
	if _, err := h.m.SetTimeout(r.Context(), r.PathValue("id"), time.Duration(req.Timeout)*time.Second); err != nil {
		h.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// network replaces a sandbox's egress configuration: 204.
func (h *Handler) network(w http.ResponseWriter, r *http.Request) {
	var req networkUpdate
	if err := decode(r, &req); err != nil {
		bodyError(w, err)
		return
	}
	if _, err := h.m.SetNetwork(r.Context(), r.PathValue("id"), frostNetwork(req.AllowInternetAccess, req.AllowOut, req.DenyOut)); err != nil {
		h.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) pause(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s, err := h.m.Get(r.Context(), id)
	if err != nil {
		h.fail(w, err)
		return
	}
	if s.State == api.SandboxPaused {
		writeError(w, http.StatusConflict, fmt.Sprintf("sandbox %s is already paused", id))
		return
	}
	if _, err := h.m.Pause(r.Context(), id); err != nil {
		h.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// connect resumes a paused sandbox (201) or returns a running one (200),
// extending its timeout if the request asks for more time.
func (h *Handler) connect(w http.ResponseWriter, r *http.Request) {
	h.bringBack(w, r, false)
}

// resume is the deprecated form: 409 if the sandbox is running.
func (h *Handler) resume(w http.ResponseWriter, r *http.Request) {
	h.bringBack(w, r, true)
}

func (h *Handler) bringBack(w http.ResponseWriter, r *http.Request, strict bool) {
	id := r.PathValue("id")
	var req struct {
		Timeout   *int  `json:"timeout"`
		AutoPause *bool `json:"autoPause"`
		Memory    *bool `json:"memory"`
	}
	if r.ContentLength != 0 {
		if err := decode(r, &req); err != nil {
			bodyError(w, err)
			return
		}
	}
	s, err := h.m.Get(r.Context(), id)
	if err != nil {
		h.fail(w, err)
		return
	}
	status := http.StatusOK
	if s.State == api.SandboxPaused {
		if s, err = h.m.Resume(r.Context(), id); err != nil {
			h.fail(w, err)
			return
		}
		status = http.StatusCreated
	} else if strict {
		writeError(w, http.StatusConflict, fmt.Sprintf("sandbox %s is already running", id))
		return
	}
	if req.Timeout != nil && *req.Timeout > 0 {
		want := time.Now().Add(time.Duration(*req.Timeout) * time.Second)
		if want.After(s.ExpiresAt) { // a connect only ever extends
			if s, err = h.m.SetTimeout(r.Context(), id, time.Duration(*req.Timeout)*time.Second); err != nil {
				h.fail(w, err)
				return
			}
		}
	}
	writeJSON(w, status, h.body(r, s))
}

// sandboxMetric is E2B's SandboxMetric. A Frost sandbox's writable layer
// is memory (counted in memUsed), so it has no disk to report: 0 and 0.
type sandboxMetric struct {
	Timestamp     time.Time `json:"timestamp"`
	TimestampUnix int64     `json:"timestampUnix"`
	CPUCount      int       `json:"cpuCount"`
	CPUUsedPct    float64   `json:"cpuUsedPct"`
	MemUsed       int64     `json:"memUsed"`
	MemTotal      int64     `json:"memTotal"`
	MemCache      int64     `json:"memCache"`
	DiskUsed      int64     `json:"diskUsed"`
	DiskTotal     int64     `json:"diskTotal"`
}

// metrics is GET /sandboxes/{id}/metrics[?start=&end=] (Unix seconds):
// what sandbox.getMetrics() returns.
func (h *Handler) metrics(w http.ResponseWriter, r *http.Request) {
	var bounds [2]time.Time
	for i, name := range []string{"start", "end"} {
		if v := r.URL.Query().Get(name); v != "" {
			secs, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("%s=%q: want Unix seconds", name, v))
				return
			}
			bounds[i] = time.Unix(secs, 0)
		}
	}
	list, err := h.m.Metrics(r.Context(), r.PathValue("id"), bounds[0], bounds[1])
	if err != nil {
		h.fail(w, err)
		return
	}
	out := make([]sandboxMetric, 0, len(list))
	for _, m := range list {
		out = append(out, sandboxMetric{Timestamp: m.Time.UTC(), TimestampUnix: m.Time.Unix(), CPUCount: int(math.Ceil(m.CPUCount)),
			CPUUsedPct: math.Round(m.CPUUsedPct*100) / 100, MemUsed: m.MemUsed, MemTotal: m.MemTotal, MemCache: m.MemCache})
	}
	writeJSON(w, http.StatusOK, out)
}

// snapshotInfo is E2B's snapshot: a template of Frost's, named by it.
type snapshotInfo struct {
	SnapshotID string   `json:"snapshotID"`
	Names      []string `json:"names"`
}

// snapshot is POST /sandboxes/{id}/snapshots {"name"?}: the sandbox as it
// is now, as a template that Sandbox.create(snapshotID) starts from.
func (h *Handler) snapshot(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if r.ContentLength != 0 {
		if err := decode(r, &req); err != nil {
			bodyError(w, err)
			return
		}
	}
	if req.Name == "" {
		req.Name = "snapshot-" + strings.ToLower(rand.Text()[:10])
	}
	t, err := h.m.Snapshot(r.Context(), r.PathValue("id"), req.Name)
	if err != nil {
		h.fail(w, err)
		return
	}
	ref := snapshotRef(r.Context(), t)
	writeJSON(w, http.StatusCreated, snapshotInfo{SnapshotID: ref, Names: []string{ref}})
}

// snapshotRef is how the caller names template t: a tenant its own by
// its name, the admin a tenant's as TENANT/NAME (Frost's template names
// are each tenant's own).
func snapshotRef(ctx context.Context, t api.Template) string {
	if tenant, _ := registry.TenantOf(ctx); tenant == t.Tenant {
		return t.Name
	}
	return api.TemplateRef(t)
}

// snapshots is GET /snapshots[?sandboxID=&name=]: the templates taken of
// sandboxes, in one page.
func (h *Handler) snapshots(w http.ResponseWriter, r *http.Request) {
	list, err := h.m.Templates(r.Context())
	if err != nil {
		h.fail(w, err)
		return
	}
	q := r.URL.Query()
	out := []snapshotInfo{}
	for _, t := range list {
		ref := snapshotRef(r.Context(), t)
		if t.From == "" || q.Get("sandboxID") != "" && t.From != q.Get("sandboxID") || q.Get("name") != "" && ref != q.Get("name") && t.Name != q.Get("name") {
			continue
		}
		out = append(out, snapshotInfo{SnapshotID: ref, Names: []string{ref}})
	}
	writeJSON(w, http.StatusOK, out)
}

// deleteTemplate is DELETE /templates/{id} (Sandbox.deleteSnapshot).
func (h *Handler) deleteTemplate(w http.ResponseWriter, r *http.Request) {
	if err := h.m.DeleteTemplate(r.Context(), r.PathValue("id")); err != nil {
		h.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// forkResult is one entry of a fork's answer: the sandbox, or why that
// fork did not start.
type forkResult struct {
	Sandbox *sandboxBody `json:"sandbox,omitempty"`
	Error   *errorBody   `json:"error,omitempty"`
}

// fork is POST /sandboxes/{id}/fork {"timeout"?, "count"?}: count new
// sandboxes where this one is now.
func (h *Handler) fork(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Timeout *int `json:"timeout"` // seconds
		Count   *int `json:"count"`
	}
	if r.ContentLength != 0 {
		if err := decode(r, &req); err != nil {
			bodyError(w, err)
			return
		}
	}
	n, timeout := 1, time.Duration(0)
	if req.Count != nil {
		n = *req.Count
	}
	if req.Timeout != nil {
		if *req.Timeout <= 0 {
			writeError(w, http.StatusBadRequest, "timeout must be a positive number of seconds")
			return
		}
		timeout = time.Duration(*req.Timeout) * time.Second
	}
	forks, err := h.m.Fork(r.Context(), r.PathValue("id"), n, timeout)
	if err != nil && len(forks) == 0 {
		h.fail(w, err)
		return
	}
	out := make([]forkResult, 0, n)
	for _, f := range forks {
		b := h.body(r, f)
		out = append(out, forkResult{Sandbox: &b})
	}
	for len(out) < n {
		out = append(out, forkResult{Error: &errorBody{Code: http.StatusInternalServerError, Message: err.Error()}})
	}
	writeJSON(w, http.StatusCreated, out)
}

// fail maps the sandbox package's errors to E2B's.
func (h *Handler) fail(w http.ResponseWriter, err error) {
	if to := sandbox.Holder(err); to != "" {
		w.Header().Set(api.ReplayHeader, to) // a gateway re-sends it there
	}
	switch {
	case errors.Is(err, sandbox.ErrNotFound), errors.Is(err, sandbox.ErrGone):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, sandbox.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, sandbox.ErrForbidden):
		writeError(w, http.StatusForbidden, err.Error())
	case errors.Is(err, sandbox.ErrElsewhere):
		writeError(w, http.StatusServiceUnavailable, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	return nil
}

// bodyError answers a body decode could not read: 408 if it stopped
// coming, else 400.
func bodyError(w http.ResponseWriter, err error) {
	status := http.StatusBadRequest
	if errors.Is(err, front.ErrBodyTimeout) {
		status = http.StatusRequestTimeout
	}
	writeError(w, status, err.Error())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeError writes E2B's error body: the code is the HTTP status.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{status, msg})
}

// errorBody is E2B's error: the code is an HTTP status.
type errorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}
