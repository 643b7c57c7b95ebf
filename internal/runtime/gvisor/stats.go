package gvisor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/frostdev/frost/internal/runtime"
)

// Stats reads what a box uses from the cgroup runsc put its sandbox in:
// cgroup v1's cpuacct and memory controllers, or v2's unified files. The
// sandbox's pid comes from `runsc state` once per box; each sample after
// is a few small file reads.

// cgroupFiles are the files a box's figures are read from.
type cgroupFiles struct {
	v2                 bool
	cpu                string // v1 cpuacct.usage (ns); v2 cpu.stat (usage_usec)
	memory, memoryStat string // v1 memory.usage_in_bytes, v2 memory.current; memory.stat
	memoryLimit        string // v1 memory.limit_in_bytes, v2 memory.max
	// oom counts the times the host's OOM killer killed in the cgroup:
	// v1 memory.oom_control, v2 memory.events ("oom_kill N").
	oom string
}

var _ runtime.Stater = (*box)(nil)

// Stats implements runtime.Stater.
func (b *box) Stats() (runtime.BoxStats, error) {
	b.mu.Lock()
	files, err := b.cgroup, b.cgroupErr
	if files == nil && err == nil {
		files, err = b.findCgroup()
		b.cgroup, b.cgroupErr = files, err
	}
	b.mu.Unlock()
	if err != nil {
		return runtime.BoxStats{}, err
	}
	st, err := files.read(b.spec)
	if err == nil && b.addr.IsValid() {
		st.NetIn, st.NetOut = b.r.net.counters(b.id)
	}
	return st, err
}

var _ runtime.Ender = (*box)(nil)

// Ended implements runtime.Ender: runsc names the sandbox's process,
// whose absence says it ended (runsc's own status still says running
// after the host killed it); the cgroup it ran in (runsc leaves it until
// the container is deleted) says whether the host's OOM killer did.
func (b *box) Ended(ctx context.Context) (string, bool) {
	// The OOM killer first: a call can fail on the sandbox's dying
	// before its process is gone.
	b.mu.Lock()
	files := b.cgroup
	b.mu.Unlock()
	if files == nil {
		// Never sampled; if its process is gone /proc cannot name the
		// cgroup, but runsc names it after the container.
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		files, _ = cgroupFilesIn(fmt.Sprintf("0:memory:/%[1]s\n0:cpuacct:/%[1]s\n0::/%[1]s\n", b.id), string(mounts))
	}
	if files != nil {
		if n, err := statField(files.oom, "oom_kill"); err == nil && n > 0 {
			limit := b.spec.Limits.MemoryBytes
			if limit <= 0 {
				limit, _ = readInt(files.memoryLimit)
			}
			return fmt.Sprintf("ran out of memory (%d MiB, for its processes and its files, which hold at most three quarters) and the host ended it", limit>>20), true
		}
	}
	st, err := b.r.state(ctx, b.id)
	switch {
	case err != nil:
		return "is gone: " + err.Error(), true
	case st.Status != "running":
		return "stopped (" + st.Status + ") without being asked to", true
	case !alive(st.Pid):
		return "stopped without being asked to (its process is gone)", true
	}
	return "", false
}

// alive says whether process pid runs: it exists and is not a zombie
// (the sandbox's process is nobody's child once runsc has exited, and
// may wait unreaped after it died).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if pid <= 0 || err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')') // the name, in parentheses, may hold anything
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

// findCgroup finds the files of the sandbox's cgroup.
func (b *box) findCgroup() (*cgroupFiles, error) {
	st, err := b.r.state(context.Background(), b.id)
	if err != nil {
		return nil, err
	}
	if st.Pid <= 0 {
		return nil, fmt.Errorf("gvisor: runsc state %s: no pid", b.id)
	}
	cgroups, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", st.Pid))
	if err != nil {
		return nil, fmt.Errorf("gvisor: the sandbox's cgroup: %w", err)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return cgroupFilesIn(string(cgroups), string(mounts))
}

// cgroupFilesIn finds the statistics files of the cgroup a /proc/PID/cgroup
// file names, under the mounts a mountinfo file lists: v1's cpuacct and
// memory controllers where they are mounted, else the v2 hierarchy.
func cgroupFilesIn(cgroups, mountinfo string) (*cgroupFiles, error) {
	paths := cgroupPaths(cgroups)
	dirs := map[string]string{}
	for _, m := range cgroupMounts(mountinfo) {
		if m.fstype == "cgroup2" {
			if p, ok := paths[""]; ok {
				dirs[""] = filepath.Join(m.point, under(p, m.root))
			}
			continue
		}
		for _, c := range []string{"cpuacct", "memory"} {
			if p, ok := paths[c]; ok && slices.Contains(m.super, c) {
				dirs[c] = filepath.Join(m.point, under(p, m.root))
			}
		}
	}
	if cpu, mem := dirs["cpuacct"], dirs["memory"]; cpu != "" && mem != "" {
		return &cgroupFiles{cpu: filepath.Join(cpu, "cpuacct.usage"), memory: filepath.Join(mem, "memory.usage_in_bytes"),
			memoryStat: filepath.Join(mem, "memory.stat"), memoryLimit: filepath.Join(mem, "memory.limit_in_bytes"),
			oom: filepath.Join(mem, "memory.oom_control")}, nil
	}
	if d := dirs[""]; d != "" {
		return &cgroupFiles{v2: true, cpu: filepath.Join(d, "cpu.stat"), memory: filepath.Join(d, "memory.current"),
			memoryStat: filepath.Join(d, "memory.stat"), memoryLimit: filepath.Join(d, "memory.max"),
			oom: filepath.Join(d, "memory.events")}, nil
	}
	return nil, errNoStatsController
}

var errNoStatsController = errors.New("gvisor: no cgroup cpuacct and memory controllers are mounted for the sandbox")

// read takes a sample.
func (f *cgroupFiles) read(spec runtime.BoxSpec) (runtime.BoxStats, error) {
	var st runtime.BoxStats
	if f.v2 {
		usec, err := statField(f.cpu, "usage_usec")
		if err != nil {
			return st, err
		}
		st.CPU = time.Duration(usec) * time.Microsecond
	} else {
		ns, err := readInt(f.cpu)
		if err != nil {
			return st, err
		}
		st.CPU = time.Duration(ns)
	}
	var err error
	if st.Memory, err = readInt(f.memory); err != nil {
		return st, err
	}
	cacheField := "total_cache"
	if f.v2 {
		cacheField = "file"
	}
	st.Cache, _ = statField(f.memoryStat, cacheField)
	st.MemoryLimit, st.CPUs = spec.Limits.MemoryBytes, spec.Limits.CPUs
	if st.MemoryLimit <= 0 {
		st.MemoryLimit, _ = readInt(f.memoryLimit) // "max" (v2): 0
		if total := machineMemory(); st.MemoryLimit <= 0 || st.MemoryLimit > total && total > 0 {
			st.MemoryLimit = total
		}
	}
	if st.CPUs <= 0 {
		st.CPUs = float64(goruntime.NumCPU())
	}
	return st, nil
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// statField reads one "name value" line of a cgroup statistics file.
func statField(path, name string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == name {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, name)
}

// machineMemory is the machine's memory in bytes (MemTotal), 0 if unknown.
func machineMemory() int64 {
	n, err := statField("/proc/meminfo", "MemTotal:")
	if err != nil {
		return 0
	}
	return n << 10
}
