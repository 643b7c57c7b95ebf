package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/testtool"
)

// domain is what the cluster's apps answer under: it has a dot, so that
// TLS clients accept the development certificate's *.frost.localhost.
const domain = "frost.localhost"

// cluster is etcd, the nodes and a gateway, all on loopback, with their
// data under one temporary directory.
type cluster struct {
	frost, root string
	etcd        *proc
	etcdURL     string
	nodes       []*proc
	gw          *proc
	token       string
	api         *api.Client // the gateway's control API
	pins        pins        // CPUs by role (-cpus)
	quotas      *quotas     // CPU time by role (-cpu-quota)

	stopOnce sync.Once
}

// proc is one process of the cluster.
type proc struct {
	name   string   // node name, "gateway" or "etcd"
	pins   pins     // CPUs by role
	quotas *quotas  // CPU time by role
	args   []string // to start it again
	data   string
	cmd    *exec.Cmd
	done   chan struct{}
	log    string // file with its stderr (and etcd's stdout)

	http, https, api string // host:port, from the banner
	ca               string // development CA file (gateway with --https)
}

// startCluster starts etcd, n nodes and a gateway with HTTP and HTTPS
// listeners, and returns once the gateway routes to every node. On error
// what was started is stopped again.
func startCluster(ctx context.Context, frost, etcdBin string, n int, nodeFlags, gatewayFlags []string, pins pins, quotas *quotas) (c *cluster, err error) {
	root, err := os.MkdirTemp("", "frost-clusterbench-")
	if err != nil {
		return nil, err
	}
	c = &cluster{frost: frost, root: root, pins: pins, quotas: quotas}
	defer func() {
		if err != nil {
			c.stop()
			c = nil
		}
	}()
	if err := c.startEtcd(etcdBin); err != nil {
		return nil, err
	}
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("n%d", i)
		p, err := c.startFrost(name, filepath.Join(root, name), append([]string{"--role", "node", "--name", name, "--https", "127.0.0.1:0"}, nodeFlags...)...)
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, p)
	}
	c.gw, err = c.startFrost("gateway", filepath.Join(root, "gateway"), append([]string{"--role", "gateway", "--https", "127.0.0.1:0"}, gatewayFlags...)...)
	if err != nil {
		return nil, err
	}
	tok, err := os.ReadFile(filepath.Join(c.gw.data, "admin.token"))
	if err != nil {
		return nil, err
	}
	c.token = strings.TrimSpace(string(tok))
	c.api = api.NewClient(c.gw.api, c.token)
	for _, p := range c.nodes {
		if _, err := c.waitListed(ctx, p.name, true, 30*time.Second); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// stop ends every process (SIGINT; SIGKILL after 10s) and removes the
// data. It is safe to call more than once and from a signal handler.
func (c *cluster) stop() {
	c.stopOnce.Do(func() {
		if c.gw != nil {
			c.gw.stop(os.Interrupt)
		}
		var wg sync.WaitGroup
		for _, p := range c.nodes {
			wg.Go(func() { p.stop(os.Interrupt) })
		}
		wg.Wait()
		if c.etcd != nil {
			c.etcd.stop(syscall.SIGTERM)
		}
		c.quotas.remove()
		os.RemoveAll(c.root)
	})
}

// logTails returns the last lines of every process's log, for an error
// report.
func (c *cluster) logTails() string {
	var b strings.Builder
	for _, p := range append([]*proc{c.etcd, c.gw}, c.nodes...) {
		if p == nil {
			continue
		}
		data, _ := os.ReadFile(p.log)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", p.name, strings.Join(lines, "\n"))
	}
	return b.String()
}

// startEtcd starts a single-member etcd on free loopback ports, as
// internal/testetcd does, trying again if another process took a port.
func (c *cluster) startEtcd(bin string) error {
	for attempt := 1; ; attempt++ {
		addrs, err := testtool.FreeAddrs(2)
		if err != nil {
			return err
		}
		clientURL, peerURL := "http://"+addrs[0], "http://"+addrs[1]
		p := &proc{name: "etcd", pins: c.pins, data: filepath.Join(c.root, "etcd"), log: filepath.Join(c.root, "etcd.log")}
		p.args = []string{
			"--name=bench",
			"--data-dir=" + p.data,
			"--listen-client-urls=" + clientURL,
			"--advertise-client-urls=" + clientURL,
			"--listen-peer-urls=" + peerURL,
			"--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=bench=" + peerURL,
			"--initial-cluster-state=new",
			"--unsafe-no-fsync", // the data dies with the run
		}
		if _, err := p.start(bin, false); err != nil {
			return err
		}
		err = waitEtcd(p, clientURL)
		if err == nil {
			c.etcd, c.etcdURL = p, clientURL
			return nil
		}
		p.stop(syscall.SIGKILL)
		log, _ := os.ReadFile(p.log)
		if attempt < 3 && strings.Contains(string(log), "address already in use") {
			os.RemoveAll(p.data)
			continue
		}
		return fmt.Errorf("%w: %s", err, lastLines(string(log), 10))
	}
}

// waitEtcd waits until the etcd p serving url is healthy.
func waitEtcd(p *proc, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for !etcdHealthy(url) {
		select {
		case <-p.done:
			return errors.New("etcd exited")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("etcd not healthy after 30s")
		}
	}
	return nil
}

func etcdHealthy(url string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && strings.Contains(string(b), `"health":"true"`)
}

var (
	apiRE   = regexp.MustCompile(`control API: (http://\S+)`)
	httpRE  = regexp.MustCompile(`apps:\s+http://NAME\.\S+?:(\d+)/`)
	httpsRE = regexp.MustCompile(`apps \(TLS\):\s+https://NAME\.\S+?:(\d+)/`)
	caRE    = regexp.MustCompile(`development certificate: trust (\S+)`)
)

// startFrost starts `frost server` with role args on loopback ports and
// data directory data, and waits for its banner.
func (c *cluster) startFrost(name, data string, role ...string) (*proc, error) {
	p := &proc{name: name, pins: c.pins, quotas: c.quotas, data: data, log: filepath.Join(c.root, name+".log")}
	p.args = append([]string{"server", "--etcd", c.etcdURL, "--data", data, "--domain", domain,
		"--http", "127.0.0.1:0", "--api", "127.0.0.1:0", "--log-level", "warn", "--drain", "2s"}, role...)
	return p, p.startFrost(c.frost)
}

// restart starts a stopped frost process again with the same arguments
// (same name, same data directory; new ports).
func (c *cluster) restart(p *proc) error {
	p.http, p.https, p.api, p.ca = "", "", "", ""
	return p.startFrost(c.frost)
}

func (p *proc) startFrost(bin string) error {
	if err := os.MkdirAll(p.data, 0o755); err != nil {
		return err
	}
	tls := false
	for _, a := range p.args {
		tls = tls || a == "--https"
	}
	out, err := p.start(bin, true)
	if err != nil {
		return err
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	timeout := time.After(time.Minute)
	for p.api == "" || p.http == "" || tls && (p.https == "" || p.ca == "") {
		select {
		case l, ok := <-lines:
			if !ok {
				<-p.done
				log, _ := os.ReadFile(p.log)
				return fmt.Errorf("%s exited before it was ready: %s", p.name, lastLines(string(log), 10))
			}
			if m := apiRE.FindStringSubmatch(l); m != nil {
				p.api = m[1]
			}
			if m := httpRE.FindStringSubmatch(l); m != nil {
				p.http = "127.0.0.1:" + m[1]
			}
			if m := httpsRE.FindStringSubmatch(l); m != nil {
				p.https = "127.0.0.1:" + m[1]
			}
			if m := caRE.FindStringSubmatch(l); m != nil {
				p.ca = m[1]
			}
		case <-timeout:
			p.stop(syscall.SIGKILL)
			return fmt.Errorf("%s not ready after a minute", p.name)
		}
	}
	go func() {
		for range lines {
		}
	}()
	return nil
}

// start runs bin with p.args, its stderr going to p.log. With banner,
// it returns a pipe of its stdout; otherwise stdout goes to p.log too.
func (p *proc) start(bin string, banner bool) (io.Reader, error) {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p.cmd = exec.Command(bin, p.args...)
	p.cmd.Env = p.quotas.env(p.role())
	p.cmd.Stderr = f
	var out io.Reader
	if banner {
		if out, err = p.cmd.StdoutPipe(); err != nil {
			return nil, err
		}
	} else {
		p.cmd.Stdout = f
	}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the bench
	if err := p.pins.start(p.role(), p.cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.name, err)
	}
	if err := p.quotas.cap(p.role(), p.name, p.cmd.Process.Pid); err != nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		return nil, err
	}
	p.done = make(chan struct{})
	go func() { p.cmd.Wait(); close(p.done) }()
	return out, nil
}

// role is what -cpus calls the process.
func (p *proc) role() string {
	if p.name == "etcd" || p.name == "gateway" {
		return p.name
	}
	return "node"
}

// stop sends sig and waits for the process to exit, killing it after 10s.
func (p *proc) stop(sig os.Signal) {
	if p.cmd == nil || p.done == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// member is an entry of the gateway's GET /v1/nodes.
type member struct {
	Name     string `json:"name"`
	HTTPAddr string `json:"http_addr"`
	APIAddr  string `json:"api_addr"`
	InFlight int    `json:"in_flight"`
}

// members asks the gateway which nodes it routes to.
func (c *cluster) members(ctx context.Context) ([]member, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.gw.api+"/v1/nodes", nil)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/nodes: %s %s", resp.Status, b)
	}
	var list []member
	return list, json.Unmarshal(b, &list)
}

// waitListed polls the gateway's member list every 20ms until node is in
// it (listed) or not, and returns how long that took.
func (c *cluster) waitListed(ctx context.Context, node string, listed bool, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		list, err := c.members(ctx)
		if err != nil {
			return 0, err
		}
		in := false
		for _, m := range list {
			in = in || m.Name == node
		}
		if in == listed {
			return time.Since(start), nil
		}
		if time.Since(start) > limit {
			return 0, fmt.Errorf("node %s listed=%v after %s, want %v", node, in, limit, listed)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// node returns the cluster's node process called name.
func (c *cluster) node(name string) *proc {
	for _, p := range c.nodes {
		if p.name == name {
			return p
		}
	}
	return nil
}

// deploy deploys module as app name through the gateway with the CLI.
func (c *cluster) deploy(name, module string, flags ...string) error {
	cmd := exec.Command(c.frost, append([]string{"deploy", name, module}, flags...)...)
	cmd.Env = append(os.Environ(), "FROST_API="+c.gw.api, "FROST_TOKEN="+c.token)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("frost deploy %s: %v: %s", name, err, out)
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// get sends GET / for app through addr (an app listener, HTTP) and
// returns the response with its body read.
func get(ctx context.Context, hc *http.Client, addr, app string) (*http.Response, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return nil, "", err
	}
	req.Host = app + "." + domain
	resp, err := hc.Do(req)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

// serverTiming reads a Server-Timing header: the boot kind and the
// durations (ms) by metric name.
func serverTiming(h string) (boot string, dur map[string]float64) {
	dur = map[string]float64{}
	for _, m := range strings.Split(h, ",") {
		parts := strings.Split(strings.TrimSpace(m), ";")
		for _, p := range parts[1:] {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			switch {
			case parts[0] == "boot" && k == "desc":
				boot = v
			case k == "dur":
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					dur[parts[0]] = f
				}
			}
		}
	}
	return boot, dur
}
