package guestfs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// buildGuest compiles testdata/<name> for wasip1 with the go tool running
// this test, and returns the module's bytes.
func buildGuest(t *testing.T, name string, flags ...string) []byte {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a wasip1 guest with the go tool; run without -short")
	}
	out := filepath.Join(t.TempDir(), name+".wasm")
	args := append(append([]string{"build"}, flags...), "-o", out, ".")
	cmd := exec.Command("go", args...)
	cmd.Dir = filepath.Join("testdata", name)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return wasm
}

// newRuntime returns a wazero runtime with WASI, closed when the test ends.
func newRuntime(t *testing.T) (context.Context, wazero.Runtime) {
	t.Helper()
	ctx := t.Context()
	rt := wazero.NewRuntime(ctx)
	t.Cleanup(func() { rt.Close(context.Background()) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	return ctx, rt
}

// moduleConfig mounts fsys at "/" and sends output to out.
func moduleConfig(fsys *FS, out *bytes.Buffer) wazero.ModuleConfig {
	return wazero.NewModuleConfig().
		WithStdout(out).
		WithStderr(out).
		WithFSConfig(wazero.NewFSConfig().(sysfs.FSConfig).WithSysFSMount(fsys, "/"))
}

// TestGuestProbe runs a real Go program against the FS through wazero's
// WASI: every os-package operation, escape attempts and the cap, then a
// Reset and a second run that must see the seed again.
func TestGuestProbe(t *testing.T) {
	wasm := buildGuest(t, "fsprobe")
	ctx, rt := newRuntime(t)
	compiled, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}

	f := New(Options{CapBytes: 1 << 20})
	if errno := f.Mkdir("seed", 0o755); errno != 0 {
		t.Fatal(errno)
	}
	populate(t, f, "seed/keep.txt=original\n", "seed/gone.txt=bye\n")
	img := f.Snapshot()

	run := func(phase string) {
		t.Helper()
		var out bytes.Buffer
		cfg := moduleConfig(f, &out).WithArgs("fsprobe", phase).WithName("")
		mod, err := rt.InstantiateModule(ctx, compiled, cfg)
		var exit *sys.ExitError
		if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 0) {
			t.Fatalf("%s: %v\n%s", phase, err, out.String())
		}
		if mod != nil {
			mod.Close(ctx)
		}
		t.Logf("%s:\n%s", phase, out.String())
		for line := range strings.Lines(out.String()) {
			if strings.HasPrefix(line, "FAIL") {
				t.Errorf("%s: %s", phase, strings.TrimSpace(line))
			}
		}
		if !strings.HasSuffix(out.String(), "done 0\n") {
			t.Errorf("%s did not finish cleanly", phase)
		}
	}

	run("mutate")
	// The host sees what the guest did, and the guest left nothing open.
	if b, _ := f.ReadFile("seed/keep.txt"); string(b) != "changed" {
		t.Errorf("host reads keep.txt = %q", b)
	}
	if got := dump(t, f); got != "seed/ seed/keep.txt=changed seed/new.txt=new work/ work/g.txt=hello\x00\x00\x00" {
		t.Errorf("tree after the guest: %q", got)
	}
	if f.OpenFiles() != 0 || !f.Dirty() {
		t.Errorf("OpenFiles %d Dirty %v", f.OpenFiles(), f.Dirty())
	}
	checkInvariants(t, f)

	f.Reset(img)
	run("verify")
	if f.Dirty() {
		t.Error("verify run changed the tree")
	}
}

// TestGuestReactorReset calls one instance many times, resetting the FS
// between calls as Frost does between requests: the instance's pre-opened
// "/" keeps working, each call sees the snapshot, and a descriptor leaked by
// one call is counted and cannot touch the next call's tree.
func TestGuestReactorReset(t *testing.T) {
	wasm := buildGuest(t, "fsreactor", "-buildmode=c-shared")
	ctx, rt := newRuntime(t)

	f := New(Options{CapBytes: 1 << 20})
	populate(t, f, "state.txt=base")
	img := f.Snapshot()

	var out bytes.Buffer
	cfg := moduleConfig(f, &out).WithStartFunctions("_initialize")
	mod, err := rt.InstantiateWithConfig(ctx, wasm, cfg)
	if err != nil {
		t.Fatalf("instantiate: %v\n%s", err, out.String())
	}
	call := func(name string) uint32 {
		t.Helper()
		out.Reset()
		res, err := mod.ExportedFunction(name).Call(ctx)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out.String())
		}
		return uint32(res[0])
	}

	for i := range 3 {
		if rc := call("step"); rc != 0 {
			t.Fatalf("step %d failed: %s", i, out.String())
		}
		if got := out.String(); got != "state=base root=state.txt\n" {
			t.Errorf("step %d saw %q", i, got)
		}
		if b, _ := f.ReadFile("state.txt"); string(b) != "base+x" || f.OpenFiles() != 0 {
			t.Errorf("step %d: state %q, %d open", i, b, f.OpenFiles())
		}
		f.Reset(img)
	}

	if rc := call("leak"); rc != 0 {
		t.Fatalf("leak failed: %s", out.String())
	}
	if f.OpenFiles() != 1 {
		t.Errorf("leaked descriptor not counted: OpenFiles %d", f.OpenFiles())
	}
	f.Reset(img)
	if rc := call("useLeaked"); rc != 0 {
		t.Errorf("write through a descriptor from before Reset got through: %s", out.String())
	}
	if !strings.Contains(out.String(), "Bad file number") { // EBADF, as Go's wasip1 syscall names it
		t.Errorf("leaked write error: %q", out.String())
	}
	if b, _ := f.ReadFile("state.txt"); string(b) != "base" || f.Dirty() {
		t.Errorf("after the stale write: %q, dirty %v", b, f.Dirty())
	}
	if rc := call("step"); rc != 0 || out.String() != "state=base root=state.txt\n" {
		t.Errorf("step after leak: %d %q", rc, out.String())
	}
	if err := mod.Close(ctx); err != nil {
		t.Error(err)
	}
	if f.OpenFiles() != 0 {
		t.Errorf("OpenFiles %d after the module closed", f.OpenFiles())
	}
}
