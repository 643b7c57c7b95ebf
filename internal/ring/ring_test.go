package ring

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

func mustNew(t testing.TB, nodes []string, cfg Config) *Ring {
	t.Helper()
	r, err := New(nodes, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The hash decides where every app runs; gateways in different processes
// (and versions) must agree on it, so its values are pinned.
func TestHashIsPinned(t *testing.T) {
	for _, s := range []string{"", "a", "app-1", "node-0", strings.Repeat("x", 300)} {
		std := fnv.New64a()
		std.Write([]byte(s))
		if got, want := fnv1a(s), std.Sum64(); got != want {
			t.Errorf("fnv1a(%q) = %#x, hash/fnv says %#x", s, got, want)
		}
	}
	pinned := []struct {
		name string
		got  uint64
		want uint64
	}{
		{`hashString("")`, hashString(""), 0xefd01f60ba992926},
		{`hashString("a")`, hashString("a"), 0x82a2a958a9bece5b},
		{`hashString("app-1")`, hashString("app-1"), 0x19022ee37f9dbe1f},
		{`pointHash("node-0", 0)`, pointHash(fnv1a("node-0"), 0), 0x74bd04f6e09fed6d},
		{`pointHash("node-0", 99)`, pointHash(fnv1a("node-0"), 99), 0xa097f2db2a0ace91},
	}
	for _, p := range pinned {
		if p.got != p.want {
			t.Errorf("%s = %#x, want %#x", p.name, p.got, p.want)
		}
	}
	r := mustNew(t, names("node", 10), DefaultConfig())
	for key, want := range map[string]string{
		"app-1": "node-2",
		"app-2": "node-1",
		"app-3": "node-5",
		"hello": "node-9",
		"frost": "node-8",
	} {
		if got := r.Owner(key); got != want {
			t.Errorf("Owner(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name  string
		nodes []string
		cfg   Config
		want  string
	}{
		{"no points", []string{"a"}, Config{}, "VirtualNodes is 0"},
		{"negative points", []string{"a"}, Config{VirtualNodes: -1}, "VirtualNodes is -1"},
		{"empty name", []string{"a", ""}, DefaultConfig(), "empty node name"},
		{"duplicate", []string{"a", "b", "a"}, DefaultConfig(), `node "a" given twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.nodes, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New(%q) error = %v, want one saying %q", tt.nodes, err, tt.want)
			}
		})
	}
}

func TestEmptyRing(t *testing.T) {
	r := mustNew(t, nil, DefaultConfig())
	if got := r.Owner("app"); got != "" {
		t.Errorf("Owner = %q, want \"\"", got)
	}
	if got := slices.Collect(r.Walk("app")); len(got) != 0 {
		t.Errorf("Walk = %q, want nothing", got)
	}
	called := false
	if got := r.Pick("app", func(string) int { called = true; return 0 }, 1.25); got != "" {
		t.Errorf("Pick = %q, want \"\"", got)
	}
	if called {
		t.Error("Pick called load on an empty ring")
	}
}

func TestOrderOfNodesDoesNotMatter(t *testing.T) {
	nodes := names("node", 20)
	a := mustNew(t, nodes, DefaultConfig())
	shuffled := slices.Clone(nodes)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) {
		shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
	})
	b := mustNew(t, shuffled, DefaultConfig())
	for i := range 2000 {
		key := fmt.Sprintf("app-%d", i)
		if wa, wb := slices.Collect(a.Walk(key)), slices.Collect(b.Walk(key)); !slices.Equal(wa, wb) {
			t.Fatalf("Walk(%q) differs with the nodes shuffled:\n%q\n%q", key, wa, wb)
		}
	}
	if !slices.Equal(a.Nodes(), b.Nodes()) || !slices.IsSorted(a.Nodes()) {
		t.Errorf("Nodes() = %q and %q, want the same sorted list", a.Nodes(), b.Nodes())
	}
}

func TestBalance(t *testing.T) {
	const keys = 100_000
	tests := []struct {
		points  int
		maxSkew float64 // largest |share/mean - 1| allowed for any node
		maxStd  float64 // largest standard deviation of share/mean
	}{
		// Spread ≈ 1/sqrt(points): 10% at 100, 3% at 1000, with room for
		// the worst of ten nodes.
		{points: 100, maxSkew: 0.35, maxStd: 0.15},
		{points: 1000, maxSkew: 0.12, maxStd: 0.05},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("points=%d", tt.points), func(t *testing.T) {
			r := mustNew(t, names("node", 10), Config{VirtualNodes: tt.points})
			count := map[string]int{}
			for i := range keys {
				count[r.Owner(fmt.Sprintf("app-%d", i))]++
			}
			mean := float64(keys) / 10
			var sumSq float64
			for _, n := range r.Nodes() {
				dev := float64(count[n])/mean - 1
				sumSq += dev * dev
				if math.Abs(dev) > tt.maxSkew {
					t.Errorf("%s owns %d keys, %+.0f%% off the mean %.0f", n, count[n], 100*dev, mean)
				}
			}
			if std := math.Sqrt(sumSq / 10); std > tt.maxStd {
				t.Errorf("shares spread by %.1f%%, want at most %.0f%%", 100*std, 100*tt.maxStd)
			}
		})
	}
}

func TestMembershipChangeMovesFewKeys(t *testing.T) {
	const keys = 50_000
	ten := names("node", 10)
	before := mustNew(t, ten, DefaultConfig())
	t.Run("add", func(t *testing.T) {
		after := mustNew(t, append(slices.Clone(ten), "node-new"), DefaultConfig())
		moved := 0
		for i := range keys {
			key := fmt.Sprintf("app-%d", i)
			was, is := before.Owner(key), after.Owner(key)
			if was == is {
				continue
			}
			moved++
			if is != "node-new" {
				t.Fatalf("%s moved from %s to %s, not to the new node", key, was, is)
			}
		}
		// The new node takes its fair share, 1/11, within the spread.
		if frac := float64(moved) / keys; frac < 0.5/11 || frac > 1.5/11 {
			t.Errorf("adding an 11th node moved %.1f%% of keys, want about %.1f%%", 100*frac, 100.0/11)
		}
	})
	t.Run("remove", func(t *testing.T) {
		gone := "node-3"
		after := mustNew(t, slices.DeleteFunc(slices.Clone(ten), func(n string) bool { return n == gone }), DefaultConfig())
		moved := 0
		for i := range keys {
			key := fmt.Sprintf("app-%d", i)
			was, is := before.Owner(key), after.Owner(key)
			if was == gone {
				moved++
				// Its keys go where the old walk spilled them: the next node.
				if next := slices.Collect(before.Walk(key))[1]; is != next {
					t.Fatalf("%s went from %s to %s, want %s, next in its walk", key, gone, is, next)
				}
			} else if was != is {
				t.Fatalf("%s moved from %s to %s though %s stayed", key, was, is, was)
			}
		}
		if frac := float64(moved) / keys; frac < 0.5/10 || frac > 1.5/10 {
			t.Errorf("removing 1 of 10 nodes moved %.1f%% of keys, want about 10%%", 100*frac)
		}
	})
}

func TestWalkVisitsEachNodeOnce(t *testing.T) {
	for _, n := range []int{1, 2, 10, 64, 65, 200} {
		t.Run(fmt.Sprintf("nodes=%d", n), func(t *testing.T) {
			r := mustNew(t, names("node", n), Config{VirtualNodes: 20})
			for i := range 200 {
				key := fmt.Sprintf("app-%d", i)
				walk := slices.Collect(r.Walk(key))
				if walk[0] != r.Owner(key) {
					t.Fatalf("Walk(%q) starts at %s, owner is %s", key, walk[0], r.Owner(key))
				}
				slices.Sort(walk)
				if !slices.Equal(walk, r.Nodes()) {
					t.Fatalf("Walk(%q) visits %q, want each of %d nodes once", key, walk, n)
				}
			}
		})
	}
	r := mustNew(t, names("node", 10), DefaultConfig())
	var first []string
	for n := range r.Walk("app") {
		if first = append(first, n); len(first) == 2 {
			break
		}
	}
	if want := slices.Collect(r.Walk("app"))[:2]; !slices.Equal(first, want) {
		t.Errorf("Walk stopped after 2 gave %q, want %q", first, want)
	}
}

func TestPick(t *testing.T) {
	r := mustNew(t, names("node", 4), DefaultConfig())
	const key = "app-7"
	walk := slices.Collect(r.Walk(key))
	loads := func(l map[string]int) func(string) int {
		return func(n string) int { return l[n] }
	}
	tests := []struct {
		name string
		load map[string]int
		c    float64
		want string
	}{
		{"idle cluster", nil, 1.25, walk[0]},
		// 12 in flight: capacity ceil(1.25·13/4) = 5.
		{"owner has room", map[string]int{walk[0]: 4, walk[1]: 4, walk[2]: 4}, 1.25, walk[0]},
		{"owner full", map[string]int{walk[0]: 5, walk[1]: 3, walk[2]: 4}, 1.25, walk[1]},
		{"owner and next full", map[string]int{walk[0]: 5, walk[1]: 5, walk[2]: 2}, 1.25, walk[2]},
		{"unbounded", map[string]int{walk[0]: 1000}, math.Inf(1), walk[0]},
		// c below 1 means 1: capacity ceil(9/4) = 3.
		{"c below 1", map[string]int{walk[0]: 3, walk[1]: 2, walk[2]: 3}, 0.5, walk[1]},
		{"c NaN", map[string]int{walk[0]: 3, walk[1]: 2, walk[2]: 3}, math.NaN(), walk[1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.Pick(key, loads(tt.load), tt.c); got != tt.want {
				t.Errorf("Pick = %s, want %s (walk %q, loads %v)", got, tt.want, walk, tt.load)
			}
		})
	}
	t.Run("loads change under it", func(t *testing.T) {
		// The sum sees an idle cluster; the walk then finds every node
		// busy, the third least.
		calls := 0
		load := func(n string) int {
			if calls++; calls <= len(walk) {
				return 0
			}
			if n == walk[2] {
				return 50
			}
			return 100
		}
		if got := r.Pick(key, load, 1.25); got != walk[2] {
			t.Errorf("Pick = %s, want the least loaded, %s", got, walk[2])
		}
	})
}

// TestPickBoundsLoad routes a skewed stream the way a gateway does: a
// request adds one to its node's load when picked and removes it when it
// ends, a random number of arrivals later.
func TestPickBoundsLoad(t *testing.T) {
	const (
		nodes    = 10
		apps     = 1000
		requests = 100_000
		maxLife  = 100 // a request ends 1 to maxLife arrivals after it starts
	)
	keys := names("app", apps)
	tests := []struct {
		c         float64
		minStayed float64 // least share of requests that go to their owner
	}{
		// The hottest app alone is about 15% of requests, more than one
		// node's share, so it always spills, and pushes others off their
		// owners; the looser the bound, the fewer.
		{c: 1, minStayed: 0.3},
		{c: 1.25, minStayed: 0.6},
		{c: 2, minStayed: 0.9},
	}
	for _, tt := range tests {
		c := tt.c
		t.Run(fmt.Sprintf("c=%g", c), func(t *testing.T) {
			r := mustNew(t, names("node", nodes), DefaultConfig())
			rng := rand.New(rand.NewPCG(7, 7))
			zipf := rand.NewZipf(rng, 1.1, 1, apps-1)
			load := map[string]int{}
			total, stayed := 0, 0
			ending := make([][]string, maxLife) // ending[t%maxLife]: nodes whose request ends at arrival t
			hot := map[string]bool{}            // nodes serving the hottest app
			for i := range requests {
				for _, n := range ending[i%maxLife] {
					load[n]--
					total--
				}
				ending[i%maxLife] = ending[i%maxLife][:0]

				app := int(zipf.Uint64())
				n := r.Pick(keys[app], func(n string) int { return load[n] }, c)
				limit := math.Ceil(c * float64(total+1) / nodes)
				if float64(load[n]+1) > limit {
					t.Fatalf("request %d: %s has load %d, capacity %g (total %d)", i, n, load[n], limit, total)
				}
				load[n]++
				total++
				if n == r.Owner(keys[app]) {
					stayed++
				}
				if app == 0 {
					hot[n] = true
				}
				end := (i + 1 + rng.IntN(maxLife)) % maxLife
				ending[end] = append(ending[end], n)
			}
			if frac := float64(stayed) / requests; frac < tt.minStayed {
				t.Errorf("%.0f%% of requests went to their owner, want at least %.0f%%", 100*frac, 100*tt.minStayed)
			}
			if len(hot) < 2 || (c > 1 && len(hot) == nodes) {
				t.Errorf("the hottest app ran on %d nodes, want more than one, and fewer than all when c > 1", len(hot))
			}
			t.Logf("%.1f%% on owner; hottest app on %d nodes", 100*float64(stayed)/requests, len(hot))
		})
	}
}

// FuzzRing checks the invariants on arbitrary node sets, keys and loads:
// Walk is a permutation of the nodes that starts at Owner, whatever order
// the nodes come in, and Pick returns a node whose load stays within the
// capacity.
func FuzzRing(f *testing.F) {
	f.Add("a,b,c", "app", []byte{3, 0, 1}, 1.25, uint8(4))
	f.Add("node-0,node-1", "", []byte{}, 1.0, uint8(1))
	f.Add("x", "hot", []byte{255}, 0.0, uint8(100))
	f.Add("n1,n2,n3,n4,n5,n6,n7,n8", "app-42", []byte{9, 9, 9, 9, 9, 9, 9, 0}, 2.5, uint8(3))
	f.Fuzz(func(t *testing.T, list, key string, loads []byte, c float64, points uint8) {
		var nodes []string
		for _, n := range strings.Split(list, ",") {
			if n != "" && !slices.Contains(nodes, n) {
				nodes = append(nodes, n)
			}
		}
		cfg := Config{VirtualNodes: 1 + int(points)%16}
		r := mustNew(t, nodes, cfg)
		reversed := slices.Clone(nodes)
		slices.Reverse(reversed)
		r2 := mustNew(t, reversed, cfg)

		walk := slices.Collect(r.Walk(key))
		if walk2 := slices.Collect(r2.Walk(key)); !slices.Equal(walk, walk2) {
			t.Fatalf("Walk depends on node order: %q vs %q", walk, walk2)
		}
		sorted := slices.Sorted(slices.Values(walk))
		if want := slices.Sorted(slices.Values(nodes)); !slices.Equal(sorted, want) {
			t.Fatalf("Walk = %q, want a permutation of %q", walk, nodes)
		}
		if len(nodes) == 0 {
			if o, p := r.Owner(key), r.Pick(key, func(string) int { return 0 }, c); o != "" || p != "" {
				t.Fatalf("empty ring: Owner %q, Pick %q", o, p)
			}
			return
		}
		if walk[0] != r.Owner(key) {
			t.Fatalf("Walk starts at %q, Owner is %q", walk[0], r.Owner(key))
		}

		load := map[string]int{}
		total := 0
		for i, n := range nodes {
			if len(loads) > 0 {
				load[n] = int(loads[i%len(loads)])
				total += load[n]
			}
		}
		got := r.Pick(key, func(n string) int { return load[n] }, c)
		if !slices.Contains(nodes, got) {
			t.Fatalf("Pick = %q, not one of %q", got, nodes)
		}
		bound := c
		if !(bound >= 1) {
			bound = 1
		}
		limit := math.Ceil(bound * float64(total+1) / float64(len(nodes)))
		if float64(load[got]+1) > limit {
			t.Fatalf("Pick = %q with load %d, over capacity %g (loads %v, c %g)", got, load[got], limit, load, c)
		}
		for _, n := range walk[:slices.Index(walk, got)] {
			if float64(load[n]+1) <= limit {
				t.Fatalf("Pick = %q passed over %q, which had room (loads %v, capacity %g)", got, n, load, limit)
			}
		}
	})
}
