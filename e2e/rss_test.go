package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/testguest"
)

// rssBytes reads a process's resident set size from /proc.
func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestMemoryBombsKeepHostRSSBounded runs many memory-bomb requests (each
// grows its guest to the app's limit) and checks the server's RSS stays
// within what the limits allow: the instances are discarded, not pooled.
func TestMemoryBombsKeepHostRSSBounded(t *testing.T) {
	s := startServer(t, "")
	const limit = 32 << 20
	const conc = 4
	s.mustFrost("deploy", "bomb", testguest.Path(t, "membomb"), "--memory", "32MiB", "--concurrency", strconv.Itoa(conc))
	s.mustFrost("deploy", "hello", testguest.Path(t, "hello-c"))
	s.get("hello", "/")
	base := rssBytes(t, s.cmd.Process.Pid)
	var wg sync.WaitGroup
	var peak int64
	var mu sync.Mutex
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				resp, body := s.get("bomb", "/")
				if resp.StatusCode != 200 || !strings.Contains(body, "MiB") {
					t.Errorf("bomb: %d %q", resp.StatusCode, body)
					return
				}
				r := rssBytes(t, s.cmd.Process.Pid)
				mu.Lock()
				peak = max(peak, r)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// At most conc instances hold a full memory at once; idle recycled
	// memories keep at most 4 MiB resident each (16 of them), plus slack for
	// the Go heap.
	bound := base + conc*limit + 16*4<<20 + 32<<20
	t.Logf("RSS base %d MiB, peak %d MiB, bound %d MiB", base>>20, peak>>20, bound>>20)
	if peak > bound {
		t.Errorf("RSS peaked at %d MiB, above the %d MiB the limits allow", peak>>20, bound>>20)
	}
	if resp, _ := s.get("hello", "/"); resp.StatusCode != 200 {
		t.Errorf("hello after the bombs: %d", resp.StatusCode)
	}
}

// TestFreezeReturnsMemory fills the memory of a few session apps (a
// session instance keeps what it allocated between requests), then freezes
// them: the instances are gone and the server's RSS falls by what they
// held. The next request thaws each one from its snapshot.
func TestFreezeReturnsMemory(t *testing.T) {
	s := startServer(t, "")
	const apps = 4
	const limit = 32 << 20
	for i := 0; i < apps; i++ {
		s.mustFrost("deploy", fmt.Sprintf("fat%d", i), testguest.Path(t, "membomb"), "--mode", "session", "--memory", "32MiB", "--idle", "1h")
	}
	base := rssBytes(t, s.cmd.Process.Pid)
	for i := 0; i < apps; i++ {
		if resp, body := s.get(fmt.Sprintf("fat%d", i), "/"); resp.StatusCode != 200 || !strings.Contains(body, "MiB") {
			t.Fatalf("fat%d: %d %q", i, resp.StatusCode, body)
		}
	}
	live := rssBytes(t, s.cmd.Process.Pid)
	for i := 0; i < apps; i++ {
		if out := s.mustFrost("freeze", fmt.Sprintf("fat%d", i)); !strings.Contains(out, "frozen") {
			t.Fatalf("freeze fat%d: %s", i, out)
		}
	}
	frozen := rssBytes(t, s.cmd.Process.Pid)
	t.Logf("RSS: %d MiB deployed, %d MiB with %d full session instances, %d MiB frozen", base>>20, live>>20, apps, frozen>>20)
	// The live instances hold close to apps×limit; freezing must give back
	// at least three quarters of it.
	if live-base < apps*limit*3/4 {
		t.Fatalf("the session instances added only %d MiB; the test did not fill them", (live-base)>>20)
	}
	if live-frozen < apps*limit*3/4 {
		t.Errorf("freezing gave back %d MiB of the %d MiB the instances held", (live-frozen)>>20, (live-base)>>20)
	}
	for i := 0; i < apps; i++ {
		resp, body := s.get(fmt.Sprintf("fat%d", i), "/")
		if bootOf(resp) != "thaw" || !strings.Contains(body, "MiB") {
			t.Errorf("fat%d after freeze: %q %q", i, resp.Header.Get("Server-Timing"), body)
		}
	}
}

// TestManyFrozenAppsGiveMemoryBack deploys many small session apps, serves
// each once and freezes them all: within seconds the server's RSS must
// fall to well under half of what the live apps added (their instances'
// memory, stacks and tables are freed, and the server returns the pages to
// the operating system rather than waiting for a collection that a quiet
// server may not run for minutes).
func TestManyFrozenAppsGiveMemoryBack(t *testing.T) {
	s := startServer(t, "")
	ctx := context.Background()
	c := api.NewClient("http://"+s.api, s.token)
	const apps = 200
	none := rssBytes(t, s.cmd.Process.Pid)
	for i := 0; i < apps; i++ {
		name := fmt.Sprintf("s%d", i)
		if _, err := c.DeployFile(ctx, name, testguest.Path(t, "hello-c"), api.DeployRequest{Mode: "session", Idle: api.Duration(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if resp, _ := s.get(name, "/"); resp.StatusCode != 200 {
			t.Fatalf("%s: %s", name, resp.Status)
		}
	}
	live := rssBytes(t, s.cmd.Process.Pid)
	for i := 0; i < apps; i++ {
		if _, err := c.Freeze(ctx, fmt.Sprintf("s%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	frozen := rssBytes(t, s.cmd.Process.Pid)
	for deadline := time.Now().Add(20 * time.Second); frozen-none > (live-none)/2 && time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
		frozen = rssBytes(t, s.cmd.Process.Pid)
	}
	t.Logf("RSS: %d MiB with none, %d MiB with %d live session apps, %d MiB with them frozen", none>>20, live>>20, apps, frozen>>20)
	if frozen-none > (live-none)/2 {
		t.Errorf("frozen apps hold %d KiB each; live ones %d KiB", (frozen-none)/apps>>10, (live-none)/apps>>10)
	}
}
