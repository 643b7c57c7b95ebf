#!/usr/bin/env bash
# proto.sh (make proto) regenerates the Go code for Frost's .proto files under
# proto/ (today envd's process and filesystem APIs) into internal/e2b/envdpb/.
# Needs only Go: buf runs through `go run` at a pinned version, and the two
# protoc plugins are built from the Go module proxy at pinned versions.
#
#   FROST_CACHE      cache root (default $HOME/.cache/frost)
#   BUF_VERSION      github.com/bufbuild/buf version (default: the pin below)
#   PROTOBUF_VERSION protoc-gen-go version (default: google.golang.org/protobuf
#                    in go.mod, so generated code matches the runtime we link)
#   CONNECT_VERSION  protoc-gen-connect-go version (default: connectrpc.com/connect
#                    in go.mod, likewise)
#
# Plugin layout: $FROST_CACHE/protoc-plugins/<version>/<plugin>. A plugin is
# built once per version (into a temp dir, then renamed into place), so a
# second run builds nothing; `go run` keeps buf in Go's own build cache.
#
# Generated files are replaced wholesale: the generated package directories are
# removed first, so a message or file dropped from a .proto leaves nothing
# stale behind. Hand-written files (internal/e2b/envdpb/doc.go) are kept.
set -euo pipefail
cd "$(dirname "$0")/.."

BUF_VERSION=${BUF_VERSION:-v1.75.0}
PROTOBUF_VERSION=${PROTOBUF_VERSION:-$(go list -m -f '{{.Version}}' google.golang.org/protobuf)}
CONNECT_VERSION=${CONNECT_VERSION:-$(go list -m -f '{{.Version}}' connectrpc.com/connect)}
CACHE=${FROST_CACHE:-$HOME/.cache/frost}
OUT=internal/e2b/envdpb
GENERATED=("$OUT/processpb" "$OUT/filesystempb")

log() { echo "proto.sh: $*" >&2; }

command -v go >/dev/null || { log "go not found in PATH"; exit 1; }

# install_plugin NAME PACKAGE VERSION WANT: build PACKAGE@VERSION into the
# cache unless a binary whose `--version` prints WANT is already there.
install_plugin() {
	local name=$1 pkg=$2 version=$3 want=$4
	local dir=$CACHE/protoc-plugins/$version
	if [[ -x $dir/$name ]] && [[ $("$dir/$name" --version 2>/dev/null) == "$want" ]]; then
		return
	fi
	log "building $pkg@$version"
	mkdir -p "$dir"
	local tmp
	tmp=$(mktemp -d "$dir/.build-$name.XXXXXX")
	# GOFLAGS is replaced so a caller's -mod=vendor etc. cannot leak in; the
	# module is built outside any workspace (GOWORK=off) from the proxy.
	if ! (cd "$tmp" && CGO_ENABLED=0 GOBIN="$tmp" GOWORK=off GOFLAGS=-buildvcs=false \
		go install "$pkg@$version" >&2); then
		rm -rf "$tmp"
		log "go install $pkg@$version failed"
		exit 1
	fi
	if [[ $("$tmp/$name" --version 2>/dev/null) != "$want" ]]; then
		rm -rf "$tmp"
		log "built $name does not report \"$want\""
		exit 1
	fi
	mv -f "$tmp/$name" "$dir/$name"
	rm -rf "$tmp"
}

install_plugin protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go \
	"$PROTOBUF_VERSION" "protoc-gen-go $PROTOBUF_VERSION"
install_plugin protoc-gen-connect-go connectrpc.com/connect/cmd/protoc-gen-connect-go \
	"$CONNECT_VERSION" "${CONNECT_VERSION#v}"

rm -rf "${GENERATED[@]}"
log "buf $BUF_VERSION generate"
(cd proto && PATH="$CACHE/protoc-plugins/$PROTOBUF_VERSION:$CACHE/protoc-plugins/$CONNECT_VERSION:$PATH" \
	GOWORK=off GOFLAGS=-buildvcs=false go run "github.com/bufbuild/buf/cmd/buf@$BUF_VERSION" generate)
for d in "${GENERATED[@]}"; do
	[[ -d $d ]] || { log "buf generated nothing in $d"; exit 1; }
done
log "generated $(find "${GENERATED[@]}" -name '*.go' | wc -l) files under $OUT"
