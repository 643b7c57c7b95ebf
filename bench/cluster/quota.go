package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/frostdev/frost/internal/maxprocs"
)

// quotas cap the CPU time of each gateway and node process (-cpu-quota),
// each in a cgroup of its own: gateway=0.5,node=0.5 lets the gateway and
// every node use half a CPU each. On a machine too small to give the
// gateway and the node cores of their own while wrk has the rest, equal
// quotas still measure what each forwards or answers with the same CPU
// time: the load saturates the capped process, and wrk and the other
// side share what is left.
type quotas struct {
	cpus map[string]float64 // CPUs by role: gateway, node
	root string             // the bench's cgroup directory, once made
	v2   bool
}

// quotaPeriod is the CFS period: short, so that a capped process is held
// back for at most a few milliseconds at a time rather than 100 ms.
const quotaPeriod = 10_000 // µs

// parseQuotas reads "gateway=0.5,node=0.5".
func parseQuotas(s string) (*quotas, error) {
	q := &quotas{cpus: map[string]float64{}}
	for field := range strings.SplitSeq(s, ",") {
		if field = strings.TrimSpace(field); field == "" {
			continue
		}
		role, v, _ := strings.Cut(field, "=")
		if role != "gateway" && role != "node" {
			return nil, fmt.Errorf("-cpu-quota %q: role %q is not gateway or node", s, role)
		}
		cpus, err := strconv.ParseFloat(v, 64)
		if err != nil || cpus < 0.05 || cpus > 1024 {
			return nil, fmt.Errorf("-cpu-quota %q: %s=%q is not a number of CPUs from 0.05", s, role, v)
		}
		q.cpus[role] = cpus
	}
	return q, nil
}

// env is the environment for a process of role: GOMAXPROCS from its
// quota by frost's own rule (maxprocs.Procs: whole CPUs, at least one),
// unless the bench's own environment sets it (for every process). frost
// applies the rule itself only to a limit it finds at start, and the
// bench moves a process into its cgroup after it started; Go's default,
// had it started inside, would be 2 (the limit rounded up, at least 2),
// which costs gateway and node alike about a fifth of their throughput
// on half a CPU (BENCHMARKS.md, issue 6).
func (q *quotas) env(role string) []string {
	cpus, ok := 0.0, false
	if q != nil {
		cpus, ok = q.cpus[role]
	}
	if !ok || os.Getenv("GOMAXPROCS") != "" {
		return nil // exec's default: the bench's environment
	}
	return append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(maxprocs.Procs(cpus)))
}

// String is the quotas for the report; "" when none.
func (q *quotas) String() string {
	if q == nil || len(q.cpus) == 0 {
		return ""
	}
	var parts []string
	for _, role := range []string{"gateway", "node"} {
		if c, ok := q.cpus[role]; ok {
			who := "the gateway"
			if role == "node" {
				who = "each node"
			}
			part := fmt.Sprintf("%s capped at %g CPU", who, c)
			if os.Getenv("GOMAXPROCS") == "" {
				part += fmt.Sprintf(" with GOMAXPROCS=%d", maxprocs.Procs(c))
			}
			parts = append(parts, part)
		}
	}
	return strings.Join(parts, ", ") + fmt.Sprintf(" (cgroup CPU quota, %d ms periods)", quotaPeriod/1000)
}

// cap moves process pid, named name, into a cgroup of its own with its
// role's quota; nothing when the role has none.
func (q *quotas) cap(role, name string, pid int) error {
	if q == nil {
		return nil
	}
	cpus, ok := q.cpus[role]
	if !ok {
		return nil
	}
	if err := q.makeRoot(); err != nil {
		return err
	}
	dir := filepath.Join(q.root, name)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("cpu quota: %w", err)
	}
	quota := int(cpus * quotaPeriod)
	var err error
	if q.v2 {
		err = os.WriteFile(filepath.Join(dir, "cpu.max"), fmt.Appendf(nil, "%d %d", quota, quotaPeriod), 0)
	} else {
		err = os.WriteFile(filepath.Join(dir, "cpu.cfs_period_us"), []byte(strconv.Itoa(quotaPeriod)), 0)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "cpu.cfs_quota_us"), []byte(strconv.Itoa(quota)), 0)
		}
	}
	if err == nil {
		// Every thread of the process moves with it.
		err = os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
	}
	if err != nil {
		return fmt.Errorf("cpu quota for %s: %w", name, err)
	}
	return nil
}

// makeRoot makes the bench's cgroup under the CPU controller's
// hierarchy: cgroup v2's unified one (with the cpu controller enabled
// for its children) or v1's cpu one.
func (q *quotas) makeRoot() error {
	if q.root != "" {
		return nil
	}
	name := fmt.Sprintf("frost-clusterbench-%d", os.Getpid())
	base := "/sys/fs/cgroup/cpu"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		base, q.v2 = "/sys/fs/cgroup", true
	}
	root := filepath.Join(base, name)
	if err := os.Mkdir(root, 0o755); err != nil {
		return fmt.Errorf("cpu quota: %w (-cpu-quota needs root and the cgroup cpu controller)", err)
	}
	q.root = root
	if q.v2 {
		for _, dir := range []string{base, root} {
			if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+cpu"), 0); err != nil {
				return fmt.Errorf("cpu quota: enable the cpu controller in %s: %w", dir, err)
			}
		}
	}
	return nil
}

// remove deletes the cgroups, once every capped process has exited.
func (q *quotas) remove() {
	if q == nil || q.root == "" {
		return
	}
	dirs, _ := os.ReadDir(q.root)
	for _, d := range dirs {
		if d.IsDir() {
			os.Remove(filepath.Join(q.root, d.Name()))
		}
	}
	os.Remove(q.root)
	q.root = ""
}
