package ring

import (
	"cmp"
	"fmt"
	"iter"
	"math"
	"slices"
)

// Config sets how a ring is built. Every gateway of a cluster must use the
// same Config, or they route apps to different nodes.
type Config struct {
	// VirtualNodes is how many points each node puts on the ring; at least
	// 1. More points even out the share of keys per node (its spread falls
	// as about 1/sqrt(VirtualNodes)) and cost 12 bytes each.
	VirtualNodes int
}

// DefaultConfig returns 100 points per node: each node's share of keys is
// then within about 10% of the mean (one standard deviation).
func DefaultConfig() Config {
	return Config{VirtualNodes: 100}
}

// Ring maps keys to nodes. It is immutable and safe for concurrent use; a
// membership change builds a new Ring with [New].
type Ring struct {
	nodes  []string // sorted, distinct
	points []uint64 // sorted hashes of the nodes' points
	owner  []int32  // owner[i] indexes nodes: the node of points[i]
}

// New builds a ring over nodes, in any order: the same set of names gives
// the same ring. Names must be distinct and non-empty. An empty set is
// allowed; its ring routes nothing.
func New(nodes []string, cfg Config) (*Ring, error) {
	if cfg.VirtualNodes < 1 {
		return nil, fmt.Errorf("ring: VirtualNodes is %d, must be at least 1", cfg.VirtualNodes)
	}
	sorted := slices.Clone(nodes)
	slices.Sort(sorted)
	for i, n := range sorted {
		if n == "" {
			return nil, fmt.Errorf("ring: empty node name")
		}
		if i > 0 && n == sorted[i-1] {
			return nil, fmt.Errorf("ring: node %q given twice", n)
		}
	}
	type point struct {
		hash uint64
		node int32
	}
	all := make([]point, 0, len(sorted)*cfg.VirtualNodes)
	for i, n := range sorted {
		base := fnv1a(n)
		for j := range cfg.VirtualNodes {
			all = append(all, point{pointHash(base, j), int32(i)})
		}
	}
	// Ties (vanishingly rare) go to the node whose name sorts first, so
	// that the order never depends on the order nodes were given in.
	slices.SortFunc(all, func(a, b point) int {
		return cmp.Or(cmp.Compare(a.hash, b.hash), cmp.Compare(a.node, b.node))
	})
	r := &Ring{
		nodes:  sorted,
		points: make([]uint64, len(all)),
		owner:  make([]int32, len(all)),
	}
	for i, p := range all {
		r.points[i], r.owner[i] = p.hash, p.node
	}
	return r, nil
}

// Nodes returns the ring's nodes, sorted by name. The caller may keep or
// change the slice.
func (r *Ring) Nodes() []string {
	return slices.Clone(r.nodes)
}

// Owner returns the node key belongs to under plain consistent hashing, or
// "" when the ring has no nodes. It is the first node of [Ring.Walk].
func (r *Ring) Owner(key string) string {
	if len(r.nodes) == 0 {
		return ""
	}
	return r.nodes[r.owner[r.start(hashString(key))]]
}

// Walk yields every node once, in ring order from key's point: the owner
// first, then the nodes that key spills to, nearest first. It yields nothing
// when the ring has no nodes. Each call walks afresh; stopping early is
// cheap, and slices.Collect(r.Walk(key)) gives the whole order.
func (r *Ring) Walk(key string) iter.Seq[string] {
	return func(yield func(string) bool) {
		r.walk(hashString(key), func(node int32) bool {
			return yield(r.nodes[node])
		})
	}
}

// Pick returns the node for one new request on key under bounded loads: the
// first node of [Ring.Walk] whose load, counting this request, is at most
// ceil(c·(L+1)/n), where L is the sum of load over the n nodes. It returns
// "" when the ring has no nodes.
//
// load reports a node's current load (in-flight requests, say), at least 0;
// Pick calls it for every node and then for the nodes it walks past. When
// the caller adds each picked request to its node's load before the next
// Pick, and removes it when it ends, no node ever carries more than
// ceil(c × the mean load): a node always fits, because the n capacities add
// up to at least L+1. Should load give answers that contradict each other
// (loads changing under concurrent Picks) and no node fit, Pick returns the
// least loaded node it saw, the first one on ties.
//
// c below 1, or NaN, counts as 1: perfect balance, rounded up to whole
// requests. c = +Inf never spills, which is [Ring.Owner].
func (r *Ring) Pick(key string, load func(node string) int, c float64) string {
	n := len(r.nodes)
	if n == 0 {
		return ""
	}
	total := 0
	for _, name := range r.nodes {
		total += load(name)
	}
	limit := capacity(total, n, c)
	h := hashString(key)
	if owner := r.nodes[r.owner[r.start(h)]]; float64(load(owner)+1) <= limit {
		return owner // the common case: no walk
	}
	best, bestLoad := int32(-1), 0
	r.walk(h, func(node int32) bool {
		l := load(r.nodes[node])
		if best < 0 || l < bestLoad {
			best, bestLoad = node, l
		}
		if float64(l+1) <= limit {
			best = node
			return false
		}
		return true
	})
	return r.nodes[best]
}

// capacity is the most load one of n nodes may carry once a new request
// joins total others: ceil(c·(total+1)/n). It is a float so that c = +Inf
// needs no special case.
func capacity(total, n int, c float64) float64 {
	if !(c >= 1) { // catches NaN too
		c = 1
	}
	return math.Ceil(c * float64(total+1) / float64(n))
}

// start returns the index of the first point at or after hash h, going
// round past the top of the circle. The ring must have nodes.
func (r *Ring) start(h uint64) int {
	i, _ := slices.BinarySearch(r.points, h)
	if i == len(r.points) {
		return 0
	}
	return i
}

// walk calls yield with each node once, in ring order from hash h, until
// yield returns false or every node has been seen.
func (r *Ring) walk(h uint64, yield func(node int32) bool) {
	n := len(r.nodes)
	if n == 0 {
		return
	}
	var small [1]uint64 // the seen-set, without allocating, up to 64 nodes
	seen := small[:]
	if n > 64 {
		seen = make([]uint64, (n+63)/64)
	}
	i, found := r.start(h), 0
	for range r.points {
		node := r.owner[i]
		if word, bit := node/64, uint64(1)<<(node%64); seen[word]&bit == 0 {
			seen[word] |= bit
			if !yield(node) {
				return
			}
			if found++; found == n {
				return
			}
		}
		if i++; i == len(r.points) {
			i = 0
		}
	}
}

// FNV-1a 64 constants and the golden-ratio step between a node's points.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
	pointStep = 0x9e3779b97f4a7c15
)

// hashString is where a key sits on the ring.
func hashString(s string) uint64 {
	return fmix64(fnv1a(s))
}

// pointHash is where point j of the node whose FNV-1a hash is base sits.
func pointHash(base uint64, j int) uint64 {
	return fmix64(base + uint64(j)*pointStep)
}

func fnv1a(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// fmix64 is MurmurHash3's 64-bit finalizer: every input bit flips each
// output bit with probability about one half.
func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
