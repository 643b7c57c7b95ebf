#!/usr/bin/env bash
# versitygw.sh installs the pinned versitygw, the S3-compatible server that
# Frost's S3 tests run (internal/tests3), and prints its absolute path as the
# last line of stdout. All progress goes to stderr. No root needed.
#
#   FROST_CACHE  cache root (default $HOME/.cache/frost)
#
# Layout: $FROST_CACHE/versitygw/<version>/versitygw
#
# The binary is built with `go install github.com/versity/versitygw/cmd/versitygw@VERSION`
# through the Go module proxy (no GitHub access needed); the proxy's checksum
# database pins the module's contents. To move the pin, change
# VERSITYGW_VERSION here and Version in internal/tests3.
#
# Idempotent: if the binary exists and reports the pinned version it exits at
# once. Otherwise it builds into a temp dir next to the target and renames the
# binary into place (atomic; running servers keep the old inode), so a
# half-finished build is never visible and concurrent runs are safe.
set -euo pipefail

VERSITYGW_VERSION=v1.8.0
CACHE=${FROST_CACHE:-$HOME/.cache/frost}
DIR=$CACHE/versitygw/$VERSITYGW_VERSION
BIN=$DIR/versitygw

log() { echo "versitygw.sh: $*" >&2; }

# The binary is stamped as versitygw's Makefile does (-X main.Version), so
# `versitygw --version` prints "Version  : <version>"; a plain `go install`
# build says "git", which would not tell two builds apart. Running it also
# proves the binary starts.
WANT="Version  : $VERSITYGW_VERSION"
have_version() { [[ -x $1 ]] && [[ $("$1" --version 2>/dev/null | head -n1) == "$WANT" ]]; }

if have_version "$BIN"; then
	echo "$BIN"
	exit 0
fi

command -v go >/dev/null || { log "go not found in PATH"; exit 1; }

mkdir -p "$CACHE/versitygw"
TMP=$(mktemp -d "$CACHE/versitygw/.build-$VERSITYGW_VERSION.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

log "building github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION (takes a few minutes)"
start=$SECONDS
# GOFLAGS is replaced so a caller's -mod=vendor etc. cannot leak in; the module
# is built outside any workspace (GOWORK=off) from the proxy.
if ! (cd "$TMP" && CGO_ENABLED=0 GOBIN="$TMP/bin" GOWORK=off GOFLAGS=-buildvcs=false \
	timeout 1800 go install -trimpath -ldflags="-X main.Version=$VERSITYGW_VERSION" \
	"github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" >&2); then
	log "go install failed"
	exit 1
fi
have_version "$TMP/bin/versitygw" || { log "built binary does not report \"$WANT\""; exit 1; }
log "built in $((SECONDS - start))s"

mkdir -p "$DIR"
mv -f "$TMP/bin/versitygw" "$BIN"
echo "$BIN"
