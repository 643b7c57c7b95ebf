#!/usr/bin/env bash
# runsc.sh installs a pinned gVisor runsc (built from the Go module proxy with
# `go install`, no GitHub access needed) and prints its absolute path as the
# last line of stdout. All progress goes to stderr.
#
#   FROST_CACHE   cache root (default $HOME/.cache/frost)
#   RUNSC_VERSION module version to build (default: the pin below)
#
# Layout: $FROST_CACHE/runsc/<version>/runsc
#
# Idempotent: if the binary exists and `runsc --version` works it exits at
# once. Otherwise it builds into a temp dir next to the target and renames it
# into place, so a half-finished build is never visible and concurrent runs
# are safe (the loser of the rename race just discards its copy).
set -euo pipefail

# gvisor.dev/gvisor@latest as resolved by proxy.golang.org. The module's
# default (master) branch builds fine with plain `go install`; the `go` branch
# pseudo-versions are refused by the proxy.
RUNSC_VERSION=${RUNSC_VERSION:-v0.0.0-20260905035102-160fafc42237}
CACHE=${FROST_CACHE:-$HOME/.cache/frost}
DIR=$CACHE/runsc/$RUNSC_VERSION
BIN=$DIR/runsc

log() { echo "runsc.sh: $*" >&2; }

if [[ -x $BIN ]] && "$BIN" --version >/dev/null 2>&1; then
	echo "$BIN"
	exit 0
fi

command -v go >/dev/null || { log "go not found in PATH"; exit 1; }
mkdir -p "$CACHE/runsc"
TMP=$(mktemp -d "$CACHE/runsc/.build-$RUNSC_VERSION.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

log "building gvisor.dev/gvisor/runsc@$RUNSC_VERSION (takes a few minutes)"
start=$SECONDS
# GOFLAGS is cleared so a caller's -mod=vendor etc. cannot leak in; the module
# is built outside any workspace (GOWORK=off) from the proxy.
if ! (cd "$TMP" && CGO_ENABLED=0 GOBIN="$TMP/bin" GOWORK=off GOFLAGS=-buildvcs=false \
	timeout 1800 go install "gvisor.dev/gvisor/runsc@$RUNSC_VERSION" >&2); then
	log "go install failed"
	exit 1
fi
"$TMP/bin/runsc" --version >&2 || { log "built binary does not run"; exit 1; }
log "built in $((SECONDS - start))s"

mv "$TMP/bin" "$TMP/$RUNSC_VERSION"
if ! mv -T "$TMP/$RUNSC_VERSION" "$DIR" 2>/dev/null; then
	# Someone else won the race (or a broken dir is in the way).
	if [[ -x $BIN ]] && "$BIN" --version >/dev/null 2>&1; then
		log "another build finished first; using it"
	else
		rm -rf "$DIR"
		mv -T "$TMP/$RUNSC_VERSION" "$DIR"
	fi
fi
echo "$BIN"
