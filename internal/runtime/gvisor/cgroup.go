package gvisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// A spare is created at the lowest CPU weight its cgroup can have, so
// that creating it (~0.25 s of CPU) yields to everything else the machine
// does — above all to the restore a user waits for — and it is raised to
// the default weight when a box is started in it. runsc puts each sandbox
// in a cgroup of its own (named by its ID) and applies the OCI spec's
// cpu.shares to it; cpuWeight finds that cgroup's control file from the
// sandbox process's /proc/PID/cgroup, for cgroup v1 (cpu.shares) and v2
// (cpu.weight, which runsc converts shares to).

// spareShares is the OCI cpu.shares of a spare: the least cgroup v1
// allows, and weight 1 under cgroup v2.
const spareShares = 2

// cpuWeight is a cgroup's CPU weight control file and its default value.
type cpuWeight struct {
	path   string
	normal string // the default: 1024 shares (v1), weight 100 (v2)
	low    string // what spareShares is there
}

// cpuWeightOf returns the CPU weight control of process pid's cgroup.
func cpuWeightOf(pid int) (cpuWeight, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return cpuWeight{}, err
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return cpuWeight{}, err
	}
	return cpuWeightIn(string(b), string(mounts))
}

// cpuWeightIn finds the CPU weight control of the cgroup a
// /proc/PID/cgroup file names, under the cgroup mounts a mountinfo file
// lists. A v1 cpu controller wins over the v2 hierarchy (a hybrid host).
func cpuWeightIn(cgroups, mountinfo string) (cpuWeight, error) {
	paths := cgroupPaths(cgroups)
	v1, v1Found := paths["cpu"]
	v2, v2Found := paths[""]
	for _, m := range cgroupMounts(mountinfo) {
		switch {
		case v1Found && m.fstype == "cgroup" && slices.Contains(m.super, "cpu"):
			return cpuWeight{path: filepath.Join(m.point, under(v1, m.root), "cpu.shares"), normal: "1024", low: fmt.Sprint(spareShares)}, nil
		case !v1Found && v2Found && m.fstype == "cgroup2":
			return cpuWeight{path: filepath.Join(m.point, under(v2, m.root), "cpu.weight"), normal: "100", low: "1"}, nil
		}
	}
	return cpuWeight{}, errNoCPUController
}

// cgroupPaths reads a /proc/PID/cgroup file: each v1 controller's cgroup
// path, and the v2 hierarchy's under "".
func cgroupPaths(cgroups string) map[string]string {
	paths := map[string]string{}
	for line := range strings.Lines(cgroups) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			paths[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			paths[c] = parts[2]
		}
	}
	return paths
}

// cgroupMount is a cgroup file system's line of a mountinfo file.
type cgroupMount struct {
	root, point, fstype string   // fstype: cgroup (v1) or cgroup2
	super               []string // its super options: a v1 mount's controllers
}

// cgroupMounts lists the cgroup mounts of a mountinfo file.
func cgroupMounts(mountinfo string) []cgroupMount {
	var out []cgroupMount
	for line := range strings.Lines(mountinfo) {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
		fields := strings.Fields(line)
		sep := slices.Index(fields, "-")
		if sep < 5 || len(fields) < sep+4 || fields[sep+1] != "cgroup" && fields[sep+1] != "cgroup2" {
			continue
		}
		out = append(out, cgroupMount{root: fields[3], point: unescape(fields[4]), fstype: fields[sep+1], super: strings.Split(fields[sep+3], ",")})
	}
	return out
}

var errNoCPUController = errors.New("no cgroup cpu controller is mounted for the sandbox")

// under returns cgroup path p relative to a mount of the hierarchy's
// root directory.
func under(p, root string) string {
	if root == "/" {
		return p
	}
	return strings.TrimPrefix(p, root)
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// read returns the control's current value.
func (w cpuWeight) read() (string, error) {
	b, err := os.ReadFile(w.path)
	return strings.TrimSpace(string(b)), err
}

// raise sets the control to the default weight; there is nothing to
// raise without a control.
func (w cpuWeight) raise() error {
	if w.path == "" {
		return nil
	}
	return os.WriteFile(w.path, []byte(w.normal), 0)
}
