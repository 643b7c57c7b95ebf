package main

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/frostdev/frost/internal/ring"
)

// config is the model; every field has a flag.
type config struct {
	Apps     int     // apps deployed, ranked by popularity
	Zipf     float64 // exponent s: app k (from 1) gets requests ∝ 1/k^s
	Nodes    int     // nodes in the cluster
	Warm     int     // apps one node can hold warm (its memory budget)
	Requests int     // requests counted
	Warmup   int     // requests replayed first, not counted
	InFlight int     // a request is in flight for this many arrivals
	Balance  float64 // c of bounded loads: no node above c × mean load
	Points   int     // ring points per node
	Seed     uint64  // seeds the traffic and random routing
}

func defaultConfig() config {
	return config{
		Apps:     10_000,
		Zipf:     1.1,
		Nodes:    10,
		Warm:     1000,
		Requests: 2_000_000,
		Warmup:   200_000,
		InFlight: 200,
		Balance:  1.25,
		Points:   ring.DefaultConfig().VirtualNodes,
		Seed:     1,
	}
}

func (c config) validate() error {
	var errs []error
	atLeast := func(name string, v, min int) {
		if v < min {
			errs = append(errs, fmt.Errorf("-%s is %d, must be at least %d", name, v, min))
		}
	}
	atLeast("apps", c.Apps, 1)
	atLeast("nodes", c.Nodes, 1)
	atLeast("warm", c.Warm, 1)
	atLeast("requests", c.Requests, 1)
	atLeast("warmup", c.Warmup, 0)
	atLeast("inflight", c.InFlight, 1)
	atLeast("points", c.Points, 1)
	if !(c.Zipf >= 0) || math.IsInf(c.Zipf, 0) {
		errs = append(errs, fmt.Errorf("-zipf is %g, must be a number, 0 or more", c.Zipf))
	}
	if !(c.Balance >= 1) {
		errs = append(errs, fmt.Errorf("-c is %g, must be at least 1", c.Balance))
	}
	if c.Apps > math.MaxInt32 {
		errs = append(errs, fmt.Errorf("-apps is %d, must be below 2^31", c.Apps))
	}
	return errors.Join(errs...)
}

// result is what one policy did with the counted requests.
type result struct {
	policy    string
	requests  int
	warm      int // served by a node that held the app warm
	evictions int // apps made cold to make room
	peakLoad  int // most requests in flight on one node at once
	busiest   int // requests served by the busiest node
}

func (r result) coldStarts() int { return r.requests - r.warm }

// router picks the node (an index) for a request for app, given the
// requests now in flight on each node.
type router func(app int32, load []int) int

// simulate replays the same traffic through each policy, in parallel.
func simulate(cfg config) ([]result, error) {
	nodes := make([]string, cfg.Nodes)
	index := make(map[string]int, cfg.Nodes)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("node-%d", i)
		index[nodes[i]] = i
	}
	r, err := ring.New(nodes, ring.Config{VirtualNodes: cfg.Points})
	if err != nil {
		return nil, err
	}
	keys := make([]string, cfg.Apps)
	for i := range keys {
		keys[i] = fmt.Sprintf("app-%d", i)
	}
	stream := traffic(cfg)

	policies := []struct {
		name  string
		route router
	}{
		{fmt.Sprintf("bounded-load consistent hashing (c = %g)", cfg.Balance), func(app int32, load []int) int {
			return index[r.Pick(keys[app], func(n string) int { return load[index[n]] }, cfg.Balance)]
		}},
		{"consistent hashing", func(app int32, _ []int) int {
			return index[r.Owner(keys[app])]
		}},
		{"random", func() router {
			rng := rand.New(rand.NewPCG(cfg.Seed, 2))
			return func(int32, []int) int { return rng.IntN(cfg.Nodes) }
		}()},
	}
	results := make([]result, len(policies))
	var wg sync.WaitGroup
	for i, p := range policies {
		wg.Go(func() {
			results[i] = replay(cfg, stream, p.route)
			results[i].policy = p.name
		})
	}
	wg.Wait()
	return results, nil
}

// traffic draws the request stream, warm-up included: app k (from 0) with
// probability ∝ 1/(k+1)^s.
func traffic(cfg config) []int32 {
	cdf := make([]float64, cfg.Apps)
	sum := 0.0
	for k := range cdf {
		sum += math.Pow(float64(k+1), -cfg.Zipf)
		cdf[k] = sum
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	stream := make([]int32, cfg.Warmup+cfg.Requests)
	for i := range stream {
		k, _ := slices.BinarySearch(cdf, rng.Float64()*sum)
		stream[i] = int32(min(k, cfg.Apps-1))
	}
	return stream
}

// replay routes the stream with route, from a cold cluster. A request is in
// flight from its arrival until cfg.InFlight arrivals later, so that once
// the stream is under way exactly cfg.InFlight requests are in flight.
func replay(cfg config, stream []int32, route router) result {
	warm := make([]*lru, cfg.Nodes)
	for i := range warm {
		warm[i] = newLRU(cfg.Warm)
	}
	load := make([]int, cfg.Nodes)
	served := make([]int, cfg.Nodes)
	inFlight := make([]int, cfg.InFlight) // inFlight[i % InFlight]: the node serving request i
	var res result
	for i, app := range stream {
		slot := i % cfg.InFlight
		if i >= cfg.InFlight {
			load[inFlight[slot]]-- // request i - InFlight ends
		}
		node := route(app, load)
		load[node]++
		inFlight[slot] = node
		hit, evicted := warm[node].touch(app)
		if i < cfg.Warmup {
			continue
		}
		res.requests++
		served[node]++
		if hit {
			res.warm++
		}
		if evicted {
			res.evictions++
		}
		if i+1 >= cfg.InFlight {
			res.peakLoad = max(res.peakLoad, load[node])
		}
	}
	res.busiest = slices.Max(served)
	return res
}
