package wasmbin

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

var goGuest struct {
	once sync.Once
	dir  string
	bin  []byte
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if goGuest.dir != "" {
		os.RemoveAll(goGuest.dir)
	}
	os.Exit(code)
}

// helloWasm builds testdata/hello with GOOS=wasip1 GOARCH=wasm once per test
// binary and returns the module: a real multi-MiB Go module.
func helloWasm(t testing.TB) []byte {
	t.Helper()
	goGuest.once.Do(func() {
		if goGuest.dir, goGuest.err = os.MkdirTemp("", "wasmbin-hello-"); goGuest.err != nil {
			return
		}
		out := filepath.Join(goGuest.dir, "hello.wasm")
		cmd := exec.Command("go", "build", "-o", out, "./testdata/hello")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			goGuest.err = errors.New("go build (GOOS=wasip1): " + err.Error() + "\n" + string(msg))
			return
		}
		goGuest.bin, goGuest.err = os.ReadFile(out)
	})
	if goGuest.err != nil {
		t.Fatal(goGuest.err)
	}
	return goGuest.bin
}

// runGo runs a Go wasip1 module to completion and returns its stdout.
func runGo(t *testing.T, r wazero.Runtime, cm wazero.CompiledModule, args ...string) (string, api.Module, error) {
	t.Helper()
	var stdout bytes.Buffer
	cfg := wazero.NewModuleConfig().WithStdout(&stdout).WithStderr(os.Stderr).
		WithArgs(append([]string{"hello"}, args...)...).WithName("")
	mod, err := r.InstantiateModule(context.Background(), cm, cfg)
	var exit *sys.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 0 {
		err = nil
	}
	return stdout.String(), mod, err
}

func TestGoGuest(t *testing.T) {
	bin := helloWasm(t)
	m, err := Parse(bin)
	if err != nil {
		t.Fatal(err)
	}
	if !m.ImportsModule("wasi_snapshot_preview1") || m.ImportsModule("env") {
		t.Error("ImportsModule is wrong for a wasip1 module")
	}
	if ft, ok := m.ExportedFunc("_start"); !ok || len(ft.Params) != 0 || len(ft.Results) != 0 {
		t.Errorf("ExportedFunc(_start) = %v, %v", ft, ok)
	}
	if _, ok := m.ExportedFunc("memory"); ok {
		t.Error("ExportedFunc found a memory")
	}
	if m.MutatesTables || m.DropsSegments {
		t.Errorf("MutatesTables=%v DropsSegments=%v for a Go program", m.MutatesTables, m.DropsSegments)
	}
	t.Logf("%d bytes, %d functions, %d loops, %d globals", len(bin), len(m.Funcs), len(m.loops), len(m.Globals))

	inst := mustInstrument(t, bin, interruptAll)
	instYield := mustInstrument(t, bin, interruptYield)
	instHost := mustInstrument(t, bin, hostYield)
	ctx := context.Background()
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			var outputs []string
			for _, b := range [][]byte{bin, inst, instYield, instHost} {
				r := newRuntime(t, e.cfg())
				yieldHost(t, r)
				wasi_snapshot_preview1.MustInstantiate(ctx, r)
				cm, err := r.CompileModule(ctx, b)
				if err != nil {
					t.Fatal(err)
				}
				out, _, err := runGo(t, r, cm)
				if err != nil {
					t.Fatal(err)
				}
				outputs = append(outputs, out)
			}
			if !strings.Contains(outputs[0], "fib(25) = 75025") {
				t.Fatalf("unexpected output of the original:\n%s", outputs[0])
			}
			for _, out := range outputs[1:] {
				if out != outputs[0] {
					t.Fatalf("output changed:\n%s\nwant:\n%s", out, outputs[0])
				}
			}
		})
	}
}

// TestGoGuestInterrupt stops a Go program spinning in `for {}` from another
// goroutine. YieldEvery keeps a garbage collection of the test binary from
// stalling on the spinning guest.
func TestGoGuestInterrupt(t *testing.T) {
	inst := mustInstrument(t, helloWasm(t), interruptYield)
	ctx := context.Background()
	r := newRuntime(t, wazero.NewRuntimeConfigCompiler())
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	cm, err := r.CompileModule(ctx, inst)
	if err != nil {
		t.Fatal(err)
	}
	// Instantiate without running _start, so the test can reach the global
	// before the program spins.
	stdout := &lineWriter{lines: make(chan string, 4)}
	mod, err := r.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithStdout(stdout).
		WithArgs("hello", "spin").WithStartFunctions())
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := mod.ExportedFunction("_start").Call(ctx)
		errc <- err
	}()
	// Interrupt only once the guest has said it spins: a fixed sleep raced
	// the Go runtime's start on a loaded machine and trapped it before main.
	select {
	case line := <-stdout.lines:
		if line != "spinning" {
			t.Fatalf("first line = %q, want spinning", line)
		}
	case err := <-errc:
		t.Fatalf("the guest ended before spinning: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the guest did not start spinning in 30s")
	}
	mod.ExportedGlobal(DefaultInterruptExport).(api.MutableGlobal).Set(1)
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("err = %v, want an unreachable trap", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no trap 5s after the interrupt")
	}
}

// lineWriter sends each complete line written to it, without its newline.
// The guest writes from its own goroutine, so the test reads lines from the
// channel rather than a shared buffer.
type lineWriter struct {
	partial []byte
	lines   chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.lines <- string(w.partial[:i])
		w.partial = w.partial[i+1:]
	}
}
