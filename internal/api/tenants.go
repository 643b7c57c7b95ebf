package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	wire "github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/node"
	"github.com/frostdev/frost/internal/registry"
)

// Tenants. The admin token manages everything, tenants included; a
// tenant's token reaches only that tenant's apps and sandboxes. What a
// tenant creates belongs to it (registry.App.Tenant, Sandbox.Tenant, set
// from the request's context); another tenant's app or sandbox answers
// 404, exactly as one that does not exist, except that a deploy to an app
// name another tenant holds answers 409 (app names are global: they are
// hostnames). Lists show a tenant its own. Admin-only routes answer a
// tenant 403.
//
// A tenant's token is "frostt_NAME_SECRET": the name says which tenant to
// look up, and only the SHA-256 of the whole token is stored, so the
// registry never holds a usable token.

var (
	errForbidden = errors.New("forbidden")
	errConflict  = errors.New("conflict")
)

const tenantTokenPrefix = "frostt_"

// principal is who a request's token speaks for: the admin (tenant "")
// or a tenant.
type principal struct{ tenant string }

// principal checks the request's bearer token.
func (h *Handler) principal(r *http.Request) (principal, error) {
	const prefix = "bearer "
	got := r.Header.Get("Authorization")
	// The scheme is case-insensitive (RFC 9110 11.1).
	if len(got) <= len(prefix) || !strings.EqualFold(got[:len(prefix)], prefix) {
		return principal{}, errUnauthorized
	}
	tok := got[len(prefix):]
	if h.cfg.AdminToken != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(h.cfg.AdminToken)) == 1 {
		return principal{}, nil
	}
	name, err := h.tenantToken(r.Context(), tok)
	return principal{tenant: name}, err
}

// tenantToken returns the tenant whose token tok is, or errUnauthorized.
// E2B's API takes a tenant's token as its API key through it.
func (h *Handler) tenantToken(ctx context.Context, tok string) (string, error) {
	name, ok := tenantOfToken(tok)
	if !ok || h.cfg.Registry == nil || h.cfg.AdminToken == "" {
		return "", errUnauthorized
	}
	t, err := h.cfg.Registry.GetTenant(ctx, name)
	if err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return "", errUnauthorized
		}
		return "", err
	}
	if subtle.ConstantTimeCompare([]byte(hashToken(tok)), []byte(t.TokenHash)) != 1 {
		return "", errUnauthorized
	}
	return name, nil
}

// e2bTenant returns the tenant whose E2B API key key is: its token, or
// "e2b_" and its token's secret, the shape E2B's keys have (an SDK that
// checks the shape takes it). The second names no tenant, so each is
// tried: a hash per tenant.
//
// A key found is remembered (by its hash) with its tenant, so that the
// next call checks that one tenant's record as a full token would; a
// tenant deleted, or given a new token, fails that check and the key is
// forgotten.
func (h *Handler) e2bTenant(ctx context.Context, key string) (string, error) {
	secret, ok := strings.CutPrefix(key, "e2b_")
	if !ok {
		return h.tenantToken(ctx, key)
	}
	if h.cfg.Registry == nil || secret == "" {
		return "", errUnauthorized
	}
	sum := hashToken(key)
	if name, ok := h.e2bKeys.get(sum); ok {
		if _, err := h.tenantToken(ctx, tenantTokenPrefix+name+"_"+secret); err == nil {
			return name, nil
		}
		h.e2bKeys.forget(sum)
	}
	list, err := h.cfg.Registry.ListTenants(ctx)
	if err != nil {
		return "", err
	}
	for _, t := range list {
		if subtle.ConstantTimeCompare([]byte(hashToken(tenantTokenPrefix+t.Name+"_"+secret)), []byte(t.TokenHash)) == 1 {
			h.e2bKeys.put(sum, t.Name)
			return t.Name, nil
		}
	}
	return "", errUnauthorized
}

// e2bKeyCache maps the hashes of E2B-shaped keys found to their tenants.
type e2bKeyCache struct {
	mu sync.Mutex
	m  map[string]string
}

// maxE2BKeys bounds the cache: past it, it starts again empty.
const maxE2BKeys = 4096

func (c *e2bKeyCache) get(sum string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	name, ok := c.m[sum]
	return name, ok
}

func (c *e2bKeyCache) put(sum, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxE2BKeys {
		c.m = map[string]string{}
	}
	c.m[sum] = name
}

func (c *e2bKeyCache) forget(sum string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, sum)
}

// tenantOfToken returns the tenant name a token claims to be for.
func tenantOfToken(tok string) (string, bool) {
	rest, ok := strings.CutPrefix(tok, tenantTokenPrefix)
	if !ok {
		return "", false
	}
	name, secret, ok := strings.Cut(rest, "_")
	if !ok || secret == "" || registry.CheckNodeName(name) != nil {
		return "", false
	}
	return name, true
}

func hashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// scope keeps a tenant's request to its own apps and sandboxes: a path
// naming another's app or sandbox fails as if it did not exist (a deploy
// to another's app name: 409). The admin's requests pass.
func (h *Handler) scope(r *http.Request) error {
	tenant, ok := registry.TenantOf(r.Context())
	if !ok {
		return nil
	}
	ctx := r.Context()
	if name := r.PathValue("name"); name != "" && strings.HasPrefix(r.Pattern, r.Method+" /v1/apps/") {
		ap, err := h.cfg.Registry.GetApp(ctx, name)
		switch {
		case errors.Is(err, registry.ErrNotFound):
			return nil // a deploy creates it; any other route finds nothing
		case err != nil:
			return err
		case ap.Tenant == tenant:
			return nil
		case r.Method == http.MethodPost && strings.HasSuffix(r.Pattern, "/releases"):
			return fmt.Errorf("%w: %w: the app name %q is taken; pick another", errConflict, node.ErrNameTaken, name)
		}
		return notFoundApp(name, registry.ErrNotFound)
	}
	if id := r.PathValue("id"); id != "" && strings.Contains(r.Pattern, "/sandboxes/") {
		sb, err := h.cfg.Registry.GetSandbox(ctx, id)
		switch {
		case errors.Is(err, registry.ErrNotFound):
			return nil // the sandbox routes answer 404 themselves
		case err != nil:
			return err
		case sb.Tenant != tenant:
			return fmt.Errorf("%w: no sandbox %q", registry.ErrNotFound, id)
		}
	}
	return nil
}

func (h *Handler) tenantRoutes() {
	h.adminRoute("POST /v1/tenants", h.createTenant)
	h.adminRoute("GET /v1/tenants", h.listTenants)
	h.adminRoute("DELETE /v1/tenants/{tenant}", h.deleteTenant)
}

func (h *Handler) createTenant(w http.ResponseWriter, r *http.Request) error {
	if h.cfg.Registry == nil {
		return fmt.Errorf("%w: this server keeps no tenants", errNoRoute)
	}
	var req wire.TenantRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := registry.CheckNodeName(req.Name); err != nil {
		return fmt.Errorf("%w: tenant %s", errBadRequest, strings.TrimPrefix(err.Error(), "node "))
	}
	var secret [24]byte
	rand.Read(secret[:])
	tok := tenantTokenPrefix + req.Name + "_" + hex.EncodeToString(secret[:])
	t := registry.Tenant{Name: req.Name, TokenHash: hashToken(tok), CreatedAt: time.Now().UTC()}
	if err := h.cfg.Registry.CreateTenant(r.Context(), t); err != nil {
		if errors.Is(err, registry.ErrExists) {
			return fmt.Errorf("%w: tenant %q exists; delete it first to issue a new token", errConflict, req.Name)
		}
		return err
	}
	writeJSON(w, http.StatusCreated, wire.Tenant{Name: t.Name, Token: tok, CreatedAt: t.CreatedAt})
	return nil
}

func (h *Handler) listTenants(w http.ResponseWriter, r *http.Request) error {
	out := []wire.Tenant{}
	if h.cfg.Registry != nil {
		ts, err := h.cfg.Registry.ListTenants(r.Context())
		if err != nil {
			return err
		}
		for _, t := range ts {
			out = append(out, wire.Tenant{Name: t.Name, CreatedAt: t.CreatedAt})
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// deleteTenant removes a tenant that owns nothing: its token stops
// working at once.
func (h *Handler) deleteTenant(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("tenant")
	if h.cfg.Registry == nil {
		return fmt.Errorf("%w: no tenant %q", registry.ErrNotFound, name)
	}
	ctx := r.Context()
	if _, err := h.cfg.Registry.GetTenant(ctx, name); err != nil {
		return err
	}
	apps, err := h.cfg.Registry.ListApps(ctx)
	if err != nil {
		return err
	}
	sbs, err := h.cfg.Registry.ListSandboxes(ctx)
	if err != nil {
		return err
	}
	tpls, err := h.cfg.Registry.ListTemplates(ctx)
	if err != nil {
		return err
	}
	owned := ownedBy(name, apps, func(a registry.App) (string, string) { return a.Tenant, "app " + a.Name })
	owned = append(owned, ownedBy(name, sbs, func(s registry.Sandbox) (string, string) { return s.Tenant, "sandbox " + s.ID })...)
	owned = append(owned, ownedBy(name, tpls, func(t registry.Template) (string, string) { return t.Tenant, "template " + t.Name })...)
	if len(owned) > 0 {
		return fmt.Errorf("%w: tenant %q still owns %s; delete them first", errConflict, name, strings.Join(owned, ", "))
	}
	if err := h.cfg.Registry.DeleteTenant(ctx, name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ownedBy names the items of list that tenant owns (what says whose an
// item is, and what to call it).
func ownedBy[T any](tenant string, list []T, what func(T) (owner, name string)) []string {
	var out []string
	for _, x := range list {
		if owner, name := what(x); owner == tenant {
			out = append(out, name)
		}
	}
	return out
}
