package wasm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	xsys "github.com/tetratelabs/wazero/experimental/sys"

	"github.com/frostdev/frost/internal/guestfs"
	"github.com/frostdev/frost/internal/runtime"
)

// Freeze and thaw. A program's image is its base state (see program.base):
// three parts, "memory" (the linear memory, byte for byte), "globals" (every
// mutable global, 8 bytes little-endian each, in index order) and "fs" (the
// guest file system, guestfs's image encoding). Compiled code is not part of
// it: the release's module is, verified by its digest, and wazero's cache
// holds its compilation.

// imageVersion names the image format; bump it when the parts change
// meaning (for example when the rewrite adds or reorders globals).
const imageVersion = "frost-wasm/1"

var (
	_ runtime.Freezer     = (*program)(nil)
	_ runtime.Thawer      = (*Runtime)(nil)
	_ runtime.PartBuffers = (*Runtime)(nil)
)

// ImageVersion implements runtime.Thawer.
func (r *Runtime) ImageVersion() string { return imageVersion }

// PartBuffer implements runtime.PartBuffers: an image's memory is read
// into a buffer from imageBuffers, resident since an earlier thaw; the
// program it wakes keeps it as its base state and gives it back when it
// freezes.
func (r *Runtime) PartBuffer(name string, size int64) []byte {
	if name != "memory" || size < minPooledBuffer || size > frozenKeep {
		return nil
	}
	return imageBuffers.get(int(size))[:size]
}

// Image implements runtime.Freezer.
func (p *program) Image() (*runtime.Image, error) {
	if p.shape != ShapeHTTPWasm || !p.reuse {
		return nil, nil // every request starts afresh: nothing to restore
	}
	base := p.base.Load()
	if base == nil || !base.hold() {
		return nil, fmt.Errorf("%w: the program is frozen", runtime.ErrClosed)
	}
	defer base.drop()
	memory := base.memory
	if base.lent {
		memory = bytes.Clone(memory) // the image outlives the hold
	}
	globals := make([]byte, 8*len(base.globals))
	for i, g := range base.globals {
		binary.LittleEndian.PutUint64(globals[8*i:], g)
	}
	fs, err := base.fs.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("wasm: image of the file system: %w", err)
	}
	return &runtime.Image{
		Version: imageVersion,
		Parts:   map[string][]byte{"memory": memory, "globals": globals, "fs": fs},
		Meta: map[string]string{
			"shape":          p.shape,
			"globals":        strconv.Itoa(len(base.globals)),
			"memory_pages":   strconv.Itoa(len(base.memory) / pageSize),
			"init_reads_env": strconv.FormatBool(p.initReadsEnv.Load()),
		},
	}, nil
}

// decode checks that img fits this program and returns its state, which
// keeps the image's memory buffer.
func (p *program) decode(img *runtime.Image) (*snapshot, bool, error) {
	if img.Version != imageVersion {
		return nil, false, fmt.Errorf("image format %q, this runtime reads %q", img.Version, imageVersion)
	}
	if p.shape != ShapeHTTPWasm || !p.reuse {
		return nil, false, errors.New("this program starts afresh for every request and has no image")
	}
	mem, globals, fsb := img.Parts["memory"], img.Parts["globals"], img.Parts["fs"]
	if mem == nil || globals == nil || fsb == nil {
		return nil, false, errors.New("image lacks a memory, globals or fs part")
	}
	if len(mem)%pageSize != 0 {
		return nil, false, fmt.Errorf("memory of %d bytes is not whole pages", len(mem))
	}
	if m, ok := p.c.mod.ExportedMemories()["memory"]; ok {
		pages := uint32(len(mem) / pageSize)
		if pages < m.Min() {
			return nil, false, fmt.Errorf("memory of %d pages, the module starts with %d", pages, m.Min())
		}
		if max, ok := m.Max(); ok && pages > max {
			return nil, false, fmt.Errorf("memory of %d pages, the module allows %d", pages, max)
		}
	}
	if int64(len(mem)) > p.spec.Release.Limits.MemoryBytes && p.spec.Release.Limits.MemoryBytes > 0 {
		return nil, false, fmt.Errorf("memory of %d bytes is over the app's limit", len(mem))
	}
	want := 0
	for _, g := range p.c.info.Globals {
		if g.Mutable {
			want++
		}
	}
	if len(globals) != 8*want {
		return nil, false, fmt.Errorf("%d bytes of globals, the module has %d mutable globals", len(globals), want)
	}
	s := &snapshot{memory: mem, globals: make([]uint64, want), lent: img.Lent}
	s.refs.Store(1) // the program's, as its base
	for i := range s.globals {
		s.globals[i] = binary.LittleEndian.Uint64(globals[8*i:])
	}
	fs, err := guestfs.UnmarshalImage(fsb)
	if err != nil {
		return nil, false, fmt.Errorf("file system: %v", err)
	}
	s.fs = fs
	return s, img.Meta["init_reads_env"] == "true", nil
}

// Wake implements runtime.Freezer.
func (p *program) Wake(ctx context.Context, img *runtime.Image) (runtime.Boot, error) {
	if img == nil {
		if err := p.boot(ctx); err != nil {
			return 0, err
		}
	} else {
		snap, readsEnv, err := p.decode(img)
		if err != nil {
			return 0, fmt.Errorf("%w: %v", runtime.ErrBadImage, err)
		}
		p.initReadsEnv.Store(readsEnv)
		p.tmpl.Store(nil)
		p.setBase(snap)
		p.frozen.Store(false)
	}
	if err := p.gate(ctx); err != nil {
		p.Freeze()
		if img != nil {
			return 0, fmt.Errorf("%w: liveness gate: %v", runtime.ErrBadImage, err)
		}
		return 0, fmt.Errorf("%w: liveness gate: %v", runtime.ErrInit, err)
	}
	if img == nil || p.tmpl.Load() != nil {
		// The gate's instance started from a state built by running
		// init under the environment (see template): a cold boot.
		return runtime.BootCold, nil
	}
	return runtime.BootThaw, nil
}

// gate is the liveness gate after a wake: an instance is restored (with
// the current environment), its liveness probe is called (a real call into
// its compiled code, reading its memory), and a file is written, synced,
// read back and removed on its file system. The instance then serves: it
// goes to the pool (request mode) or becomes the session instance.
func (p *program) gate(ctx context.Context) error {
	if p.shape != ShapeHTTPWasm {
		return nil
	}
	in, _, err := p.get(ctx)
	if err != nil {
		return err
	}
	if err := in.live(); err != nil {
		p.put(in, false)
		return err
	}
	if p.session {
		if err := in.restore(in.snap); err != nil {
			p.put(in, false)
			return err
		}
		p.sessSem <- struct{}{}
		old := p.sess
		p.sess = in
		<-p.sessSem
		if old != nil {
			p.discard(old)
		}
		return nil
	}
	p.put(in, true)
	return nil
}

// liveFile is the file the liveness gate writes.
const liveFile = "/.frost-liveness"

// live runs the liveness probe on a fresh instance.
func (in *instance) live() error {
	if in.liveFn != nil {
		in.arm(time.Second)
		res, err := in.liveFn.Call(in.ctx)
		fired := in.disarm()
		if err != nil || fired {
			return fmt.Errorf("probe call: %v", classify(err, fired, false))
		}
		want := uint64(0)
		if in.mem != nil {
			want = uint64(in.mem.Size() / pageSize)
		}
		if len(res) != 1 || res[0] != want || (in.snap != nil && want != uint64(len(in.snap.memory)/pageSize)) {
			return fmt.Errorf("probe answered %v, want %d pages", res, want)
		}
	}
	token := make([]byte, 16)
	rand.Read(token)
	f, errno := in.fs.OpenFile(liveFile, xsys.O_CREAT|xsys.O_TRUNC|xsys.O_RDWR, 0o600)
	if errno != 0 {
		return fmt.Errorf("file system: create: %v", errno)
	}
	_, werr := f.Write(token)
	serr := f.Sync()
	cerr := f.Close()
	if werr != 0 || serr != 0 || cerr != 0 {
		return fmt.Errorf("file system: write %v, sync %v, close %v", werr, serr, cerr)
	}
	got, err := in.fs.ReadFile(liveFile)
	if err != nil || !bytes.Equal(got, token) {
		return fmt.Errorf("file system: read back %x, %v; wrote %x", got, err, token)
	}
	if errno := in.fs.Unlink(liveFile); errno != 0 {
		return fmt.Errorf("file system: remove: %v", errno)
	}
	return nil
}

// Freeze implements runtime.Freezer.
func (p *program) Freeze() {
	p.sessSem <- struct{}{}
	sess := p.sess
	p.sess = nil
	<-p.sessSem
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.live -= len(idle)
	p.mu.Unlock()
	for _, in := range idle {
		in.close()
	}
	if sess != nil {
		p.discard(sess)
	}
	p.frozen.Store(true)
	p.setBase(nil)
	p.tmpl.Store(nil)
	regions.scrub()
	bigBuffers.release()
}

// Frozen implements runtime.Freezer.
func (p *program) Frozen() bool { return p.frozen.Load() }

// discard closes an instance that was taken with get.
func (p *program) discard(in *instance) {
	p.mu.Lock()
	p.live--
	p.mu.Unlock()
	in.close()
}

// handleSession serves a request on the session instance, one request at a
// time; the instance keeps its state between requests. A request that
// fails discards it, and the next one starts from the post-init state.
func (p *program) handleSession(ctx context.Context, req *runtime.Request) (*runtime.Response, runtime.Timing, error) {
	var t runtime.Timing
	select {
	case p.sessSem <- struct{}{}:
	case <-ctx.Done():
		return nil, t, fmt.Errorf("%w: %v", runtime.ErrClosed, ctx.Err())
	}
	defer func() { <-p.sessSem }()
	in := p.sess
	t.Boot = runtime.BootWarm
	if in == nil {
		var err error
		if in, t.Boot, err = p.get(ctx); err != nil {
			return nil, t, err
		}
		p.sess = in
	}
	// A session's state outlives the request: its call is not stopped
	// when the request's context ends (see runtime.Program).
	resp, err := in.run(context.Background(), req, &t)
	if err != nil {
		p.sess = nil
		p.discard(in)
		return nil, t, err
	}
	return resp, t, nil
}
