package node

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/runtime"
	"github.com/frostdev/frost/internal/testguest"
)

// FuzzDeployModule deploys arbitrary bytes as a module: the deploy either
// succeeds or is refused with one of the runtime's deploy errors (never a
// panic, never another error), and the app deployed before keeps serving.
func FuzzDeployModule(f *testing.F) {
	hello, err := os.ReadFile(testguest.Path(f, "hello-c"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(hello)
	f.Add(hello[:len(hello)/2])
	f.Add([]byte("\x00asm\x01\x00\x00\x00"))
	f.Add([]byte("not wasm at all"))
	mutated := bytes.Clone(hello)
	mutated[len(mutated)/3] ^= 0xff
	f.Add(mutated)
	n := newTestNode(f)
	deployGuest(f, n, "good", "hello-c")
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, module []byte) {
		info, err := n.blobs.Put(ctx, "", bytes.NewReader(module), 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = n.Deploy(ctx, "fuzzed", api.DeployRequest{Module: info.Digest})
		if err != nil && !errors.Is(err, runtime.ErrInvalidCode) && !errors.Is(err, runtime.ErrUnsupportedShape) &&
			!errors.Is(err, runtime.ErrInit) && !errors.Is(err, runtime.ErrMemoryLimit) {
			t.Fatalf("deploy of %d bytes: unexpected error %v", len(module), err)
		}
		if w := get(n, "http://good.localhost/"); w.Code != 200 {
			t.Fatalf("the good app after a fuzzed deploy: %d %s", w.Code, w.Body)
		}
	})
}
