package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/frostdev/frost/internal/testguest"
)

// TestIsolationManyInFlight: 2,000 requests at once, each with its own
// random secret that the guest stores in a global, a static buffer, its
// heap and a file, three waves in a row: every request served finds the
// post-init state (no other request's secret anywhere), none is lost to an
// error, and refusals are only the app's concurrency limit (503).
func TestIsolationManyInFlight(t *testing.T) {
	if testing.Short() {
		t.Skip("slow end-to-end case; runs without -short")
	}
	s := startServer(t, "")
	s.mustFrost("deploy", "probe", testguest.Path(t, "probe"), "--concurrency", "4096")
	const inFlight, waves = 2000, 3
	var mu sync.Mutex
	var leaks, errs []string
	served, refused := 0, 0
	for wave := range waves {
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range inFlight {
			wg.Go(func() {
				sec := secret()
				<-start
				resp, body, err := s.do("POST", "probe", "/", strings.NewReader("body-"+sec), map[string]string{"X-Secret": sec})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					errs = append(errs, err.Error())
				case resp.StatusCode == 503:
					refused++
				case resp.StatusCode != 200:
					errs = append(errs, fmt.Sprintf("%d %q", resp.StatusCode, body))
				default:
					served++
					var r probeReport
					if err := json.Unmarshal([]byte(body), &r); err != nil || r.Counter != 0 || r.Static != "" || r.Heap != "" || r.File != "" {
						leaks = append(leaks, body)
					}
				}
			})
		}
		close(start)
		wg.Wait()
		t.Logf("wave %d: %d served, %d refused so far", wave+1, served, refused)
	}
	if len(leaks) > 0 {
		t.Fatalf("%d of %d requests saw another request's state, e.g. %s", len(leaks), served, leaks[0])
	}
	if len(errs) > 0 {
		t.Fatalf("%d requests failed, e.g. %s", len(errs), errs[0])
	}
	if served < inFlight*waves/2 {
		t.Fatalf("only %d of %d requests served (%d refused)", served, inFlight*waves, refused)
	}
}

// TestSessionAppsKeepTheirSecrets: twelve session apps, each keeping state
// between requests, are sent their own random secrets at once: each sees
// only its own. All are frozen and woken together: each wakes to its
// post-init state, with no secret from before the freeze, its own or
// another's.
func TestSessionAppsKeepTheirSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("slow end-to-end case; runs without -short")
	}
	s := startServer(t, "")
	const apps = 12
	names := make([]string, apps)
	secrets := map[string]string{}
	for i := range names {
		names[i] = fmt.Sprintf("sess%d", i)
		secrets[names[i]] = secret()
		s.mustFrost("deploy", names[i], testguest.Path(t, "probe"), "--mode", "session", "--idle", "1h")
	}
	each := func(fn func(app string)) {
		var wg sync.WaitGroup
		for _, app := range names {
			wg.Go(func() { fn(app) })
		}
		wg.Wait()
	}
	report := func(app, sec string) (probeReport, string) {
		resp, body, err := s.do("POST", app, "/", strings.NewReader("body-"+sec), map[string]string{"X-Secret": sec})
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("%s: %v %q", app, err, body)
			return probeReport{}, body
		}
		var r probeReport
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Errorf("%s: %q", app, body)
		}
		return r, body
	}
	foreign := func(app, body string) string {
		for other, sec := range secrets {
			if other != app && strings.Contains(body, sec) {
				return other
			}
		}
		return ""
	}
	// Twice each: the second request finds the first one's secret, its own.
	each(func(app string) { report(app, secrets[app]) })
	each(func(app string) {
		r, body := report(app, secrets[app])
		if r.Counter != 1 || !strings.Contains(body, secrets[app]) {
			t.Errorf("%s kept no state between requests: %s", app, body)
		}
		if o := foreign(app, body); o != "" {
			t.Errorf("%s saw %s's secret: %s", app, o, body)
		}
	})
	each(func(app string) { s.mustFrost("freeze", app) })
	each(func(app string) {
		fresh := secret()
		r, body := report(app, fresh)
		if r.Counter != 0 || r.Static != "" || r.Heap != "" || r.File != "" || strings.Contains(body, secrets[app]) {
			t.Errorf("%s after its thaw: %s; want the post-init state", app, body)
		}
		if o := foreign(app, body); o != "" {
			t.Errorf("%s saw %s's secret after the thaw: %s", app, o, body)
		}
	})
}
