package bolt

import (
	"context"
	"errors"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/frostdev/frost/internal/registry"
)

// UpdateSandbox implements registry.Store. Like UpdateApp, fn runs inside
// the write transaction and must be quick; it may not change the ID.
func (s *Store) UpdateSandbox(ctx context.Context, id string, create bool, fn func(*registry.Sandbox) error) (registry.Sandbox, error) {
	if id == "" {
		return registry.Sandbox{}, errors.New("update sandbox: empty ID")
	}
	var out registry.Sandbox
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		var sb registry.Sandbox
		err := get(tx, sandboxesBucket, "sandbox", id, &sb)
		switch {
		case errors.Is(err, registry.ErrNotFound) && create:
			sb = registry.Sandbox{ID: id}
		case err != nil:
			return err
		}
		if err := fn(&sb); err != nil {
			return fnError{err}
		}
		if sb.ID != id {
			return fmt.Errorf("update sandbox %q: fn changed its ID to %q", id, sb.ID)
		}
		if err := put(tx.Bucket(sandboxesBucket), []byte(id), sb); err != nil {
			return fmt.Errorf("update sandbox %q: %w", id, err)
		}
		out = sb
		return nil
	})
	if fe := (fnError{}); errors.As(err, &fe) {
		return registry.Sandbox{}, fe.err
	}
	if err != nil {
		return registry.Sandbox{}, err
	}
	return out, nil
}

// GetSandbox implements registry.Store.
func (s *Store) GetSandbox(ctx context.Context, id string) (registry.Sandbox, error) {
	var sb registry.Sandbox
	err := s.view(ctx, func(tx *bbolt.Tx) error { return get(tx, sandboxesBucket, "sandbox", id, &sb) })
	return sb, err
}

// ListSandboxes implements registry.Store.
func (s *Store) ListSandboxes(ctx context.Context) ([]registry.Sandbox, error) {
	return list[registry.Sandbox](ctx, s, sandboxesBucket, "sandbox")
}

// DeleteSandbox implements registry.Store.
func (s *Store) DeleteSandbox(ctx context.Context, id string) error {
	return s.del(ctx, sandboxesBucket, "sandbox", id)
}

// PutTemplate implements registry.Store.
func (s *Store) PutTemplate(ctx context.Context, t registry.Template) error {
	if t.Name == "" {
		return errors.New("put template: empty name")
	}
	return s.update(ctx, func(tx *bbolt.Tx) error {
		if err := put(tx.Bucket(templatesBucket), []byte(t.Key()), t); err != nil {
			return fmt.Errorf("put template %q: %w", t.Key(), err)
		}
		return nil
	})
}

// GetTemplate implements registry.Store.
func (s *Store) GetTemplate(ctx context.Context, key string) (registry.Template, error) {
	var t registry.Template
	err := s.view(ctx, func(tx *bbolt.Tx) error { return get(tx, templatesBucket, "template", key, &t) })
	return t, err
}

// ListTemplates implements registry.Store.
func (s *Store) ListTemplates(ctx context.Context) ([]registry.Template, error) {
	return list[registry.Template](ctx, s, templatesBucket, "template")
}

// DeleteTemplate implements registry.Store.
func (s *Store) DeleteTemplate(ctx context.Context, key string) error {
	return s.del(ctx, templatesBucket, "template", key)
}

// CreateTenant implements registry.Store.
func (s *Store) CreateTenant(ctx context.Context, t registry.Tenant) error {
	if err := registry.CheckNodeName(t.Name); err != nil {
		return fmt.Errorf("create tenant: %w", err)
	}
	return s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(tenantsBucket)
		if b.Get([]byte(t.Name)) != nil {
			return fmt.Errorf("tenant %q: %w", t.Name, registry.ErrExists)
		}
		if err := put(b, []byte(t.Name), t); err != nil {
			return fmt.Errorf("create tenant %q: %w", t.Name, err)
		}
		return nil
	})
}

// GetTenant implements registry.Store.
func (s *Store) GetTenant(ctx context.Context, name string) (registry.Tenant, error) {
	var t registry.Tenant
	err := s.view(ctx, func(tx *bbolt.Tx) error { return get(tx, tenantsBucket, "tenant", name, &t) })
	return t, err
}

// ListTenants implements registry.Store.
func (s *Store) ListTenants(ctx context.Context) ([]registry.Tenant, error) {
	return list[registry.Tenant](ctx, s, tenantsBucket, "tenant")
}

// DeleteTenant implements registry.Store.
func (s *Store) DeleteTenant(ctx context.Context, name string) error {
	return s.del(ctx, tenantsBucket, "tenant", name)
}

// get decodes the value under key in bucket into v, or is ErrNotFound.
func get(tx *bbolt.Tx, bucket []byte, kind, key string, v any) error {
	data := tx.Bucket(bucket).Get([]byte(key))
	if data == nil {
		return fmt.Errorf("%s %q: %w", kind, key, registry.ErrNotFound)
	}
	if err := decode(data, v); err != nil {
		return fmt.Errorf("%s %q: %w", kind, key, err)
	}
	return nil
}

// list decodes every value of bucket, in key order.
func list[T any](ctx context.Context, s *Store, bucket []byte, kind string) ([]T, error) {
	var out []T
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var x T
			if err := decode(v, &x); err != nil {
				return fmt.Errorf("%s %q: %w", kind, k, err)
			}
			out = append(out, x)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list %ss: %w", kind, err)
	}
	return out, nil
}

// del removes key from bucket, or is ErrNotFound.
func (s *Store) del(ctx context.Context, bucket []byte, kind, key string) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucket)
		if b.Get([]byte(key)) == nil {
			return fmt.Errorf("delete %s %q: %w", kind, key, registry.ErrNotFound)
		}
		if err := b.Delete([]byte(key)); err != nil {
			return fmt.Errorf("delete %s %q: %w", kind, key, err)
		}
		return nil
	})
}
