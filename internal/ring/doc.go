// Package ring places apps on nodes with consistent hashing with bounded
// loads (Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with Bounded
// Loads", SODA 2018).
//
// # Why the gateway uses it
//
// A request for an app is fast when the node it lands on already holds the
// app warm, and every node can hold only so many apps warm. Routing each app
// to one node (its owner) keeps each app warm in one place instead of on
// every node, so the cluster as a whole holds many more distinct apps warm
// and evicts far less. Plain consistent hashing does that, but a hot app then
// overloads its owner. Bounded loads keep the stickiness while no node is
// overloaded, and spill the excess along the ring when one is: to the same
// next nodes every time, so an app that spills warms up on a few nodes
// rather than all of them.
//
// # Algorithm
//
// Each node puts [Config.VirtualNodes] points on a 64-bit hash circle; a key
// hashes to a point and belongs to the node of the first node point at or
// after it ([Ring.Owner]). Reading on around the circle from there, skipping
// nodes already seen, gives every node once, owner first ([Ring.Walk]): the
// gateway's order for spill-over, retries on another node and warm-pool
// fallbacks. With n nodes, going to n+1 moves about 1/(n+1) of the keys, all
// of them to the new node; removing a node moves only the keys it owned.
//
// [Ring.Pick] adds the bound. With a total load L across n nodes (in-flight
// requests, as the caller counts them) and a balance factor c > 1, every
// node's capacity is ceil(c·(L+1)/n), and the key goes to the first node in
// its walk whose load plus this request fits. Some node always fits, since
// the capacities add up to more than L, and so no node ever holds more than
// c times the average load (rounded up to a whole request). The smaller c,
// the tighter the balance and the more requests leave their owner; the paper
// shows a key's walk stays short in expectation. c = 1.25 is a common
// choice.
//
// # Hash
//
// Gateways in different processes must route alike, so the hash is fixed:
// FNV-1a 64 over the bytes, finished by MurmurHash3's 64-bit finalizer
// (fmix64) so that keys differing only in their last byte spread over the
// whole circle. Point j of node N is fmix64(FNV-1a(N) + j·0x9e3779b97f4a7c15).
// The tests pin both; changing either re-routes every app in a cluster.
package ring
