// Package maxprocs sets GOMAXPROCS from the CPU limit of the cgroup a
// process runs in: its whole CPUs, at least one.
//
// Go does this itself since 1.25, but rounds up and never goes below 2:
// a gateway or node given half a CPU runs two processors, and each time
// the second one finds work a thread is woken to run it, out of the same
// half CPU. On the 2-core test VM, one processor instead of two gave a
// gateway and a node capped at half a CPU each about a fifth more
// throughput (BENCHMARKS.md, issue 6). The rule here is that of
// go.uber.org/automaxprocs: the limit rounded down, at least 1.
//
// Go reads only the cgroup the process is in; Limit also walks up to the
// root of its hierarchy and takes the tightest limit on the way, since a
// parent's limit holds its children too.
//
// Setting GOMAXPROCS turns off Go's own periodic update: a limit changed
// while Frost runs is seen at its next start. GOMAXPROCS in the
// environment wins over both.
package maxprocs

import (
	"bytes"
	"io/fs"
	"math"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
)

// Set lowers GOMAXPROCS to the cgroup CPU limit's whole CPUs (at least
// one) when GOMAXPROCS is not in the environment and the limit is below
// it. It returns the limit found (0: none) and whether it changed
// GOMAXPROCS.
func Set() (limit float64, changed bool) {
	if os.Getenv("GOMAXPROCS") != "" {
		return 0, false
	}
	limit, ok := Limit(os.DirFS("/"))
	if !ok {
		return 0, false
	}
	n := Procs(limit)
	if n >= runtime.GOMAXPROCS(0) {
		return limit, false
	}
	runtime.GOMAXPROCS(n)
	return limit, true
}

// Procs is GOMAXPROCS for a limit of cpus CPUs: rounded down, at least 1.
func Procs(cpus float64) int {
	if cpus >= math.MaxInt32 {
		return math.MaxInt32
	}
	return max(1, int(cpus))
}

// Limit returns the CPU limit, in CPUs, of the process's cgroup and its
// ancestors, read from root (the file system's root: proc/self/cgroup,
// proc/self/mountinfo and the cgroup files); false when none is set or
// it cannot be read.
func Limit(root fs.FS) (float64, bool) {
	cgroups, err := fs.ReadFile(root, "proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	mounts, err := fs.ReadFile(root, "proc/self/mountinfo")
	if err != nil {
		return 0, false
	}
	// cgroup v1's cpu controller, else v2's unified hierarchy.
	v1, v1ok := cgroupPath(cgroups, func(ctrls string) bool { return hasField(ctrls, "cpu") })
	if v1ok {
		if point, rel, ok := mountDir(mounts, v1, func(fstype, opts string) bool { return fstype == "cgroup" && hasField(opts, "cpu") }); ok {
			return walk(root, point, rel, readV1)
		}
	}
	v2, v2ok := cgroupPath(cgroups, func(ctrls string) bool { return ctrls == "" })
	if v2ok {
		if point, rel, ok := mountDir(mounts, v2, func(fstype, _ string) bool { return fstype == "cgroup2" }); ok {
			return walk(root, point, rel, readV2)
		}
	}
	return 0, false
}

// cgroupPath finds, in /proc/self/cgroup ("ID:CONTROLLERS:PATH" lines),
// the path of the hierarchy whose controllers match.
func cgroupPath(cgroups []byte, match func(controllers string) bool) (string, bool) {
	for line := range bytes.Lines(cgroups) {
		parts := strings.SplitN(strings.TrimSpace(string(line)), ":", 3)
		if len(parts) == 3 && match(parts[1]) {
			return parts[2], true
		}
	}
	return "", false
}

// mountDir finds the mount of the hierarchy that match accepts whose
// root holds cgroup path cg (a container may see its own cgroup as the
// mount's root), and returns its mount point and cg's path under it.
func mountDir(mounts []byte, cg string, match func(fstype, opts string) bool) (point, rel string, ok bool) {
	for line := range bytes.Lines(mounts) {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
		pre, post, ok := strings.Cut(strings.TrimSpace(string(line)), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 || !match(g[0], g[2]) {
			continue
		}
		if rel, ok := within(cg, unescape(f[3])); ok {
			return unescape(f[4]), rel, true
		}
	}
	return "", "", false
}

// within returns cg relative to dir when cg is dir or under it.
func within(cg, dir string) (string, bool) {
	if dir == "/" {
		return cg, true
	}
	if cg == dir {
		return "/", true
	}
	if rest, ok := strings.CutPrefix(cg, dir+"/"); ok {
		return "/" + rest, true
	}
	return "", false
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func hasField(list, name string) bool {
	for f := range strings.SplitSeq(list, ",") {
		if f == name {
			return true
		}
	}
	return false
}

// walk reads the limit of cgroup rel under mount point and of each
// cgroup above it up to the mount's root, and returns the tightest.
func walk(root fs.FS, point, rel string, read func(fs.FS, string) (float64, bool)) (float64, bool) {
	best, found := 0.0, false
	for d := path.Clean("/" + rel); ; d = path.Dir(d) {
		dir := strings.TrimPrefix(path.Join(point, d), "/")
		if l, ok := read(root, dir); ok && (!found || l < best) {
			best, found = l, true
		}
		if d == "/" {
			return best, found
		}
	}
}

// readV1 reads cpu.cfs_quota_us over cpu.cfs_period_us (-1: none).
func readV1(root fs.FS, dir string) (float64, bool) {
	quota, ok1 := readInt(root, path.Join(dir, "cpu.cfs_quota_us"))
	period, ok2 := readInt(root, path.Join(dir, "cpu.cfs_period_us"))
	if !ok1 || !ok2 || quota <= 0 || period <= 0 {
		return 0, false
	}
	return float64(quota) / float64(period), true
}

// readV2 reads cpu.max: "QUOTA PERIOD", QUOTA "max" for none.
func readV2(root fs.FS, dir string) (float64, bool) {
	b, err := fs.ReadFile(root, path.Join(dir, "cpu.max"))
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] == "max" {
		return 0, false
	}
	quota, err1 := strconv.ParseInt(f[0], 10, 64)
	period, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || quota <= 0 || period <= 0 {
		return 0, false
	}
	return float64(quota) / float64(period), true
}

func readInt(root fs.FS, name string) (int64, bool) {
	b, err := fs.ReadFile(root, name)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}
