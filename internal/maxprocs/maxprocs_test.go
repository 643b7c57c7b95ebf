package maxprocs

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
)

func TestProcs(t *testing.T) {
	for cpus, want := range map[float64]int{0.05: 1, 0.5: 1, 1: 1, 1.5: 1, 2: 2, 2.9: 2, 64: 64} {
		if got := Procs(cpus); got != want {
			t.Errorf("Procs(%g) = %d, want %d", cpus, got, want)
		}
	}
}

func TestLimit(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	const v1mount = "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n" +
		"32 30 0:29 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
	for _, tc := range []struct {
		name  string
		files fstest.MapFS
		want  float64 // 0: none
	}{{
		name: "v1, the parent's quota",
		files: fstest.MapFS{
			"proc/self/cgroup":                            file("2:cpuacct:/a/b\n1:cpu:/a/b\n0::/\n"),
			"proc/self/mountinfo":                         file(v1mount),
			"sys/fs/cgroup/cpu/a/b/cpu.cfs_quota_us":      file("-1\n"),
			"sys/fs/cgroup/cpu/a/b/cpu.cfs_period_us":     file("100000\n"),
			"sys/fs/cgroup/cpu/a/cpu.cfs_quota_us":        file("50000\n"),
			"sys/fs/cgroup/cpu/a/cpu.cfs_period_us":       file("100000\n"),
			"sys/fs/cgroup/cpu/cpu.cfs_quota_us":          file("-1\n"),
			"sys/fs/cgroup/cpu/cpu.cfs_period_us":         file("100000\n"),
			"sys/fs/cgroup/cpuacct/a/b/cpu.cfs_quota_us":  file("10000\n"), // not the cpu controller's
			"sys/fs/cgroup/cpuacct/a/b/cpu.cfs_period_us": file("100000\n"),
		},
		want: 0.5,
	}, {
		name: "v1, the tightest of the cgroup and its parent",
		files: fstest.MapFS{
			"proc/self/cgroup":                        file("1:cpu:/a/b\n"),
			"proc/self/mountinfo":                     file(v1mount),
			"sys/fs/cgroup/cpu/a/b/cpu.cfs_quota_us":  file("150000\n"),
			"sys/fs/cgroup/cpu/a/b/cpu.cfs_period_us": file("100000\n"),
			"sys/fs/cgroup/cpu/a/cpu.cfs_quota_us":    file("400000\n"),
			"sys/fs/cgroup/cpu/a/cpu.cfs_period_us":   file("100000\n"),
		},
		want: 1.5,
	}, {
		name: "v1 in a container: its cgroup is the mount's root, the controllers mounted together",
		files: fstest.MapFS{
			"proc/self/cgroup":                            file("5:cpu,cpuacct:/docker/abc\n"),
			"proc/self/mountinfo":                         file("40 30 0:40 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct\n"),
			"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us":  file("250000\n"),
			"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": file("100000\n"),
		},
		want: 2.5,
	}, {
		name: "v1, no quota anywhere",
		files: fstest.MapFS{
			"proc/self/cgroup":                        file("1:cpu:/a\n"),
			"proc/self/mountinfo":                     file(v1mount),
			"sys/fs/cgroup/cpu/a/cpu.cfs_quota_us":    file("-1\n"),
			"sys/fs/cgroup/cpu/a/cpu.cfs_period_us":   file("100000\n"),
			"sys/fs/cgroup/cpu/cpu.cfs_quota_us":      file("-1\n"),
			"sys/fs/cgroup/cpu/cpu.cfs_period_us":     file("100000\n"),
			"sys/fs/cgroup/cpu/a/b/cpu.cfs_quota_us":  file("1000\n"), // a child's: not ours
			"sys/fs/cgroup/cpu/a/b/cpu.cfs_period_us": file("100000\n"),
		},
	}, {
		name: "v2, the parent's limit; a mount point with a space",
		files: fstest.MapFS{
			"proc/self/cgroup":                        file("0::/user.slice/app\n"),
			"proc/self/mountinfo":                     file("25 1 0:22 / /sys/fs/my\\040cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"),
			"sys/fs/my cgroup/user.slice/app/cpu.max": file("max 100000\n"),
			"sys/fs/my cgroup/user.slice/cpu.max":     file("50000 100000\n"),
		},
		want: 0.5,
	}, {
		name: "v2, unlimited",
		files: fstest.MapFS{
			"proc/self/cgroup":          file("0::/app\n"),
			"proc/self/mountinfo":       file("25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"),
			"sys/fs/cgroup/app/cpu.max": file("max 100000\n"),
		},
	}, {
		name: "v2, a malformed cpu.max is no limit",
		files: fstest.MapFS{
			"proc/self/cgroup":          file("0::/app\n"),
			"proc/self/mountinfo":       file("25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"),
			"sys/fs/cgroup/app/cpu.max": file("lots\n"),
		},
	}, {
		name:  "no /proc",
		files: fstest.MapFS{},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Limit(tc.files)
			if ok != (tc.want != 0) || got != tc.want {
				t.Errorf("Limit = %g, %v; want %g", got, ok, tc.want)
			}
		})
	}
}

// TestSetRespectsEnvironment: GOMAXPROCS in the environment is left alone.
func TestSetRespectsEnvironment(t *testing.T) {
	t.Setenv("GOMAXPROCS", "7")
	before := runtime.GOMAXPROCS(0)
	if limit, changed := Set(); limit != 0 || changed || runtime.GOMAXPROCS(0) != before {
		t.Errorf("Set with GOMAXPROCS set: %g, %v, GOMAXPROCS %d → %d", limit, changed, before, runtime.GOMAXPROCS(0))
	}
}

// TestSetInCgroup runs this test binary in a real cgroup with no limit of
// its own under one capped at half a CPU, and checks that it finds the
// limit and runs one processor. Needs root and a writable cgroup cpu
// controller.
func TestSetInCgroup(t *testing.T) {
	if os.Getenv("FROST_MAXPROCS_CHILD") == "1" {
		return // the child's work is in TestMain
	}
	parent := makeCgroup(t, 0.5)
	child := filepath.Join(parent, "child")
	if err := os.Mkdir(child, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(child) })

	cmd := exec.Command(os.Args[0], "-test.run=^TestSetInCgroup$")
	cmd.Env = append(os.Environ(), "FROST_MAXPROCS_CHILD=1", "GOMAXPROCS=")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	if err := os.WriteFile(filepath.Join(child, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
		t.Skipf("cannot move a process into the test's cgroup: %v", err)
	}
	fmt.Fprintln(stdin, "go") // it is in the cgroup now
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	var limit float64
	var procs int
	var changed bool
	if _, err := fmt.Sscan(line, &limit, &procs, &changed); err != nil {
		t.Fatalf("child said %q: %v", line, err)
	}
	if limit != 0.5 || procs != 1 || changed != (runtime.NumCPU() > 1) {
		t.Errorf("in a cgroup under one capped at 0.5 CPU on %d CPUs: limit %g, GOMAXPROCS %d, changed %v; want 0.5, 1, %v",
			runtime.NumCPU(), limit, procs, changed, runtime.NumCPU() > 1)
	}
}

func TestMain(m *testing.M) {
	if os.Getenv("FROST_MAXPROCS_CHILD") == "1" {
		// Wait to be moved into the cgroup, then report.
		bufio.NewReader(os.Stdin).ReadString('\n')
		limit, changed := Set()
		fmt.Printf("%g %d %v\n", limit, runtime.GOMAXPROCS(0), changed)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// makeCgroup makes a cgroup capped at cpus CPUs under the cpu
// controller's hierarchy (v1's cpu, else v2's unified one), removed at
// the test's end; it skips the test when it cannot.
func makeCgroup(t *testing.T, cpus float64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a cgroup")
	}
	name := fmt.Sprintf("frost-maxprocs-test-%d", os.Getpid())
	const period = 100000
	quota := int(cpus * period)
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		dir := filepath.Join("/sys/fs/cgroup", name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Skipf("cgroup v2: %v", err)
		}
		t.Cleanup(func() { os.Remove(dir) })
		// The machine's own setting is not the test's to change.
		if ctrl, _ := os.ReadFile("/sys/fs/cgroup/cgroup.subtree_control"); !slices.Contains(strings.Fields(string(ctrl)), "cpu") {
			t.Skip("cgroup v2 without the cpu controller enabled for the root's children")
		}
		if err := os.WriteFile(filepath.Join(dir, "cpu.max"), fmt.Appendf(nil, "%d %d", quota, period), 0); err != nil {
			t.Skipf("cgroup v2: %v", err)
		}
		return dir
	}
	dir := filepath.Join("/sys/fs/cgroup/cpu", name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cgroup v1 cpu: %v", err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	if err := os.WriteFile(filepath.Join(dir, "cpu.cfs_quota_us"), []byte(strconv.Itoa(quota)), 0); err != nil {
		t.Skipf("cgroup v1 cpu: %v", err)
	}
	return dir
}
