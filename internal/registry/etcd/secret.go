package etcd

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Secret returns the cluster-wide secret called name (e.g. the admin
// token every process of a cluster shares): the value some process stored
// first, or, if none has, make()'s value, stored now. Two processes asking
// at once get the same value.
func (s *Store) Secret(ctx context.Context, name string, make func() string) (string, error) {
	k := s.key("secrets", name)
	v := make()
	octx, cancel := s.op(ctx)
	defer cancel()
	tr, err := s.cli.Txn(octx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, v)).
		Else(clientv3.OpGet(k)).
		Commit()
	if err != nil {
		return "", fmt.Errorf("etcd at %s: secret %s: %w", s.endpoints, name, s.err(ctx, err))
	}
	if tr.Succeeded {
		return v, nil
	}
	kvs := tr.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 || len(kvs[0].Value) == 0 {
		return "", fmt.Errorf("%w: secret %s vanished or is empty", ErrCorrupt, name)
	}
	return string(kvs[0].Value), nil
}
