#!/usr/bin/env bash
# h2load.sh installs the pinned h2load (nghttp2's HTTP/2 load generator)
# that the cluster bench drives over TLS with HTTP/2 (bench/cluster
# -h2load), and prints the absolute path of a wrapper that runs it as the
# last line of stdout. Progress goes to stderr. Nothing else needs h2load:
# the tests do not.
#
#   FROST_CACHE  cache root (default $HOME/.cache/frost)
#
# Layout: $FROST_CACHE/h2load/<version>/h2load (the wrapper), bin/, lib/
#
# The binary and the libraries Debian 12's base system may lack come from
# Debian's own packages, fetched with `apt-get download` and unpacked with
# dpkg-deb into the cache: nothing is installed system-wide. The wrapper
# points the loader at the cache's libraries (libssl, libstdc++, zlib are
# the base system's). To move the pin, change the versions to what
# `apt-cache policy nghttp2-client` (and the libraries) offer.
#
# Idempotent: if the wrapper is there and its h2load reports the pinned
# version it exits at once; an unpacked tree is renamed into place (atomic).
set -euo pipefail

H2LOAD_VERSION=1.52.0-1+deb12u3
PACKAGES=(
	"nghttp2-client=$H2LOAD_VERSION"
	"libnghttp2-14=$H2LOAD_VERSION"
	"libev4=1:4.33-1"
	"libjansson4=2.14-2"
	"libjemalloc2=5.3.0-1"
)
# libxml2 (and its ICU) only where the base system lacks them.
if ! /sbin/ldconfig -p | grep -q 'libxml2\.so\.2 '; then
	PACKAGES+=("libxml2=2.9.14+dfsg-1.3~deb12u6" "libicu72=72.1-3+deb12u1")
fi
CACHE=${FROST_CACHE:-$HOME/.cache/frost}
DIR=$CACHE/h2load/$H2LOAD_VERSION
BIN=$DIR/h2load

log() { echo "h2load.sh: $*" >&2; }

WANT="h2load nghttp2/${H2LOAD_VERSION%%-*}"
have_version() { [[ -x $1 ]] && [[ $("$1" --version 2>&1 | head -n1) == "$WANT" ]]; }

if have_version "$BIN"; then
	echo "$BIN"
	exit 0
fi

mkdir -p "$CACHE/h2load"
TMP=$(mktemp -d "$CACHE/h2load/.unpack.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
download() { (cd "$TMP" && apt-get download -q "${PACKAGES[@]}" >&2 2>/dev/null); }
if ! download; then
	log "some of ${PACKAGES[*]} are not in apt's package lists; running apt-get update"
	SUDO=()
	((EUID == 0)) || SUDO=(sudo)
	"${SUDO[@]}" apt-get update -qq >&2
	download || {
		log "not all of ${PACKAGES[*]} are available from apt; update the pins in scripts/h2load.sh"
		apt-cache policy nghttp2-client >&2
		exit 1
	}
fi
for deb in "$TMP"/*.deb; do
	dpkg-deb -x "$deb" "$TMP/root"
done
OUT=$TMP/out
mkdir -p "$OUT/bin" "$OUT/lib"
mv "$TMP/root/usr/bin/h2load" "$OUT/bin/h2load"
cp -a "$TMP"/root/usr/lib/x86_64-linux-gnu/*.so* "$OUT/lib/"
cat >"$OUT/h2load" <<EOF
#!/bin/sh
# h2load $H2LOAD_VERSION with the libraries unpacked beside it (scripts/h2load.sh)
LD_LIBRARY_PATH="$DIR/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$DIR/bin/h2load" "\$@"
EOF
chmod +x "$OUT/h2load"
if missing=$(LD_LIBRARY_PATH="$OUT/lib" ldd "$OUT/bin/h2load" | grep 'not found'); then
	log "the unpacked h2load lacks libraries:"
	echo "$missing" >&2
	exit 1
fi
rm -rf "$DIR"
mv "$OUT" "$DIR"
if ! have_version "$BIN"; then
	log "the unpacked h2load does not run or is not $WANT:"
	"$BIN" --version >&2 || true
	exit 1
fi
log "h2load $H2LOAD_VERSION in $BIN"
echo "$BIN"
