#!/usr/bin/env bash
# nginx.sh installs the pinned nginx binary that the cluster bench runs as a
# second reverse-proxy baseline for the gateway (bench/cluster -nginx) and
# prints its absolute path as the last line of stdout. Progress goes to
# stderr. Nothing else needs nginx: the tests do not.
#
#   FROST_CACHE  cache root (default $HOME/.cache/frost)
#
# Layout: $FROST_CACHE/nginx/<version>/nginx
#
# The binary comes from Debian 12's own package, fetched with
# `apt-get download` (no root needed for that, none for the rest) and
# unpacked with dpkg-deb into the cache: nothing is installed system-wide,
# no service is started. Its libraries (libc, libcrypt, libpcre2, libssl,
# zlib) are the base system's. To move the pin, change NGINX_VERSION to what
# `apt-cache policy nginx` offers.
#
# Idempotent: if the binary is there and reports the pinned upstream version
# it exits at once; an unpacked binary is renamed into place (atomic).
set -euo pipefail

NGINX_VERSION=1.22.1-9+deb12u7
CACHE=${FROST_CACHE:-$HOME/.cache/frost}
DIR=$CACHE/nginx/$NGINX_VERSION
BIN=$DIR/nginx

log() { echo "nginx.sh: $*" >&2; }

WANT="nginx version: nginx/${NGINX_VERSION%%-*}"
have_version() { [[ -x $1 ]] && [[ $("$1" -v 2>&1 | head -n1) == "$WANT" ]]; }

if have_version "$BIN"; then
	echo "$BIN"
	exit 0
fi

mkdir -p "$DIR"
TMP=$(mktemp -d "$DIR/.unpack.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
if ! (cd "$TMP" && apt-get download -q "nginx=$NGINX_VERSION" >&2 2>/dev/null); then
	log "nginx=$NGINX_VERSION is not in apt's package lists; running apt-get update"
	SUDO=()
	((EUID == 0)) || SUDO=(sudo)
	"${SUDO[@]}" apt-get update -qq >&2
	(cd "$TMP" && apt-get download -q "nginx=$NGINX_VERSION" >&2) || {
		log "nginx=$NGINX_VERSION is not available from apt; update the pin in scripts/nginx.sh"
		apt-cache policy nginx >&2
		exit 1
	}
fi
dpkg-deb -x "$TMP"/nginx_*.deb "$TMP/root"
if ! have_version "$TMP/root/usr/sbin/nginx"; then
	log "the unpacked nginx does not run or is not $WANT:"
	"$TMP/root/usr/sbin/nginx" -v >&2 || true
	exit 1
fi
mv "$TMP/root/usr/sbin/nginx" "$BIN"
log "nginx $NGINX_VERSION in $BIN"
echo "$BIN"
