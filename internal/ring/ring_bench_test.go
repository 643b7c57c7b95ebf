package ring

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkPick measures one routing decision under bounded loads against
// plain consistent hashing (Owner) in the same run: a Zipf stream of keys,
// loads read from a map as a gateway might keep them, a third of the nodes
// full so that some picks walk. Pick sums every node's load, so its cost
// grows with the number of nodes.
func BenchmarkPick(b *testing.B) {
	for _, nodes := range []int{10, 100} {
		r := mustNew(b, names("node", nodes), DefaultConfig())
		rng := rand.New(rand.NewPCG(1, 1))
		zipf := rand.NewZipf(rng, 1.1, 1, 9999)
		keys := make([]string, 4096)
		for i := range keys {
			keys[i] = fmt.Sprintf("app-%d", zipf.Uint64())
		}
		load, total := map[string]int{}, 0
		for i, n := range r.Nodes() {
			load[n] = 10
			if i%3 == 0 {
				load[n] = 20
			}
			total += load[n]
		}
		if limit := capacity(total, nodes, 1.25); 20+1 <= limit {
			b.Fatalf("capacity %g: the busy nodes are not full", limit)
		}
		loadOf := func(n string) int { return load[n] }

		b.Run(fmt.Sprintf("Owner/nodes=%d", nodes), func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				r.Owner(keys[i%len(keys)])
			}
		})
		b.Run(fmt.Sprintf("Pick/nodes=%d", nodes), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				r.Pick(keys[i%len(keys)], loadOf, 1.25)
			}
		})
	}
}
