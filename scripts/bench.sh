#!/usr/bin/env bash
# make bench: Frost's performance figures, each against a baseline measured in
# the same run on the same machine. Prints a Markdown report to stdout and
# writes it to build/bench/report.md.
#
#   1. http-wasm hello world (request mode: every request from the post-init
#      snapshot) vs vanilla net/http hello world, under wrk. Rounds alternate
#      A/B to spread machine noise; we quote medians and the ratio.
#   2. Per-request cost in the runtime (go test -bench), µs and allocations.
#   3. CPU-limit instrumentation on a hot loop vs the same module without it,
#      and vs wazero's context-done polling.
#   4. The node's in-process cost per request (no sockets) vs a vanilla handler.
#   5. Freeze and thaw: wake latency (frozen → first byte) over HTTP for a C,
#      a Go and a heavy-init guest against a warm request and a cold boot,
#      in-process too; RSS with APPS session apps live and frozen vs none.
#   7. Shared storage: a frozen app's first wake on a node that must pull its
#      snapshot from S3 (versitygw) against one on the node that baked it,
#      for 1, 64 and 512 MiB of memory.
#   8. Neighbours: a well-behaved app's p50/p99 alone and beside each kind of
#      hostile guest, with fair CPU scheduling on and (for a spinning loop)
#      off, on two servers started by the same run.
#   9. Cluster: gateway overhead (against a bare Go proxy and nginx, from
#      Debian's package: scripts/nginx.sh; over TLS and HTTP/2 with h2load,
#      scripts/h2load.sh), SNI pre-warm, failover; a paused sandbox
#      resumed on another node after its node was killed (take-over through
#      S3) against a resume on its own node.
#   6. Agent sandboxes (real runsc): create from scratch vs from a template,
#      pause, resume, first exec after resume, exec round trip vs the host,
#      file throughput; with Node.js, the official E2B SDK against Frost's own
#      API for the same operations.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-16}
WAKES=${WAKES:-300}
APPS=${APPS:-1000}
out=build/bench
mkdir -p "$out" bin
bash scripts/deps.sh >/dev/null
bash scripts/build-guests.sh build/guests >/dev/null
CGO_ENABLED=0 go build -o bin/frost ./cmd/frost
go build -o bin/vanilla ./bench/vanilla
command -v wrk >/dev/null || { echo "wrk missing: run scripts/deps.sh" >&2; exit 1; }

data=$(mktemp -d)
cleanup() { kill "${fpid:-}" "${vpid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT
bin/frost server --data "$data" --http 127.0.0.1:18080 --api 127.0.0.1:17070 --log-level warn \
  --deploy hello=build/guests/hello-c.wasm >"$out/frost.log" 2>&1 &
fpid=$!
bin/vanilla --addr 127.0.0.1:18081 &
vpid=$!
for i in $(seq 1 100); do
  curl -sf -H 'Host: hello.localhost' http://127.0.0.1:18080/ >/dev/null 2>&1 && curl -sf http://127.0.0.1:18081/ >/dev/null 2>&1 && break
  sleep 0.1
done
# warm up both
wrk -t2 -c"$CONNS" -d2s -H 'Host: hello.localhost' http://127.0.0.1:18080/ >/dev/null
wrk -t2 -c"$CONNS" -d2s http://127.0.0.1:18081/ >/dev/null

run_wrk() { # name url [host]
  local hdr=()
  [ -n "${3:-}" ] && hdr=(-H "Host: $3")
  wrk -t2 -c"$CONNS" -d"$DURATION" --latency "${hdr[@]}" "$2" >"$out/wrk-$1-$r.txt"
  awk -v n="$1" '/Requests\/sec/ {rps=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2} /Non-2xx/ {bad=$4}
    END {print n, rps, p50, p99, (bad==""?0:bad)}' "$out/wrk-$1-$r.txt"
}
: >"$out/rounds.txt"
for r in $(seq 1 "$ROUNDS"); do
  run_wrk vanilla http://127.0.0.1:18081/ >>"$out/rounds.txt"
  run_wrk frost http://127.0.0.1:18080/ hello.localhost >>"$out/rounds.txt"
done
go run ./bench/report "$out/rounds.txt" >"$out/http.md"

go test -run='^$' -bench='Handle/(hello-c|go-httpwasm)' -benchmem -count=5 -benchtime=20000x ./internal/runtime/wasm/ >"$out/runtime.txt"
go test -run='^$' -bench='Handle/(cgi|go-cgi)' -benchmem -count=5 -benchtime=200x ./internal/runtime/wasm/ >>"$out/runtime.txt"
go test -run='^$' -bench=HotLoop -benchmem -count=5 -benchtime=3x ./internal/runtime/wasm/ >>"$out/runtime.txt"
go test -run='^$' -bench=ServeHTTP -benchmem -count=5 -benchtime=100000x ./internal/node/ >>"$out/runtime.txt"
go run ./bench/report -gobench "$out/runtime.txt" >"$out/runtime.md"

go test -run='^$' -bench=Wake -benchtime=1000x ./internal/runtime/wasm/ >"$out/wake-inprocess.txt"
go run ./bench/wake -frost bin/frost -guests build/guests -n "$WAKES" -apps "$APPS" >"$out/wake.md"
# The pinned E2B SDK, installed as the e2e test does (same cache key).
e2b=()
if command -v node >/dev/null && command -v npm >/dev/null; then
  sdk=${FROST_CACHE:-$HOME/.cache/frost}/e2bsdk/$(sha256sum e2e/e2bsdk/package-lock.json | cut -c1-16)
  mkdir -p "$sdk"
  cp e2e/e2bsdk/package.json e2e/e2bsdk/package-lock.json e2e/e2bsdk/bench.mjs e2e/e2bsdk/gateway-bench.mjs e2e/e2bsdk/timing.mjs "$sdk/"
  [ -f "$sdk/node_modules/e2b/package.json" ] || (cd "$sdk" && npm ci --no-audit --no-fund >/dev/null)
  e2b=(-e2b "$sdk")
fi
go run ./bench/sandbox -frost bin/frost -runsc "$(bash scripts/runsc.sh | tail -1)" -rootfs "$(bash scripts/rootfs.sh | tail -1)" "${e2b[@]}" >"$out/sandbox.md"
# Cross-node first wake through shared storage (real versitygw): local vs pulled.
go test -run '^$' -bench Wake -benchtime 5x ./internal/replica/ >"$out/shared-wake.txt"
go run ./bench/cluster -frost bin/frost -etcd "$(bash scripts/etcd.sh | tail -1)" -guests build/guests \
  -nginx "$(bash scripts/nginx.sh | tail -1)" -h2load "$(bash scripts/h2load.sh | tail -1)" >"$out/cluster.md"
# E2B's SDK straight at a sandbox node vs through the gateway.
if [ -n "${sdk:-}" ]; then
  go run ./bench/cluster -frost bin/frost -etcd "$(bash scripts/etcd.sh | tail -1)" -guests build/guests -nodes 1 -only e2b \
    -node-flags "--runsc $(bash scripts/runsc.sh | tail -1) --rootfs $(bash scripts/rootfs.sh | tail -1)" -e2b "$sdk" >"$out/cluster-e2b.md"
fi
# A paused sandbox resumed on another node after its node was killed vs on its own.
go test -run '^$' -bench SandboxTakeOver -benchtime 1x ./e2e >"$out/sandbox-takeover.txt"
# A well-behaved app's latency beside hostile ones, fair scheduling on and off.
go run ./bench/neighbours -frost bin/frost -guests build/guests >"$out/neighbours.md"

{
  echo "Run $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores ($(uname -m)), $(go version | cut -d' ' -f3), commit $(git describe --always --dirty)."
  echo
  cat "$out/http.md"
  echo
  cat "$out/runtime.md"
} | tee "$out/report.md"
