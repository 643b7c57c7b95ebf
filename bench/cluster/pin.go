package main

import (
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// pins are the CPUs each role's processes run on (-cpus): wrk, gateway
// (the gateway and the plain proxy), node (every node) and etcd. A role
// without a set shares every CPU. Separate sets model what a cluster is:
// the gateway on its own machine, the node on its own, the load from
// elsewhere, instead of wrk, gateway and node taking cores from each
// other.
type pins map[string][]int

// parsePins reads "wrk=0-3,gateway=4-7,node=8-11" (a role may list
// ranges and single CPUs joined by '+': node=8-9+12).
func parsePins(s string) (pins, error) {
	p := pins{}
	for field := range strings.SplitSeq(s, ",") {
		if field = strings.TrimSpace(field); field == "" {
			continue
		}
		role, list, ok := strings.Cut(field, "=")
		switch role {
		case "wrk", "gateway", "node", "etcd":
		default:
			return nil, fmt.Errorf("-cpus %q: role %q is not wrk, gateway, node or etcd", s, role)
		}
		if !ok || list == "" {
			return nil, fmt.Errorf("-cpus %q: %s has no CPUs (ROLE=FIRST-LAST)", s, role)
		}
		for part := range strings.SplitSeq(list, "+") {
			lo, hi, isRange := strings.Cut(part, "-")
			first, err1 := strconv.Atoi(lo)
			last, err2 := first, error(nil)
			if isRange {
				last, err2 = strconv.Atoi(hi)
			}
			if err1 != nil || err2 != nil || first < 0 || last < first || last >= runtime.NumCPU() {
				return nil, fmt.Errorf("-cpus %q: %q is not a range of this machine's CPUs 0-%d", s, part, runtime.NumCPU()-1)
			}
			for c := first; c <= last; c++ {
				p[role] = append(p[role], c)
			}
		}
	}
	return p, nil
}

// String is the sets as given, for the report; "" when none.
func (p pins) String() string {
	var parts []string
	for _, role := range []string{"wrk", "gateway", "node", "etcd"} {
		if cpus := p[role]; len(cpus) > 0 {
			parts = append(parts, fmt.Sprintf("%s on %d CPUs (%s)", role, len(cpus), ranges(cpus)))
		}
	}
	return strings.Join(parts, ", ")
}

func ranges(cpus []int) string {
	var parts []string
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, strconv.Itoa(cpus[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", cpus[i], cpus[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, "+")
}

// start starts cmd on role's CPUs: the child inherits the affinity of the
// thread that forks it, so the fork runs on a locked thread pinned for
// the moment. Go sizes GOMAXPROCS by that affinity.
func (p pins) start(role string, cmd *exec.Cmd) error {
	cpus := p[role]
	if len(cpus) == 0 {
		return cmd.Start()
	}
	runtime.LockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("pin %s: %w", role, err)
	}
	for _, c := range cpus {
		set.Set(c)
	}
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("pin %s to CPUs %s: %w", role, ranges(cpus), err)
	}
	err := cmd.Start()
	if err := unix.SchedSetaffinity(0, &old); err != nil {
		// The thread stays locked to this goroutine, so that no other
		// runs pinned; the bench ends on this error anyway.
		return fmt.Errorf("restore the bench's CPU affinity: %w", err)
	}
	runtime.UnlockOSThread()
	return err
}
