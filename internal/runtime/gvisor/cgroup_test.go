package gvisor

import (
	"strings"
	"testing"
)

// TestCPUWeightIn: the sandbox's CPU weight file is found under cgroup v1
// (cpu alone or joined with cpuacct), v2, and a hybrid host (v1's cpu
// controller wins), through a mount of a subtree and an escaped mount
// point; a host without a cpu controller is an error.
func TestCPUWeightIn(t *testing.T) {
	const (
		v1Mounts = `25 20 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
33 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:12 - cgroup cgroup rw,cpu,cpuacct
34 25 0:30 / /sys/fs/cgroup/cpuset rw,nosuid - cgroup cgroup rw,cpuset
35 25 0:31 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
`
		v2Mounts = `30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
`
	)
	for _, tc := range []struct {
		name, cgroups, mounts, path, normal, low string
	}{
		{"v1 cpu,cpuacct", "12:cpuset:/\n4:cpu,cpuacct:/spare1\n0::/\n", v1Mounts, "/sys/fs/cgroup/cpu,cpuacct/spare1/cpu.shares", "1024", "2"},
		{"v1 cpu alone", "1:cpu:/spare1\n2:cpuacct:/\n", "40 25 0:40 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n", "/sys/fs/cgroup/cpu/spare1/cpu.shares", "1024", "2"},
		{"v2", "0::/spare1\n", v2Mounts, "/sys/fs/cgroup/spare1/cpu.weight", "100", "1"},
		{"v2, a subtree mounted", "0::/kube/pod/spare1\n", "30 22 0:26 /kube/pod /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "/sys/fs/cgroup/spare1/cpu.weight", "100", "1"},
		{"escaped mount point", "0::/spare1\n", `30 22 0:26 / /run/my\040cgroups rw - cgroup2 cgroup2 rw` + "\n", "/run/my cgroups/spare1/cpu.weight", "100", "1"},
	} {
		w, err := cpuWeightIn(tc.cgroups, tc.mounts)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if w.path != tc.path || w.normal != tc.normal || w.low != tc.low {
			t.Errorf("%s: %+v, want %s (%s, low %s)", tc.name, w, tc.path, tc.normal, tc.low)
		}
	}
	// v1 with the cpu controller not mounted, and no v2 line: nothing.
	if w, err := cpuWeightIn("3:cpuset:/\n", v1Mounts); err == nil || !strings.Contains(err.Error(), "no cgroup cpu controller") {
		t.Errorf("without a cpu controller: %+v, %v", w, err)
	}
}
