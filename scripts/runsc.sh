#!/usr/bin/env bash
# runsc.sh installs a pinned gVisor runsc (built from the Go module proxy, no
# GitHub access needed) and prints its absolute path as the last line of
# stdout. All progress goes to stderr.
#
#   FROST_CACHE   cache root (default $HOME/.cache/frost)
#
# Layout: $FROST_CACHE/runsc/<version>-<filters>/runsc, where <filters> hashes
# tools/runsc (the generator below, its pins and the patches).
#
# The build is gVisor's own module (its go.mod, so its dependency versions)
# with four changes. One: the seccomp-bpf programs of the sentry and the gofer are
# precompiled into the binary, as gVisor's Bazel builds do. The Go module
# ships stubs that register none, so a `go install` build compiles them at
# every sandbox start and restore (36-80 ms of a ~210 ms restore here).
# tools/runsc is a separate Go module, pinned to the same gVisor version,
# whose main asks gVisor for its programs and writes them in place of the
# stubs in a copy of the module (RATIONALE: "runsc with precompiled seccomp
# filters"). Two: a checkpoint's pages file is read and written by twice as
# many parallel system calls as the host has cores (at most gVisor's 128,
# which it always uses): tools/runsc/patches/pagesfile_parallel.go.in
# replaces the constant (RATIONALE: "A restore reads its pages with as
# many threads as the host has cores"). Three: a restore maps in the
# memory file's pages before reading the checkpoint's into them
# (patches/populate_restore.go.in), and four: it runs with the sentry's
# garbage collector off, within a memory bound (patches/restore_gc.go.in;
# RATIONALE: "A restore neither faults page by page nor collects
# garbage"). Each patch is a new file plus, where gVisor's code must call
# it, one line inserted at an anchor this script checks is there once,
# so a gVisor update that moves the anchor fails the build loudly. To move the pin, change RUNSC_VERSION here and in tools/runsc
# (`go get gvisor.dev/gvisor@VERSION gvisor.dev/gvisor/runsc@VERSION`); this
# script refuses to build when they disagree.
#
# The binary is stamped with the module version (-X .../runsc/version.version),
# so `runsc --version` prints "runsc version <version>". This matters: runsc
# refuses to restore a checkpoint taken by a different version string, and an
# unstamped build reports VERSION_MISSING for every commit, which would make
# images from different gVisor builds look compatible. (The filters do not
# change what a checkpoint holds.)
#
# Idempotent: if the binary exists and reports the pinned version it exits at
# once. Otherwise it builds into a temp dir next to the target and renames the
# binary into place (atomic; running sandboxes keep the old inode), so a
# half-finished build is never visible and concurrent runs are safe.
set -euo pipefail

# gvisor.dev/gvisor@latest as resolved by proxy.golang.org. The module's
# default (master) branch builds fine with plain `go install`; the `go` branch
# pseudo-versions are refused by the proxy.
RUNSC_VERSION=v0.0.0-20260905035102-160fafc42237
CACHE=${FROST_CACHE:-$HOME/.cache/frost}
SRC=$(cd "$(dirname "$0")/../tools/runsc" && pwd)
FILTERS=$(cat "$SRC/main.go" "$SRC/go.mod" "$SRC/go.sum" "$SRC"/patches/* | sha256sum | cut -c1-12)
DIR=$CACHE/runsc/$RUNSC_VERSION-$FILTERS
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

grep -q "gvisor.dev/gvisor $RUNSC_VERSION\$" "$SRC/go.mod" ||
	{ log "tools/runsc/go.mod does not pin gvisor.dev/gvisor $RUNSC_VERSION"; exit 1; }
log "building gvisor.dev/gvisor/runsc@$RUNSC_VERSION with precompiled seccomp filters (takes a few minutes)"
start=$SECONDS
# GOFLAGS is replaced so a caller's -mod=vendor etc. cannot leak in; the
# modules are built outside any workspace (GOWORK=off) from the proxy.
export CGO_ENABLED=0 GOWORK=off GOFLAGS=-buildvcs=false
mod=$(cd "$SRC" && go mod download gvisor.dev/gvisor && go list -m -f '{{.Dir}}' gvisor.dev/gvisor)
[[ -n $mod && -f $mod/go.mod ]] || { log "cannot download gvisor.dev/gvisor@$RUNSC_VERSION"; exit 1; }
(cd "$SRC" && timeout 600 go run . "$TMP/filters") || { log "generating the filters failed"; exit 1; }
cp -R "$mod" "$TMP/gvisor"
chmod -R u+w "$TMP/gvisor"
for f in boot fsgofer; do
	stub=$TMP/gvisor/runsc/$f/filter/filter_precompiled.go
	[[ -f $stub ]] || { log "no stub at runsc/$f/filter/filter_precompiled.go in this gVisor version"; exit 1; }
	cp "$TMP/filters/${f}_filter.go" "$stub"
done
pages=$TMP/gvisor/pkg/sentry/state/stateio/pagesfile.go
grep -q '^	pagesFileFDDefaultMaxParallel = 128$' "$pages" ||
	{ log "pkg/sentry/state/stateio/pagesfile.go has no pagesFileFDDefaultMaxParallel = 128 in this gVisor version"; exit 1; }
sed -i '/^	pagesFileFDDefaultMaxParallel = 128$/d' "$pages"
cp "$SRC/patches/pagesfile_parallel.go.in" "$(dirname "$pages")/frost_parallel.go"
restore=$TMP/gvisor/pkg/sentry/pgalloc/save_restore.go
[[ $(grep -c '^			// Record where to read data\.$' "$restore") == 1 ]] ||
	{ log "pkg/sentry/pgalloc/save_restore.go has no single \"// Record where to read data.\" in MemoryFile.LoadFrom in this gVisor version"; exit 1; }
sed -i 's|^			// Record where to read data\.$|			f.frostPopulate(maFR)\n&|' "$restore"
cp "$SRC/patches/populate_restore.go.in" "$(dirname "$restore")/frost_populate.go"
ctl=$TMP/gvisor/runsc/boot/controller.go
[[ $(grep -c '^	log.Debugf("containerManager.Restore")$' "$ctl") == 1 ]] ||
	{ log "runsc/boot/controller.go has no single log.Debugf(\"containerManager.Restore\") in this gVisor version"; exit 1; }
sed -i 's|^	log.Debugf("containerManager.Restore")$|&\n	defer frostRestoreGC()()|' "$ctl"
cp "$SRC/patches/restore_gc.go.in" "$(dirname "$ctl")/frost_gc.go"
if ! (cd "$TMP/gvisor" && timeout 1800 go build -o "$TMP/bin/runsc" \
	-ldflags="-X gvisor.dev/gvisor/runsc/version.version=$RUNSC_VERSION" ./runsc >&2); then
	log "go build failed"
	exit 1
fi
have_version "$TMP/bin/runsc" || { log "built binary does not report \"$WANT\""; exit 1; }
log "built in $((SECONDS - start))s"

mkdir -p "$DIR"
mv -f "$TMP/bin/runsc" "$BIN"
echo "$BIN"
