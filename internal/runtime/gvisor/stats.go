package gvisor

import (
	"bufio"
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
			memoryStat: filepath.Join(mem, "memory.stat"), memoryLimit: filepath.Join(mem, "memory.limit_in_bytes")}, nil
	}
	if d := dirs[""]; d != "" {
		return &cgroupFiles{v2: true, cpu: filepath.Join(d, "cpu.stat"), memory: filepath.Join(d, "memory.current"),
			memoryStat: filepath.Join(d, "memory.stat"), memoryLimit: filepath.Join(d, "memory.max")}, nil
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
