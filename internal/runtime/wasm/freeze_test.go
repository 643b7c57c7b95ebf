package wasm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"maps"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/runtime"
	"github.com/frostdev/frost/internal/testguest"
)

// logCounter counts guest log lines that contain a string.
type logCounter struct {
	mu    sync.Mutex
	lines []string
}

func (c *logCounter) sink(stream string, line []byte) {
	c.mu.Lock()
	c.lines = append(c.lines, string(line))
	c.mu.Unlock()
}

func (c *logCounter) count(s string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, l := range c.lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

func spec(t testing.TB, guest string, mode registry.Mode, env map[string]string, logs runtime.LogSink) runtime.Spec {
	t.Helper()
	code, err := os.ReadFile(testguest.Path(t, guest))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(code)
	return runtime.Spec{
		Release: registry.Release{ID: guest, App: guest, Module: hex.EncodeToString(sum[:]), Mode: mode,
			Limits: registry.Limits{MemoryBytes: 64 << 20, Timeout: 10 * time.Second}},
		Code: code, Env: env, Logs: logs,
	}
}

func body(t testing.TB, p runtime.Program, uri string) string {
	t.Helper()
	resp, _, err := p.Handle(context.Background(), get(uri))
	if err != nil {
		t.Fatalf("%s: %v", uri, err)
	}
	defer p.Release(resp)
	return string(resp.Body)
}

// TestThawSkipsInit: a program woken from an image serves the post-init
// state without running init; woken with no image it runs init (cold).
func TestThawSkipsInit(t *testing.T) {
	r := newRuntime(t)
	logs := &logCounter{}
	sp := spec(t, "probe", registry.ModeRequest, nil, logs.sink)
	p, err := r.Load(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	img, err := p.(runtime.Freezer).Image()
	if err != nil || img == nil {
		t.Fatalf("Image: %v, %v", img, err)
	}
	if logs.count("init ran") != 1 {
		t.Fatalf("init ran %d times at load, want 1", logs.count("init ran"))
	}

	frozen, err := r.LoadFrozen(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	defer frozen.Close(context.Background())
	f := frozen.(runtime.Freezer)
	if !f.Frozen() {
		t.Fatal("LoadFrozen returned a live program")
	}
	if _, _, err := frozen.Handle(context.Background(), get("/")); !errors.Is(err, runtime.ErrClosed) {
		t.Fatalf("Handle on a frozen program: %v, want ErrClosed", err)
	}
	if _, err := f.Wake(context.Background(), img); err != nil {
		t.Fatal(err)
	}
	if n := logs.count("init ran"); n != 1 {
		t.Fatalf("thaw ran init (%d runs)", n)
	}
	if got := body(t, frozen, "/"); !strings.Contains(got, `"counter":0`) || !strings.Contains(got, `"init":1`) {
		t.Fatalf("after thaw: %s", got)
	}

	f.Freeze()
	if st := frozen.Stats(); st.Instances != 0 || !f.Frozen() {
		t.Fatalf("after Freeze: %+v frozen=%v", st, f.Frozen())
	}
	if _, err := f.Wake(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if n := logs.count("init ran"); n != 2 {
		t.Fatalf("cold wake ran init %d times in all, want 2", n)
	}
	if got := body(t, frozen, "/"); !strings.Contains(got, `"init":1`) {
		t.Fatalf("after cold wake: %s", got)
	}
}

// TestWakeRefusesBadImages: an image that does not fit the program is
// ErrBadImage and the program stays frozen.
func TestWakeRefusesBadImages(t *testing.T) {
	r := newRuntime(t)
	sp := spec(t, "probe", registry.ModeRequest, nil, nil)
	p, err := r.Load(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	good, _ := p.(runtime.Freezer).Image()
	bad := func(edit func(img *runtime.Image)) *runtime.Image {
		img := &runtime.Image{Version: good.Version, Parts: maps.Clone(good.Parts), Meta: maps.Clone(good.Meta)}
		edit(img)
		return img
	}
	cases := map[string]*runtime.Image{
		"version":        bad(func(i *runtime.Image) { i.Version = "frost-wasm/0" }),
		"no memory":      bad(func(i *runtime.Image) { delete(i.Parts, "memory") }),
		"half a page":    bad(func(i *runtime.Image) { i.Parts["memory"] = i.Parts["memory"][:pageSize/2] }),
		"too few pages":  bad(func(i *runtime.Image) { i.Parts["memory"] = nil; i.Parts["memory"] = []byte{} }),
		"globals short":  bad(func(i *runtime.Image) { i.Parts["globals"] = i.Parts["globals"][1:] }),
		"fs not an fs":   bad(func(i *runtime.Image) { i.Parts["fs"] = []byte("not a file system image") }),
		"over the limit": bad(func(i *runtime.Image) { i.Parts["memory"] = make([]byte, 65<<20) }),
	}
	for name, img := range cases {
		t.Run(name, func(t *testing.T) {
			frozen, err := r.LoadFrozen(context.Background(), sp)
			if err != nil {
				t.Fatal(err)
			}
			defer frozen.Close(context.Background())
			f := frozen.(runtime.Freezer)
			if _, err := f.Wake(context.Background(), img); !errors.Is(err, runtime.ErrBadImage) {
				t.Fatalf("Wake = %v, want ErrBadImage", err)
			}
			if !f.Frozen() {
				t.Fatal("a refused image left the program live")
			}
		})
	}
}

// TestImageHoldsNoSecretsAndEnvIsCurrent: init runs under an empty
// environment, so the image holds no secret; a program woken later sees the
// environment of the moment, for a guest that reads it lazily (wasi-libc)
// and for one that reads it in init (Go).
func TestImageHoldsNoSecretsAndEnvIsCurrent(t *testing.T) {
	r := newRuntime(t)
	for _, c := range []struct {
		guest, uri, key, want string
		readsEnv              string
	}{
		{"probe", "/", "SECRET_ENV", `"env":"%s"`, "false"},
		{"go-httpwasm", "/?env=SECRET_ENV", "SECRET_ENV", "env=%s\n", "true"},
	} {
		t.Run(c.guest, func(t *testing.T) {
			secret := "hunter2-" + c.guest
			sp := spec(t, c.guest, registry.ModeRequest, map[string]string{c.key: secret}, nil)
			p, err := r.Load(context.Background(), sp)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close(context.Background())
			if got := body(t, p, c.uri); !strings.Contains(got, strings.Replace(c.want, "%s", secret, 1)) {
				t.Fatalf("live program: %q lacks the environment", got)
			}
			img, err := p.(runtime.Freezer).Image()
			if err != nil {
				t.Fatal(err)
			}
			for name, part := range img.Parts {
				if bytes.Contains(part, []byte(secret)) {
					t.Fatalf("part %s holds the secret", name)
				}
			}
			if img.Meta["init_reads_env"] != c.readsEnv {
				t.Errorf("init_reads_env = %q, want %s", img.Meta["init_reads_env"], c.readsEnv)
			}
			// Rotate while frozen: the woken program sees the new value.
			frozen, err := r.LoadFrozen(context.Background(), sp)
			if err != nil {
				t.Fatal(err)
			}
			defer frozen.Close(context.Background())
			frozen.SetEnv(map[string]string{c.key: "rotated"})
			boot, err := frozen.(runtime.Freezer).Wake(context.Background(), img)
			if err != nil {
				t.Fatal(err)
			}
			// A guest that reads its environment in init reruns init under
			// the rotated value: that wake is a cold boot, and says so.
			if want := map[string]runtime.Boot{"false": runtime.BootThaw, "true": runtime.BootCold}[c.readsEnv]; boot != want {
				t.Errorf("woke as %v, want %v", boot, want)
			}
			if got := body(t, frozen, c.uri); !strings.Contains(got, strings.Replace(c.want, "%s", "rotated", 1)) {
				t.Fatalf("after thaw with a rotated value: %q", got)
			}
		})
	}
}

// TestSessionKeepsStateUntilFrozen: a session instance keeps its state
// between requests; a failed request or a freeze starts it afresh from the
// post-init state.
func TestSessionKeepsStateUntilFrozen(t *testing.T) {
	r := newRuntime(t)
	sp := spec(t, "probe", registry.ModeSession, nil, nil)
	p, err := r.Load(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	counter := func(uri string) (string, runtime.Boot) {
		resp, tm, err := p.Handle(context.Background(), get(uri))
		if err != nil {
			return err.Error(), tm.Boot
		}
		defer p.Release(resp)
		b := string(resp.Body)
		i := strings.Index(b, `"counter":`)
		return b[i+10 : i+11], tm.Boot
	}
	var got []string
	for i := 0; i < 3; i++ {
		c, boot := counter("/")
		got = append(got, c+"/"+boot.String())
	}
	if s := strings.Join(got, ","); s != "0/thaw,1/warm,2/warm" {
		t.Fatalf("session counters %s, want 0/thaw,1/warm,2/warm", s)
	}
	if st := p.Stats(); st.Instances != 1 {
		t.Fatalf("%d instances, want 1", st.Instances)
	}
	if msg, _ := counter("/?trap=1"); !strings.Contains(msg, "trap") {
		t.Fatalf("trap: %s", msg)
	}
	if c, boot := counter("/"); c != "0" || boot != runtime.BootThaw {
		t.Fatalf("after a failed request: counter %s boot %s, want 0 thaw", c, boot)
	}
	f := p.(runtime.Freezer)
	img, _ := f.Image()
	f.Freeze()
	if st := p.Stats(); st.Instances != 0 {
		t.Fatalf("frozen with %d instances", st.Instances)
	}
	if _, err := f.Wake(context.Background(), img); err != nil {
		t.Fatal(err)
	}
	if c, boot := counter("/"); c != "0" || boot != runtime.BootWarm {
		t.Fatalf("after thaw: counter %s boot %s, want 0 warm (the gated instance)", c, boot)
	}
}

// TestLentImageMemoryIsRecycled: a thaw's memory, read into a buffer the
// runtime lent, is the program's base state while it is awake; it
// outlives a freeze while an instance made from it still exists, then
// comes back to the pool zeroed (nothing of a frozen app stays in it) and
// the next thaw reads into the same, resident buffer.
func TestLentImageMemoryIsRecycled(t *testing.T) {
	imageBuffers.release()
	t.Cleanup(imageBuffers.release)
	ctx := context.Background()
	r := newRuntime(t)
	sp := spec(t, "probe", registry.ModeRequest, nil, nil)
	p, err := r.Load(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	img, err := p.(runtime.Freezer).Image()
	if err != nil {
		t.Fatal(err)
	}
	prog, err := r.LoadFrozen(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close(ctx)
	frozen := prog.(*program)
	lend := func() *runtime.Image {
		mem := img.Parts["memory"]
		buf := r.PartBuffer("memory", int64(len(mem)))
		if len(buf) != len(mem) {
			t.Fatalf("PartBuffer lent %d bytes for a memory of %d", len(buf), len(mem))
		}
		copy(buf, mem)
		return &runtime.Image{Version: img.Version, Meta: img.Meta, Lent: true,
			Parts: map[string][]byte{"memory": buf, "globals": img.Parts["globals"], "fs": img.Parts["fs"]}}
	}
	lent := lend()
	buf := lent.Parts["memory"]
	if _, err := frozen.Wake(ctx, lent); err != nil {
		t.Fatal(err)
	}
	if got := body(t, frozen, "/"); !strings.Contains(got, `"init":1`) {
		t.Fatalf("after thaw: %s", got)
	}
	base := frozen.base.Load()
	in, _, err := frozen.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	frozen.Freeze()
	if n := imageBuffers.pooled(); n != 0 || !bytes.Equal(buf, img.Parts["memory"]) {
		t.Fatalf("the base state was given back (%d bytes pooled) while an instance made from it lives", n)
	}
	frozen.discard(in)
	if n := imageBuffers.pooled(); n != int64(cap(buf)) {
		t.Fatalf("%d bytes pooled after the last holder went, want the buffer's %d", n, cap(buf))
	}
	if i := bytes.IndexFunc(buf, func(r rune) bool { return r != 0 }); i >= 0 {
		t.Fatalf("the pooled buffer still holds the frozen app's memory at %d", i)
	}
	if base.hold() {
		t.Fatal("a given-back state can still be held")
	}
	again := lend()
	if &again.Parts["memory"][0] != &buf[0] {
		t.Error("the next thaw did not get the pooled buffer")
	}
	if _, err := frozen.Wake(ctx, again); err != nil {
		t.Fatal(err)
	}
	if got := body(t, frozen, "/"); !strings.Contains(got, `"init":1`) {
		t.Fatalf("after the second thaw: %s", got)
	}
}
