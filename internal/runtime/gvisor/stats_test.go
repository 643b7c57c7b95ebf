package gvisor

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/runtime"
)

// TestStats: a real sandbox's figures come from its cgroup and move with
// what it does: a second of CPU spent spinning shows as about a second, 64
// MiB held in a process as about 64 MiB more memory; its limits are its
// spec's.
func TestStats(t *testing.T) {
	r, rootfs := newRuntime(t)
	b, _ := bootBox(t, r, rootfs, "t1stats")
	stats := func() runtime.BoxStats {
		t.Helper()
		st, err := b.(runtime.Stater).Stats()
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	before := stats()
	if before.CPU <= 0 || before.Memory <= 0 || before.MemoryLimit != 512<<20 || before.CPUs != 1 {
		t.Fatalf("at boot: %+v", before)
	}
	// A second of the process's own CPU time, as gVisor counts it. On a
	// machine busy with other work gVisor's count runs ahead of the
	// host's (a fresh-clone CI run beside other tests saw 0.74 s in the
	// cgroup), so the bounds catch a wrong unit or file, not a few
	// hundred milliseconds.
	if _, e, code := execIn(t, b, runtime.Cmd{Args: []string{"python3", "-c", "import time\nwhile time.process_time() < 1: pass"}}, ""); code != 0 {
		t.Fatalf("spin: %d %s", code, e)
	}
	spun := stats()
	if d := spun.CPU - before.CPU; d < 500*time.Millisecond || d > 5*time.Second {
		t.Fatalf("a second of spinning counted as %v of CPU", d)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Exec(ctx, runtime.Cmd{Args: []string{"python3", "-c", "import time; b = bytearray(64 << 20); b[::4096] = b'x' * (len(b) // 4096); time.sleep(60)"}})
	}()
	var held runtime.BoxStats
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if held = stats(); held.Memory-spun.Memory >= 56<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("64 MiB held: memory %d → %d", spun.Memory, held.Memory)
		}
	}
	cancel(nil)
	<-done
}

// TestCgroupFilesIn: where a sandbox's figures are read, for cgroup v1
// (cpu and cpuacct mounted together, memory apart, under a mount of a
// subtree) and for v2 alone; none where neither is mounted.
func TestCgroupFilesIn(t *testing.T) {
	v1 := "12:memory:/frost/sb1\n4:cpu,cpuacct:/frost/sb1\n1:name=systemd:/x\n"
	v1mounts := "30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n" +
		"31 25 0:28 /frost /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
	f, err := cgroupFilesIn(v1, v1mounts)
	if err != nil || f.v2 || f.cpu != "/sys/fs/cgroup/cpu,cpuacct/frost/sb1/cpuacct.usage" ||
		f.memory != "/sys/fs/cgroup/memory/sb1/memory.usage_in_bytes" || f.memoryLimit != "/sys/fs/cgroup/memory/sb1/memory.limit_in_bytes" {
		t.Fatalf("v1: %+v %v", f, err)
	}
	f, err = cgroupFilesIn("0::/system.slice/sb2\n", "40 1 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
	if err != nil || !f.v2 || f.cpu != "/sys/fs/cgroup/system.slice/sb2/cpu.stat" || f.memory != "/sys/fs/cgroup/system.slice/sb2/memory.current" {
		t.Fatalf("v2: %+v %v", f, err)
	}
	if _, err := cgroupFilesIn(v1, "40 1 0:30 / /proc rw - proc proc rw\n"); err == nil {
		t.Fatal("no controller mounted: no error")
	}
}

// BenchmarkStats: one metrics sample of a real sandbox (its cgroup's
// files), and of one with a network (its link's counters too), against
// one read of /proc/self/stat in the same run.
func BenchmarkStats(b *testing.B) {
	r, rootfs := newRuntime(b)
	box, _ := bootBox(b, r, rootfs, "b1stats")
	st := box.(runtime.Stater)
	if _, err := st.Stats(); err != nil { // finds the cgroup once
		b.Fatal(err)
	}
	b.Run("sample", func(b *testing.B) {
		for b.Loop() {
			if _, err := st.Stats(); err != nil {
				b.Fatal(err)
			}
		}
	})
	// With a network, a sample reads its link's two counters too.
	rn, _ := newRuntime(b, func(c *Config) { c.Network = testPool })
	netBox, _ := bootBox(b, rn, rootfs, "b1statsnet")
	stn := netBox.(runtime.Stater)
	if _, err := stn.Stats(); err != nil {
		b.Fatal(err)
	}
	b.Run("sample-network", func(b *testing.B) {
		for b.Loop() {
			if _, err := stn.Stats(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("counters", func(b *testing.B) {
		for b.Loop() {
			rn.net.counters(rn.runscID("b1statsnet"))
		}
	})
	b.Run("baseline-proc-stat", func(b *testing.B) {
		for b.Loop() {
			if _, err := os.ReadFile("/proc/self/stat"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
