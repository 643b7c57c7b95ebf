package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"
	"time"
)

// nginxConf is the configuration of the nginx baseline: one process (no
// master, no workers to find), no access log, HTTP/1.1 keep-alive to the
// node with an idle pool larger than any wrk load here, the Host header
// passed on (the node routes by it). Every path nginx would otherwise
// take from Debian's build (/var/lib/nginx, /var/log/nginx) is in dir.
var nginxConf = template.Must(template.New("nginx.conf").Parse(`daemon off;
master_process off;
worker_processes 1;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log warn;
events {
	worker_connections 4096;
}
http {
	access_log off;
	client_body_temp_path {{.Dir}}/body;
	proxy_temp_path {{.Dir}}/proxy;
	fastcgi_temp_path {{.Dir}}/fastcgi;
	uwsgi_temp_path {{.Dir}}/uwsgi;
	scgi_temp_path {{.Dir}}/scgi;
	upstream node {
		server {{.Node}};
		keepalive 1024;
	}
	server {
		listen {{.Addr}};
		location / {
			proxy_pass http://node;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host $http_host;
		}
	}
}
`))

// startNginx runs nginx (the binary at bin, scripts/nginx.sh) as a
// reverse proxy to node on a loopback port, on the gateway's CPUs and
// with its CPU quota: what a proxy written in C for exactly this costs
// here, a second baseline beside the plain Go one.
func startNginx(ctx context.Context, bin, node string, pins pins, quotas *quotas) (string, int, func(), error) {
	dir, err := os.MkdirTemp("", "frost-bench-nginx-")
	if err != nil {
		return "", 0, nil, err
	}
	// nginx takes a port, not port 0: find a free one.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return "", 0, nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	var conf bytes.Buffer
	if err := nginxConf.Execute(&conf, struct{ Dir, Node, Addr string }{dir, node, addr}); err != nil {
		os.RemoveAll(dir)
		return "", 0, nil, err
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, conf.Bytes(), 0o644); err != nil {
		os.RemoveAll(dir)
		return "", 0, nil, err
	}
	cmd := exec.Command(bin, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := pins.start("gateway", cmd); err != nil {
		os.RemoveAll(dir)
		return "", 0, nil, fmt.Errorf("nginx: %v", err)
	}
	stop := func() { cmd.Process.Kill(); cmd.Wait(); os.RemoveAll(dir) }
	if err := quotas.cap("gateway", "nginx", cmd.Process.Pid); err != nil {
		stop()
		return "", 0, nil, err
	}
	hc := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, _, err := get(ctx, hc, addr, "hello")
		if err == nil && resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			stop()
			return "", 0, nil, fmt.Errorf("nginx did not answer on %s in 10s (%v): %s", addr, err, log)
		}
	}
	return addr, cmd.Process.Pid, stop, nil
}

// nginxVersion is what bin -v says, "nginx/1.22.1".
func nginxVersion(bin string) string {
	out, _ := exec.Command(bin, "-v").CombinedOutput()
	_, v, ok := strings.Cut(strings.TrimSpace(string(out)), "nginx version: ")
	if !ok {
		return "nginx"
	}
	return v
}
