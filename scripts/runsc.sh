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
# The binary is stamped with the module version (-X .../runsc/version.version),
# so `runsc --version` prints "runsc version <version>". This matters: runsc
# refuses to restore a checkpoint taken by a different version string, and an
# unstamped `go install` build reports VERSION_MISSING for every commit, which
# would make images from different gVisor builds look compatible.
#
# Idempotent: if the binary exists and reports the pinned version it exits at
# once. Otherwise it builds into a temp dir next to the target and renames the
# binary into place (atomic; running sandboxes keep the old inode), so a
# half-finished build is never visible and concurrent runs are safe.
set -euo pipefail

# gvisor.dev/gvisor@latest as resolved by proxy.golang.org. The module's
# default (master) branch builds fine with plain `go install`; the `go` branch
# pseudo-versions are refused by the proxy.
RUNSC_VERSION=${RUNSC_VERSION:-v0.0.0-20260905035102-160fafc42237}
CACHE=${FROST_CACHE:-$HOME/.cache/frost}
DIR=$CACHE/runsc/$RUNSC_VERSION
BIN=$DIR/runsc

log() { echo "runsc.sh: $*" >&2; }

WANT="runsc version $RUNSC_VERSION"
have_version() { [[ -x $1 ]] && [[ $("$1" --version 2>/dev/null | head -n1) == "$WANT" ]]; }

if have_version "$BIN"; then
	echo "$BIN"
	exit 0
fi

command -v go >/dev/null || { log "go not found in PATH"; exit 1; }
mkdir -p "$CACHE/runsc"
TMP=$(mktemp -d "$CACHE/runsc/.build-$RUNSC_VERSION.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

log "building gvisor.dev/gvisor/runsc@$RUNSC_VERSION (takes a few minutes)"
start=$SECONDS
# GOFLAGS is replaced so a caller's -mod=vendor etc. cannot leak in; the module
# is built outside any workspace (GOWORK=off) from the proxy.
if ! (cd "$TMP" && CGO_ENABLED=0 GOBIN="$TMP/bin" GOWORK=off GOFLAGS=-buildvcs=false \
	timeout 1800 go install -ldflags="-X gvisor.dev/gvisor/runsc/version.version=$RUNSC_VERSION" \
	"gvisor.dev/gvisor/runsc@$RUNSC_VERSION" >&2); then
	log "go install failed"
	exit 1
fi
have_version "$TMP/bin/runsc" || { log "built binary does not report \"$WANT\""; exit 1; }
log "built in $((SECONDS - start))s"

mkdir -p "$DIR"
mv -f "$TMP/bin/runsc" "$BIN"
echo "$BIN"
