package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/frostdev/frost/internal/testguest"
)

// probeReport is what the probe guests say they found before writing.
type probeReport struct {
	Counter int    `json:"counter"`
	Static  string `json:"static"`
	Heap    string `json:"heap"`
	File    string `json:"file"`
	Env     string `json:"env"`
}

func secret() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// TestRequestIsolationUnderLoad sends many concurrent requests, each carrying
// a random secret the guest stores in a global, a static buffer, its heap and
// a file; every request must find the post-init state, never another's
// secret. Requests that grow memory or trap are mixed in: their instances
// must be discarded, not reused.
func TestRequestIsolationUnderLoad(t *testing.T) {
	s := startServer(t, "")
	s.mustFrost("deploy", "probe", testguest.Path(t, "probe"), "--concurrency", "1000")
	s.mustFrost("deploy", "goprobe", testguest.Path(t, "go-cgi"), "--concurrency", "1000")
	cases := []struct {
		app, path string
		requests  int
	}{
		{"probe", "/", 4000},
		{"goprobe", "/probe", 300},
	}
	for _, c := range cases {
		t.Run(c.app, func(t *testing.T) {
			const workers = 32
			var (
				mu      sync.Mutex
				leaks   []string
				fails   int
				served  int
				seenAll = map[string]bool{}
			)
			var wg sync.WaitGroup
			per := c.requests / workers
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := 0; i < per; i++ {
						sec := secret()
						path := c.path
						special := ""
						if c.app == "probe" {
							switch i % 50 {
							case 7:
								special, path = "grow", "/?grow=2"
							case 13:
								special, path = "trap", "/?trap=1"
							}
						}
						resp, body, err := s.do("POST", c.app, path, strings.NewReader("body-"+sec), map[string]string{"X-Secret": sec})
						mu.Lock()
						seenAll[sec] = true
						if err != nil {
							fails++
							mu.Unlock()
							continue
						}
						if special == "trap" {
							if resp.StatusCode != 500 {
								leaks = append(leaks, fmt.Sprintf("trap request got %d", resp.StatusCode))
							}
							mu.Unlock()
							continue
						}
						if resp.StatusCode != 200 {
							fails++
							mu.Unlock()
							continue
						}
						served++
						var r probeReport
						if err := json.Unmarshal([]byte(body), &r); err != nil {
							leaks = append(leaks, "bad report: "+body)
						} else if r.Counter != 0 || r.Static != "" || r.Heap != "" || r.File != "" {
							leaks = append(leaks, body)
						}
						mu.Unlock()
					}
				}(w)
			}
			wg.Wait()
			if fails > 0 {
				t.Errorf("%d requests failed", fails)
			}
			if len(leaks) > 0 {
				t.Fatalf("%d of %d requests saw another request's state, e.g. %s", len(leaks), served, leaks[0])
			}
			if served < c.requests*8/10 {
				t.Fatalf("only %d requests served", served)
			}
		})
	}
}
