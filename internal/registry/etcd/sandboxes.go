package etcd

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/frostdev/frost/internal/registry"
)

// UpdateSandbox implements registry.Store. Like UpdateApp, fn runs again on
// the newer sandbox when another writer got there first.
func (s *Store) UpdateSandbox(ctx context.Context, id string, create bool, fn func(*registry.Sandbox) error) (registry.Sandbox, error) {
	if id == "" {
		return registry.Sandbox{}, errors.New("update sandbox: empty ID")
	}
	return update(ctx, s, s.key("sandboxes", id), "sandbox", id, create,
		func() registry.Sandbox { return registry.Sandbox{ID: id} }, fn,
		func(sb *registry.Sandbox) error {
			if sb.ID != id {
				return fmt.Errorf("update sandbox %q: fn changed its ID to %q", id, sb.ID)
			}
			return nil
		})
}

// GetSandbox implements registry.Store.
func (s *Store) GetSandbox(ctx context.Context, id string) (registry.Sandbox, error) {
	var sb registry.Sandbox
	_, err := s.get(ctx, s.key("sandboxes", id), "sandbox", id, &sb)
	return sb, err
}

// ListSandboxes implements registry.Store.
func (s *Store) ListSandboxes(ctx context.Context) ([]registry.Sandbox, error) {
	sbs, err := list[registry.Sandbox](ctx, s, "sandboxes", "sandbox")
	slices.SortFunc(sbs, func(a, b registry.Sandbox) int { return cmp.Compare(a.ID, b.ID) })
	return sbs, err
}

// DeleteSandbox implements registry.Store.
func (s *Store) DeleteSandbox(ctx context.Context, id string) error {
	return s.del(ctx, "sandboxes", "sandbox", id)
}

// PutTemplate implements registry.Store.
func (s *Store) PutTemplate(ctx context.Context, t registry.Template) error {
	if t.Name == "" {
		return errors.New("put template: empty name")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("put template %q: %w", t.Name, err)
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	if _, err := s.cli.Put(octx, s.key("templates", t.Key()), string(data)); err != nil {
		return fmt.Errorf("put template %q: %w", t.Key(), s.err(ctx, err))
	}
	return nil
}

// GetTemplate implements registry.Store.
func (s *Store) GetTemplate(ctx context.Context, key string) (registry.Template, error) {
	var t registry.Template
	_, err := s.get(ctx, s.key("templates", key), "template", key, &t)
	return t, err
}

// ListTemplates implements registry.Store.
func (s *Store) ListTemplates(ctx context.Context) ([]registry.Template, error) {
	ts, err := list[registry.Template](ctx, s, "templates", "template")
	slices.SortFunc(ts, func(a, b registry.Template) int { return cmp.Compare(a.Key(), b.Key()) })
	return ts, err
}

// DeleteTemplate implements registry.Store.
func (s *Store) DeleteTemplate(ctx context.Context, key string) error {
	return s.del(ctx, "templates", "template", key)
}

// CreateTenant implements registry.Store.
func (s *Store) CreateTenant(ctx context.Context, t registry.Tenant) error {
	if err := registry.CheckNodeName(t.Name); err != nil {
		return fmt.Errorf("create tenant: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("create tenant %q: %w", t.Name, err)
	}
	k := s.key("tenants", t.Name)
	octx, cancel := s.op(ctx)
	defer cancel()
	tr, err := s.cli.Txn(octx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).Then(clientv3.OpPut(k, string(data))).Commit()
	if err != nil {
		return fmt.Errorf("create tenant %q: %w", t.Name, s.err(ctx, err))
	}
	if !tr.Succeeded {
		return fmt.Errorf("tenant %q: %w", t.Name, registry.ErrExists)
	}
	return nil
}

// GetTenant implements registry.Store.
func (s *Store) GetTenant(ctx context.Context, name string) (registry.Tenant, error) {
	var t registry.Tenant
	_, err := s.get(ctx, s.key("tenants", name), "tenant", name, &t)
	return t, err
}

// ListTenants implements registry.Store.
func (s *Store) ListTenants(ctx context.Context) ([]registry.Tenant, error) {
	ts, err := list[registry.Tenant](ctx, s, "tenants", "tenant")
	slices.SortFunc(ts, func(a, b registry.Tenant) int { return cmp.Compare(a.Name, b.Name) })
	return ts, err
}

// DeleteTenant implements registry.Store.
func (s *Store) DeleteTenant(ctx context.Context, name string) error {
	return s.del(ctx, "tenants", "tenant", name)
}

// del removes one key of the directory kind, or is ErrNotFound.
func (s *Store) del(ctx context.Context, kind, what, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Delete(octx, s.key(kind, name))
	if err != nil {
		return fmt.Errorf("delete %s %q: %w", what, name, s.err(ctx, err))
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("delete %s %q: %w", what, name, registry.ErrNotFound)
	}
	return nil
}
