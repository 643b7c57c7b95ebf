package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/snapshot"
)

func TestPutGetRoundTrip(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	s := open(t, dir, snapshot.Options{Now: clk.Now})
	rel := releaseID("a1")
	parts := sampleParts(1)

	stored := put(t, s, manifestFor("app", rel), parts)

	if stored.Format != snapshot.FormatVersion {
		t.Errorf("Format = %d, want %d", stored.Format, snapshot.FormatVersion)
	}
	if !stored.Created.Equal(clk.Now()) {
		t.Errorf("Created = %v, want the clock's %v", stored.Created, clk.Now())
	}
	want := sortedParts(parts)
	var wantInfos []snapshot.PartInfo
	var total int64
	for _, p := range want {
		wantInfos = append(wantInfos, snapshot.PartInfo{Name: p.Name, Digest: sha(p.Data), Size: int64(len(p.Data))})
		total += int64(len(p.Data))
	}
	if !reflect.DeepEqual(stored.Parts, wantInfos) {
		t.Errorf("Parts = %+v, want %+v", stored.Parts, wantInfos)
	}
	if stored.Size() != total {
		t.Errorf("Size() = %d, want %d", stored.Size(), total)
	}

	m, got := get(t, s, wantFor(stored))
	if !reflect.DeepEqual(m, stored) {
		t.Errorf("Get manifest = %+v, want what Put returned, %+v", m, stored)
	}
	equalParts(t, got, want)
	if names := dirNames(t, filepath.Join(dir, rel)); !slices.Equal(names, partFiles(stored)) {
		t.Errorf("snapshot directory holds %v, want %v", names, partFiles(stored))
	}

	// The store holds its own copy: changing the caller's bytes changes nothing.
	parts[0].Data[0] ^= 0xff
	_, got = get(t, s, wantFor(stored))
	equalParts(t, got, sortedParts(sampleParts(1)))
}

func TestPutReplaces(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, snapshot.Options{})
	rel := releaseID("r")
	put(t, s, manifestFor("app", rel), sampleParts(1))
	v2 := sampleParts(2)
	m2 := put(t, s, manifestFor("app", rel), v2)

	_, got := get(t, s, wantFor(m2))
	equalParts(t, got, sortedParts(v2))
	// The first snapshot's parts are gone; only the second's remain.
	if names := dirNames(t, filepath.Join(dir, rel)); !slices.Equal(names, partFiles(m2)) {
		t.Errorf("after replacing, directory holds %v, want %v", names, partFiles(m2))
	}
	if list, _ := s.List(); len(list) != 1 {
		t.Errorf("List has %d snapshots, want 1", len(list))
	}
}

func TestPutKeepsIdenticalPart(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, snapshot.Options{})
	rel := releaseID("r")
	parts := sampleParts(1)
	m := put(t, s, manifestFor("app", rel), parts)
	path := filepath.Join(dir, rel, m.Parts[0].Digest)
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, manifestFor("app", rel), parts)
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Errorf("re-putting an identical part rewrote its file")
	}
}

func TestPutSameDataTwice(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, snapshot.Options{})
	data := randomBytes(7, 5000)
	parts := []snapshot.Part{{Name: "a", Data: data}, {Name: "b", Data: data}}
	m := put(t, s, manifestFor("app", releaseID("r")), parts)
	if names := dirNames(t, filepath.Join(dir, m.Release)); len(names) != 2 {
		t.Errorf("two parts with the same bytes should share one file, directory holds %v", names)
	}
	_, got := get(t, s, wantFor(m))
	equalParts(t, got, parts)
}

func TestPutInvalid(t *testing.T) {
	good := manifestFor("app", releaseID("r"))
	parts := []snapshot.Part{{Name: "memory", Data: []byte("x")}}
	tests := []struct {
		name  string
		edit  func(m *snapshot.Manifest)
		parts []snapshot.Part
	}{
		{"empty release", func(m *snapshot.Manifest) { m.Release = "" }, parts},
		{"short release", func(m *snapshot.Manifest) { m.Release = m.Release[:63] }, parts},
		{"upper-case release", func(m *snapshot.Manifest) { m.Release = strings.ToUpper(m.Release) }, parts},
		{"path in release", func(m *snapshot.Manifest) { m.Release = "../" + m.Release[3:] }, parts},
		{"empty app", func(m *snapshot.Manifest) { m.App = "" }, parts},
		{"empty runtime", func(m *snapshot.Manifest) { m.Runtime = "" }, parts},
		{"empty runtime version", func(m *snapshot.Manifest) { m.RuntimeVersion = "" }, parts},
		{"empty part name", nil, []snapshot.Part{{Name: ""}}},
		{"upper-case part name", nil, []snapshot.Part{{Name: "Memory"}}},
		{"part name starting with a dot", nil, []snapshot.Part{{Name: ".memory"}}},
		{"part name with a slash", nil, []snapshot.Part{{Name: "a/b"}}},
		{"part name of 65 characters", nil, []snapshot.Part{{Name: strings.Repeat("a", 65)}}},
		{"part given twice", nil, []snapshot.Part{{Name: "memory"}, {Name: "memory"}}},
		{"meta too large", func(m *snapshot.Manifest) { m.Meta = map[string]string{"x": strings.Repeat("y", 2<<20)} }, parts},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, snapshot.Options{})
			m := good
			if tt.edit != nil {
				tt.edit(&m)
			}
			_, err := s.Put(context.Background(), m, tt.parts)
			wantSentinel(t, err, snapshot.ErrInvalid)
			if names := dirNames(t, dir); !slices.Equal(names, []string{"quarantine"}) {
				t.Errorf("a refused Put left %v in the store", names)
			}
		})
	}
	t.Run("longest part name", func(t *testing.T) {
		s := open(t, t.TempDir(), snapshot.Options{})
		p := []snapshot.Part{{Name: "a" + strings.Repeat("z.-_9", 12) + "abc", Data: []byte("x")}}
		if _, err := s.Put(context.Background(), good, p); err != nil {
			t.Fatalf("Put with a 64-character part name: %v", err)
		}
	})
}

func TestInvalidRelease(t *testing.T) {
	s := open(t, t.TempDir(), snapshot.Options{})
	ctx := context.Background()
	for _, rel := range []string{"", "..", "../../etc", strings.Repeat("A", 64), strings.Repeat("a", 63) + "/"} {
		t.Run(fmt.Sprintf("%q", rel), func(t *testing.T) {
			want := snapshot.Want{App: "app", Release: rel, Runtime: testRuntime, RuntimeVersion: testRuntimeVersion}
			_, _, err := s.Get(ctx, want)
			wantSentinel(t, err, snapshot.ErrInvalid)
			_, _, _, err = s.Stat(rel)
			wantSentinel(t, err, snapshot.ErrInvalid)
			wantSentinel(t, s.Delete(rel), snapshot.ErrInvalid)
			wantSentinel(t, s.Quarantine(rel, "x"), snapshot.ErrInvalid)
			wantSentinel(t, s.Export(ctx, want, &strings.Builder{}), snapshot.ErrInvalid)
		})
	}
}

func TestOpenInvalid(t *testing.T) {
	for _, tt := range []struct {
		name string
		dir  string
		opts snapshot.Options
	}{
		{"empty dir", "", snapshot.Options{}},
		{"negative MaxBytes", t.TempDir(), snapshot.Options{MaxBytes: -1}},
		{"negative TTL", t.TempDir(), snapshot.Options{TTL: -time.Second}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := snapshot.Open(tt.dir, tt.opts)
			wantSentinel(t, err, snapshot.ErrInvalid)
		})
	}
}

func TestStat(t *testing.T) {
	clk := newClock()
	s := open(t, t.TempDir(), snapshot.Options{Now: clk.Now})
	rel := releaseID("r")
	if _, _, _, err := s.Stat(rel); !errors.Is(err, snapshot.ErrNotFound) {
		t.Fatalf("Stat of a missing snapshot = %v, want ErrNotFound", err)
	}
	stored := put(t, s, manifestFor("app", rel), sampleParts(1))
	m, size, lastUsed, err := s.Stat(rel)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, stored) {
		t.Errorf("Stat manifest = %+v, want %+v", m, stored)
	}
	if size <= 0 || size != s.TotalBytes() {
		t.Errorf("Stat size = %d, TotalBytes = %d; want equal and positive", size, s.TotalBytes())
	}
	if !lastUsed.Equal(clk.Now()) {
		t.Errorf("last use = %v, want the Put's %v", lastUsed, clk.Now())
	}
	used := clk.Advance(time.Hour)
	get(t, s, wantFor(stored))
	if _, _, lastUsed, _ = s.Stat(rel); !lastUsed.Equal(used) {
		t.Errorf("after Get, last use = %v, want %v", lastUsed, used)
	}
}

func TestList(t *testing.T) {
	clk := newClock()
	s := open(t, t.TempDir(), snapshot.Options{Now: clk.Now})
	var want []snapshot.Info
	for _, app := range []string{"beta", "alpha"} {
		for i := range 2 {
			created := clk.Advance(time.Minute)
			m := put(t, s, manifestFor(app, releaseID(app+fmt.Sprint(i))), sampleParts(uint64(i)))
			_, size, _, err := s.Stat(m.Release)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, snapshot.Info{App: app, Release: m.Release, Size: size, LastUsed: created, Created: created})
		}
	}
	slices.SortFunc(want, func(a, b snapshot.Info) int {
		if a.App != b.App {
			return strings.Compare(a.App, b.App)
		}
		return strings.Compare(a.Release, b.Release)
	})
	got, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("List =\n%+v\nwant\n%+v", got, want)
	}
	var total int64
	for _, i := range got {
		total += i.Size
	}
	if total != s.TotalBytes() {
		t.Errorf("TotalBytes = %d, sum of List sizes = %d", s.TotalBytes(), total)
	}
}

func TestDelete(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, snapshot.Options{})
	a := put(t, s, manifestFor("app", releaseID("a")), sampleParts(1))
	b := put(t, s, manifestFor("app", releaseID("b")), sampleParts(2))
	if err := s.Delete(a.Release); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(context.Background(), wantFor(a)); !errors.Is(err, snapshot.ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(filepath.Join(dir, a.Release)); !os.IsNotExist(err) {
		t.Errorf("snapshot directory still there after Delete: %v", err)
	}
	if err := s.Delete(a.Release); err != nil {
		t.Errorf("deleting a missing snapshot = %v, want nil", err)
	}
	_, size, _, _ := s.Stat(b.Release)
	if s.TotalBytes() != size {
		t.Errorf("TotalBytes = %d, want b's %d", s.TotalBytes(), size)
	}
	get(t, s, wantFor(b))
}

func TestDeleteApp(t *testing.T) {
	tests := []struct {
		name      string
		keep      string
		wantCount int
		wantLeft  []string
	}{
		{"keep one", releaseID("a2"), 2, []string{"a2", "b1"}},
		{"keep none", "", 3, []string{"b1"}},
		{"keep another app's", releaseID("b1"), 3, []string{"b1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t, t.TempDir(), snapshot.Options{})
			for _, r := range []string{"a1", "a2", "a3"} {
				put(t, s, manifestFor("a", releaseID(r)), sampleParts(1))
			}
			put(t, s, manifestFor("b", releaseID("b1")), sampleParts(2))
			n, err := s.DeleteApp("a", tt.keep)
			if err != nil {
				t.Fatal(err)
			}
			if n != tt.wantCount {
				t.Errorf("DeleteApp removed %d, want %d", n, tt.wantCount)
			}
			var left, want []string
			list, _ := s.List()
			for _, i := range list {
				left = append(left, i.Release)
			}
			for _, r := range tt.wantLeft {
				want = append(want, releaseID(r))
			}
			slices.Sort(left)
			slices.Sort(want)
			if !slices.Equal(left, want) {
				t.Errorf("left %v, want %v", left, want)
			}
		})
	}
	t.Run("empty app", func(t *testing.T) {
		s := open(t, t.TempDir(), snapshot.Options{})
		_, err := s.DeleteApp("", "")
		wantSentinel(t, err, snapshot.ErrInvalid)
	})
}

// TestAtomicity checks that what a crash can leave behind is never taken
// for a snapshot, and that Open cleans it up.
func TestAtomicity(t *testing.T) {
	t.Run("leftover temporary file", func(t *testing.T) {
		dir := t.TempDir()
		s := open(t, dir, snapshot.Options{})
		m := put(t, s, manifestFor("app", releaseID("r")), sampleParts(1))
		tmp := filepath.Join(dir, m.Release, ".tmp-123456")
		writeFile(t, tmp, []byte("half a part"))
		get(t, s, wantFor(m)) // ignored by Get
		s = open(t, dir, snapshot.Options{})
		if _, err := os.Stat(tmp); !os.IsNotExist(err) {
			t.Errorf("Open left the temporary file: %v", err)
		}
		get(t, s, wantFor(m))
	})
	t.Run("parts without manifest", func(t *testing.T) {
		dir := t.TempDir()
		s := open(t, dir, snapshot.Options{})
		m := put(t, s, manifestFor("app", releaseID("r")), sampleParts(1))
		if err := os.Remove(filepath.Join(dir, m.Release, "manifest.json")); err != nil {
			t.Fatal(err)
		}
		_, _, err := s.Get(context.Background(), wantFor(m))
		wantSentinel(t, err, snapshot.ErrNotFound)
		s = open(t, dir, snapshot.Options{})
		if _, err := os.Stat(filepath.Join(dir, m.Release)); !os.IsNotExist(err) {
			t.Errorf("Open left the uncommitted snapshot directory: %v", err)
		}
		if list, _ := s.List(); len(list) != 0 || s.TotalBytes() != 0 {
			t.Errorf("after Open, List = %v and TotalBytes = %d, want nothing", list, s.TotalBytes())
		}
	})
	t.Run("unlisted part after a replacing Put", func(t *testing.T) {
		dir := t.TempDir()
		s := open(t, dir, snapshot.Options{})
		m := put(t, s, manifestFor("app", releaseID("r")), sampleParts(1))
		stale := filepath.Join(dir, m.Release, releaseID("an old part's digest"))
		writeFile(t, stale, []byte("old"))
		s = open(t, dir, snapshot.Options{})
		if _, err := os.Stat(stale); !os.IsNotExist(err) {
			t.Errorf("Open left a part the manifest does not list: %v", err)
		}
		get(t, s, wantFor(m))
	})
	t.Run("unparsable manifest is kept and reported", func(t *testing.T) {
		dir := t.TempDir()
		s := open(t, dir, snapshot.Options{})
		m := put(t, s, manifestFor("app", releaseID("r")), sampleParts(1))
		writeFile(t, filepath.Join(dir, m.Release, "manifest.json"), []byte("{not json"))
		s = open(t, dir, snapshot.Options{})
		_, _, err := s.Get(context.Background(), wantFor(m))
		wantSentinel(t, err, snapshot.ErrCorrupt)
		list, _ := s.List()
		if len(list) != 1 || list[0].App != "" || list[0].Size <= 0 {
			t.Errorf("List = %+v, want the broken snapshot with app \"\" and its size", list)
		}
	})
	t.Run("foreign entries are left alone", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "README"), []byte("x"))
		writeFile(t, filepath.Join(dir, "other", "f"), []byte("x"))
		open(t, dir, snapshot.Options{})
		if names := dirNames(t, dir); !slices.Equal(names, []string{"README", "other", "quarantine"}) {
			t.Errorf("store directory holds %v", names)
		}
	})
	t.Run("failed Put keeps the previous snapshot", func(t *testing.T) {
		dir := t.TempDir()
		s := open(t, dir, snapshot.Options{})
		v1 := sampleParts(1)
		m1 := put(t, s, manifestFor("app", releaseID("r")), v1)
		total := s.TotalBytes()
		// Fail after the first of the second snapshot's parts is written.
		ctx := &failingCtx{Context: context.Background(), okCalls: 3}
		_, err := s.Put(ctx, manifestFor("app", m1.Release), sampleParts(2))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Put = %v, want context.Canceled", err)
		}
		_, got := get(t, s, wantFor(m1))
		equalParts(t, got, sortedParts(v1))
		if names := dirNames(t, filepath.Join(dir, m1.Release)); !slices.Equal(names, partFiles(m1)) {
			t.Errorf("after a failed Put, directory holds %v, want %v", names, partFiles(m1))
		}
		if s.TotalBytes() != total {
			t.Errorf("TotalBytes = %d after a failed Put, want %d", s.TotalBytes(), total)
		}
	})
	t.Run("failed first Put leaves nothing", func(t *testing.T) {
		dir := t.TempDir()
		s := open(t, dir, snapshot.Options{})
		ctx := &failingCtx{Context: context.Background(), okCalls: 3}
		if _, err := s.Put(ctx, manifestFor("app", releaseID("r")), sampleParts(2)); !errors.Is(err, context.Canceled) {
			t.Fatalf("Put = %v, want context.Canceled", err)
		}
		if names := dirNames(t, dir); !slices.Equal(names, []string{"quarantine"}) {
			t.Errorf("a failed Put left %v", names)
		}
	})
}

// failingCtx reports no error for its first okCalls calls of Err, then
// context.Canceled: a Put cancelled part-way.
type failingCtx struct {
	context.Context
	mu      sync.Mutex
	okCalls int
}

func (c *failingCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.okCalls > 0 {
		c.okCalls--
		return nil
	}
	return context.Canceled
}

func TestLRU(t *testing.T) {
	// Dense parts, so disk use is about the data size.
	newParts := func(seed uint64) []snapshot.Part {
		return []snapshot.Part{{Name: "memory", Data: randomBytes(seed, 64<<10)}}
	}
	sizeOf := func(t *testing.T) int64 {
		s := open(t, t.TempDir(), snapshot.Options{})
		put(t, s, manifestFor("app", releaseID("x")), newParts(9))
		return s.TotalBytes()
	}

	t.Run("used one survives", func(t *testing.T) {
		one := sizeOf(t)
		clk := newClock()
		s := open(t, t.TempDir(), snapshot.Options{MaxBytes: 2*one + one/2, Now: clk.Now})
		a := put(t, s, manifestFor("app", releaseID("a")), newParts(1))
		clk.Advance(time.Second)
		b := put(t, s, manifestFor("app", releaseID("b")), newParts(2))
		clk.Advance(time.Second)
		get(t, s, wantFor(a)) // a is now more recent than b
		clk.Advance(time.Second)
		c := put(t, s, manifestFor("app", releaseID("c")), newParts(3))

		for _, m := range []snapshot.Manifest{a, c} {
			get(t, s, wantFor(m))
		}
		_, _, err := s.Get(context.Background(), wantFor(b))
		wantSentinel(t, err, snapshot.ErrNotFound)
		if s.TotalBytes() > 2*one+one/2 {
			t.Errorf("TotalBytes = %d, over the cap %d", s.TotalBytes(), 2*one+one/2)
		}
	})
	t.Run("just written is never evicted", func(t *testing.T) {
		clk := newClock()
		s := open(t, t.TempDir(), snapshot.Options{MaxBytes: 1024, Now: clk.Now})
		a := put(t, s, manifestFor("app", releaseID("a")), newParts(1))
		get(t, s, wantFor(a))
		clk.Advance(time.Second)
		b := put(t, s, manifestFor("app", releaseID("b")), newParts(2))
		get(t, s, wantFor(b))
		if _, _, err := s.Get(context.Background(), wantFor(a)); !errors.Is(err, snapshot.ErrNotFound) {
			t.Errorf("Get(a) = %v, want ErrNotFound: a should go to make room for b", err)
		}
	})
	t.Run("last use survives reopening", func(t *testing.T) {
		one := sizeOf(t)
		dir := t.TempDir()
		clk := newClock()
		opts := snapshot.Options{MaxBytes: 2*one + one/2, Now: clk.Now}
		s := open(t, dir, opts)
		a := put(t, s, manifestFor("app", releaseID("a")), newParts(1))
		putB := clk.Advance(time.Second)
		b := put(t, s, manifestFor("app", releaseID("b")), newParts(2))
		usedA := clk.Advance(time.Second)
		get(t, s, wantFor(a))

		s = open(t, dir, opts)
		for _, c := range []struct {
			m    snapshot.Manifest
			want time.Time
		}{{a, usedA}, {b, putB}} {
			if _, _, lastUsed, err := s.Stat(c.m.Release); err != nil || !lastUsed.Equal(c.want) {
				t.Errorf("after reopening, Stat(%s) last use = %v, %v; want %v", c.m.Release[:8], lastUsed, err, c.want)
			}
		}
		clk.Advance(time.Second)
		put(t, s, manifestFor("app", releaseID("c")), newParts(3))
		if _, _, err := s.Get(context.Background(), wantFor(b)); !errors.Is(err, snapshot.ErrNotFound) {
			t.Errorf("Get(b) = %v, want ErrNotFound: b was least recently used", err)
		}
		get(t, s, wantFor(a))
	})
}

func TestReap(t *testing.T) {
	clk := newClock()
	s := open(t, t.TempDir(), snapshot.Options{TTL: time.Hour, Now: clk.Now})
	old := put(t, s, manifestFor("app", releaseID("old")), sampleParts(1))
	gone := put(t, s, manifestFor("gone", releaseID("gone")), sampleParts(2))
	clk.Advance(30 * time.Minute)
	fresh := put(t, s, manifestFor("app", releaseID("fresh")), sampleParts(3))
	used := put(t, s, manifestFor("app", releaseID("used")), sampleParts(4))
	notCurrent := put(t, s, manifestFor("app", releaseID("not-current")), sampleParts(5))
	clk.Advance(31 * time.Minute)
	get(t, s, wantFor(used))
	// old and gone were written 61 minutes ago; fresh 31 minutes ago.

	var asked []string
	keep := func(app, release string) bool {
		asked = append(asked, app+"/"+release[:4])
		return app != "gone" && release != notCurrent.Release
	}
	removed, err := s.Reap(context.Background(), keep)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{old.Release, gone.Release, notCurrent.Release}
	slices.Sort(want)
	if !slices.Equal(removed, want) {
		t.Errorf("Reap removed %v, want %v", removed, want)
	}
	if len(asked) != 5 {
		t.Errorf("keep asked about %v, want all 5 snapshots", asked)
	}
	for _, m := range []snapshot.Manifest{fresh, used} {
		get(t, s, wantFor(m))
	}

	clk.Advance(2 * time.Hour)
	removed, err = s.Reap(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 {
		t.Errorf("after 2 idle hours Reap removed %v, want fresh and used", removed)
	}
	if s.TotalBytes() != 0 {
		t.Errorf("TotalBytes = %d after reaping all", s.TotalBytes())
	}
}

func TestReapEnforcesCap(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	s := open(t, dir, snapshot.Options{Now: clk.Now})
	a := put(t, s, manifestFor("app", releaseID("a")), sampleParts(1))
	clk.Advance(time.Second)
	b := put(t, s, manifestFor("app", releaseID("b")), sampleParts(2))
	_, sizeB, _, _ := s.Stat(b.Release)

	// Reopened with a cap that only b fits, the store is over it until Reap.
	s = open(t, dir, snapshot.Options{MaxBytes: sizeB, Now: clk.Now})
	removed, err := s.Reap(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{a.Release}) {
		t.Errorf("Reap removed %v, want only a, the least recently used", removed)
	}
	get(t, s, wantFor(b))
}

func TestQuarantine(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	s := open(t, dir, snapshot.Options{Now: clk.Now})
	m := put(t, s, manifestFor("app", releaseID("r")), sampleParts(1))
	reason := "part \"memory\" has sha256 0123456789ab…, manifest says ba9876543210…"
	if err := s.Quarantine(m.Release, reason); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.Get(context.Background(), wantFor(m))
	wantSentinel(t, err, snapshot.ErrNotFound)
	if s.TotalBytes() != 0 {
		t.Errorf("TotalBytes = %d, quarantined snapshots count toward nothing", s.TotalBytes())
	}
	q := filepath.Join(dir, "quarantine", fmt.Sprintf("%s-%d", m.Release, clk.Now().UnixNano()))
	if got := string(readFile(t, filepath.Join(q, "reason.txt"))); !strings.HasPrefix(got, reason+"\n") {
		t.Errorf("reason.txt = %q, want it to start with the reason", got)
	}
	if _, err := os.Stat(filepath.Join(q, "manifest.json")); err != nil {
		t.Errorf("quarantined snapshot lost its manifest: %v", err)
	}
	if err := s.Quarantine(m.Release, "again"); !errors.Is(err, snapshot.ErrNotFound) {
		t.Errorf("quarantining a missing snapshot = %v, want ErrNotFound", err)
	}
	// A reopened store does not bring it back.
	s = open(t, dir, snapshot.Options{Now: clk.Now})
	if list, _ := s.List(); len(list) != 0 {
		t.Errorf("after reopening, List = %v, want empty", list)
	}
}

func TestQuarantineBroken(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, snapshot.Options{})
	rel := releaseID("r")
	writeFile(t, filepath.Join(dir, rel, "manifest.json"), []byte("garbage"))
	if err := s.Quarantine(rel, "manifest does not parse"); err != nil {
		t.Fatalf("Quarantine of a snapshot with a broken manifest: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, rel)); !os.IsNotExist(err) {
		t.Errorf("snapshot directory still there: %v", err)
	}
}

func TestQuarantineKeepsNewest16(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	s := open(t, dir, snapshot.Options{Now: clk.Now})
	var want []string
	for i := range 20 {
		m := put(t, s, manifestFor("app", releaseID(fmt.Sprint(i))), []snapshot.Part{{Name: "memory", Data: []byte{byte(i)}}})
		now := clk.Advance(time.Second)
		if err := s.Quarantine(m.Release, fmt.Sprint("reason ", i)); err != nil {
			t.Fatal(err)
		}
		if i >= 4 {
			want = append(want, fmt.Sprintf("%s-%d", m.Release, now.UnixNano()))
		}
	}
	slices.Sort(want)
	if got := dirNames(t, filepath.Join(dir, "quarantine")); !slices.Equal(got, want) {
		t.Errorf("quarantine holds\n%v\nwant the newest 16\n%v", got, want)
	}
}

func TestQuarantineSameInstant(t *testing.T) {
	dir := t.TempDir()
	clk := newClock() // never advanced
	s := open(t, dir, snapshot.Options{Now: clk.Now})
	for range 3 {
		m := put(t, s, manifestFor("app", releaseID("r")), sampleParts(1))
		if err := s.Quarantine(m.Release, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if got := dirNames(t, filepath.Join(dir, "quarantine")); len(got) != 3 {
		t.Errorf("quarantine holds %v, want 3 distinct entries", got)
	}
}

// TestConcurrent runs every operation at once on a few releases, for the
// race detector and for the index to stay true to the disk.
func TestConcurrent(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, snapshot.Options{MaxBytes: 1 << 20})
	var rels []string
	for i := range 4 {
		rels = append(rels, releaseID(fmt.Sprint(i)))
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				rel := rels[(w+i)%len(rels)]
				m := manifestFor("app", rel)
				var err error
				switch (w + i) % 6 {
				case 0, 1:
					_, err = s.Put(ctx, m, sampleParts(uint64(i%3)))
				case 2, 3:
					_, _, err = s.Get(ctx, wantFor(m))
				case 4:
					err = s.Delete(rel)
				case 5:
					_, err = s.Reap(ctx, func(string, string) bool { return true })
					s.List()
					s.TotalBytes()
				}
				if err != nil && !errors.Is(err, snapshot.ErrNotFound) {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// The index agrees with a fresh scan of the disk.
	list, _ := s.List()
	fresh, _ := open(t, dir, snapshot.Options{}).List()
	if !reflect.DeepEqual(list, fresh) {
		t.Errorf("index after the run\n%+v\ndiffers from a fresh Open\n%+v", list, fresh)
	}
	for _, i := range list {
		get(t, s, snapshot.Want{App: "app", Release: i.Release, Runtime: testRuntime, RuntimeVersion: testRuntimeVersion})
	}
}

// TestGetIntoReadsIntoLentBuffers: GetInto reads a part into the buffer
// its Buffers lends when that has the part's size (and into a new one when
// it lends nil or a wrong size), and still verifies it: a flipped byte in
// a part read into a lent buffer is ErrCorrupt.
func TestGetIntoReadsIntoLentBuffers(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, snapshot.Options{})
	stored := put(t, s, manifestFor("app", releaseID("a1")), sampleParts(1))
	lent := map[string][]byte{}
	bufs := func(name string, size int64) []byte {
		switch name {
		case "memory":
			lent[name] = make([]byte, size)
		case "fs":
			lent[name] = make([]byte, size+1) // wrong: ignored
		default:
			return nil
		}
		return lent[name]
	}
	_, got, err := s.GetInto(context.Background(), wantFor(stored), bufs)
	if err != nil {
		t.Fatal(err)
	}
	equalParts(t, got, sortedParts(sampleParts(1)))
	for _, p := range got {
		if b, ok := lent[p.Name]; ok && len(b) > 0 && (&p.Data[0] == &b[0]) != (p.Name == "memory") {
			t.Errorf("part %q: read into the lent buffer %v", p.Name, &p.Data[0] == &b[0])
		}
	}

	for _, p := range stored.Parts {
		if p.Name == "memory" {
			path := filepath.Join(dir, stored.Release, p.Digest)
			b := readFile(t, path)
			b[len(b)/2] ^= 1
			writeFile(t, path, b)
		}
	}
	if _, _, err := s.GetInto(context.Background(), wantFor(stored), bufs); !errors.Is(err, snapshot.ErrCorrupt) {
		t.Fatalf("a damaged part read into a lent buffer: %v, want ErrCorrupt", err)
	}
}
