#!/usr/bin/env bash
# etcd.sh installs the pinned etcd server that Frost's cluster tests run
# (internal/testetcd) and prints its absolute path as the last line of stdout.
# All progress goes to stderr. No root needed.
#
#   FROST_CACHE  cache root (default $HOME/.cache/frost)
#
# Layout: $FROST_CACHE/etcd/<version>/etcd
#
# The binary is built from source through the Go module proxy (no GitHub
# access needed): tools/etcd is a separate Go module whose main calls
# go.etcd.io/etcd/server/v3/etcdmain.Main, pinned with its go.sum, so Frost's
# own module never depends on the etcd server. To move the pin, change
# ETCD_VERSION here, in internal/testetcd (Version) and in tools/etcd
# (`go get go.etcd.io/etcd/server/v3@vX.Y.Z && go mod tidy`); this script
# refuses to build when tools/etcd/go.mod and ETCD_VERSION disagree.
#
# Idempotent: if the binary exists and reports the pinned version it exits at
# once. Otherwise it builds into a temp dir next to the target and renames the
# binary into place (atomic; running servers keep the old inode), so a
# half-finished build is never visible and concurrent runs are safe.
set -euo pipefail

ETCD_VERSION=v3.7.3
CACHE=${FROST_CACHE:-$HOME/.cache/frost}
DIR=$CACHE/etcd/$ETCD_VERSION
BIN=$DIR/etcd
SRC=$(cd "$(dirname "$0")/../tools/etcd" && pwd)

log() { echo "etcd.sh: $*" >&2; }

WANT="etcd Version: ${ETCD_VERSION#v}"
have_version() { [[ -x $1 ]] && [[ $("$1" --version 2>/dev/null | head -n1) == "$WANT" ]]; }

if have_version "$BIN"; then
	echo "$BIN"
	exit 0
fi

command -v go >/dev/null || { log "go not found in PATH"; exit 1; }
if ! grep -qE "^(require)?[[:space:]]*go\.etcd\.io/etcd/server/v3 $ETCD_VERSION( |\$)" "$SRC/go.mod"; then
	log "$SRC/go.mod does not pin go.etcd.io/etcd/server/v3 $ETCD_VERSION"
	exit 1
fi
mkdir -p "$CACHE/etcd"
TMP=$(mktemp -d "$CACHE/etcd/.build-$ETCD_VERSION.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

log "building etcd $ETCD_VERSION from $SRC (takes a few minutes)"
start=$SECONDS
# GOFLAGS is replaced so a caller's flags cannot leak in; -mod=readonly makes
# a go.mod/go.sum that does not match the pin an error instead of an edit.
if ! (cd "$SRC" && CGO_ENABLED=0 GOWORK=off GOFLAGS="-buildvcs=false -mod=readonly" \
	timeout 1800 go build -trimpath -o "$TMP/etcd" . >&2); then
	log "go build failed"
	exit 1
fi
have_version "$TMP/etcd" || { log "built binary does not report \"$WANT\""; exit 1; }
log "built in $((SECONDS - start))s"

mkdir -p "$DIR"
mv -f "$TMP/etcd" "$BIN"
echo "$BIN"
