#!/usr/bin/env bash
# build-guests.sh OUTDIR builds every example and test guest into OUTDIR:
#
#   hello-c.wasm      examples/hello-c         http-wasm, C, no libc (benchmark guest)
#   hello-go.wasm     examples/hello-go        CGI, stock Go (net/http/cgi)
#   probe.wasm        testdata/guests/probe.c  http-wasm isolation probe
#   spin.wasm         testdata/guests/spin.c   http-wasm CPU burner
#   heavy.wasm        testdata/guests/heavy.c  http-wasm, init of tens of ms
#   fat-N.wasm        testdata/guests/fat.c    http-wasm, init fills N MiB (1, 64, 512)
#   membomb.wasm      testdata/guests/membomb.c  http-wasm memory hog
#   cgi.wasm          testdata/guests/cgi.c    CGI, C
#   go-cgi.wasm       testdata/guests/go-cgi   CGI, Go, with /probe and /asset modes
#   go-httpwasm.wasm  testdata/guests/go-httpwasm  http-wasm, Go reactor
#   big.wasm          testdata/guests/big      CGI, Go, > 20 MiB of code
#   noshape.wasm, truncated.wasm, not-wasm.txt (testdata/guests/bad): invalid
#
# Builds are cached under ${FROST_CACHE:-$HOME/.cache/frost}/guests/KEY/,
# where KEY is the SHA-256 of every source file, this script and the
# toolchain versions; a second run copies from the cache, or does nothing if
# OUTDIR already holds that build. Needs Go and, for C, clang + wasm-ld +
# wasi-libc for wasm32-wasi (scripts/deps.sh installs them).
# shellcheck disable=SC2054 # the commas in -Wl,... linker flags are meant
set -euo pipefail

log() { echo "build-guests: $*" >&2; }
die() { log "$*"; exit 1; }

(($# == 1)) || die "usage: $0 OUTDIR"
out=$1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${FROST_CACHE:-$HOME/.cache/frost}/guests
keep=4 # cached builds kept; older ones are removed

# --- Toolchain -------------------------------------------------------------

GO=${GO:-go}
command -v "$GO" >/dev/null || GO=/usr/local/go/bin/go
command -v "$GO" >/dev/null || die "go not found in PATH"

deps_hint="the C toolchain for wasm32-wasi is missing: run scripts/deps.sh"
CC=${CC:-}
if [[ -z $CC ]]; then
	# Debian bookworm ships clang 14 as clang-14 (clang is an optional symlink).
	for c in clang-14 clang; do
		if command -v "$c" >/dev/null; then CC=$c; break; fi
	done
fi
if [[ -z $CC ]] || ! command -v "$CC" >/dev/null; then
	die "clang not found (${CC:-clang-14}); $deps_hint"
fi
CFLAGS=(--target=wasm32-wasi -O2 -Wall -Wextra)
# Debian installs wasi-libc under /usr/{include,lib}/wasm32-wasi, which clang
# finds on its own; other layouts set WASI_SYSROOT (e.g. /usr/share/wasi-sysroot).
[[ -n ${WASI_SYSROOT:-} ]] && CFLAGS+=(--sysroot="$WASI_SYSROOT")

# One dry run (-###) tells the clang version and the linker, library
# directory, start-up object and builtins that a reactor link would use.
driver=$("$CC" "${CFLAGS[@]}" -mexec-model=reactor -### -x c /dev/null -o /dev/null 2>&1) ||
	die "$CC cannot target wasm32-wasi: $driver; $deps_hint"
mapfile -t link < <(grep -F 'wasm-ld' <<<"$driver" | tail -n 1 | grep -o '"[^"]*"' | tr -d '"')
((${#link[@]} > 0)) || die "$CC has no wasm linker; $deps_hint"
linker=${link[0]} libc='' crt='' builtins=''
for a in "${link[@]}"; do
	case $a in
	-L*) [[ -z $libc && -f ${a#-L}/libc.a ]] && libc=${a#-L}/libc.a ;;
	*crt1-reactor.o) crt=$a ;;
	*libclang_rt.builtins-wasm32.a) builtins=$a ;;
	esac
done
command -v "$linker" >/dev/null || die "wasm-ld not found ($linker); $deps_hint"
[[ -n $libc && -f $crt ]] || die "wasi-libc not found; $deps_hint"
[[ -f $builtins ]] || die "compiler-rt builtins for wasm32 not found ($builtins); $deps_hint"

# --- Cache key ---------------------------------------------------------------

sources() {
	echo "$root/scripts/build-guests.sh"
	find "$root/examples/hello-c" "$root/examples/hello-go" "$root/testdata/guests" -type f
}
key=$(
	{
		cd "$root"
		sources | LC_ALL=C sort | sed "s|^$root/||" | xargs -d '\n' sha256sum
		head -n 1 <<<"$driver" # clang's version
		stat -L -c '%s %Y' "$(command -v "$linker")"
		sha256sum "$libc" "$crt" "${crt%-reactor.o}-command.o" "$builtins" | cut -d' ' -f1
		"$GO" env GOVERSION GOWASM
	} | sha256sum | cut -c1-32
)

if [[ -f $out/.key && $(<"$out/.key") == "$key" ]]; then
	log "$out is up to date ($key)"
	exit 0
fi

# --- Build (on a cache miss) -------------------------------------------------

build() {
	local dst=$1 src=$root/testdata/guests tmp=$2
	local t0=$SECONDS

	# C http-wasm guests without libc: no start-up code, tiny memory.
	local nolibc=(-nostdlib -Wl,--no-entry -Wl,--stack-first)
	"$CC" "${CFLAGS[@]}" "${nolibc[@]}" -Wl,-z,stack-size=4096 -Wl,--initial-memory=65536 \
		-Wl,--strip-all -o "$dst/hello-c.wasm" "$root/examples/hello-c/hello.c"
	"$CC" "${CFLAGS[@]}" "${nolibc[@]}" -I"$src" -Wl,-z,stack-size=65536 -Wl,--initial-memory=131072 \
		-o "$dst/spin.wasm" "$src/spin.c"
	"$CC" "${CFLAGS[@]}" "${nolibc[@]}" -I"$src" -Wl,-z,stack-size=65536 -Wl,--initial-memory=393216 \
		-o "$dst/heavy.wasm" "$src/heavy.c"
	for mib in 1 64 512; do
		"$CC" "${CFLAGS[@]}" "${nolibc[@]}" -I"$src" -DFAT_MIB=$mib -Wl,-z,stack-size=65536 -Wl,--initial-memory=131072 \
			-o "$dst/fat-$mib.wasm" "$src/fat.c"
	done
	"$CC" "${CFLAGS[@]}" "${nolibc[@]}" -o "$dst/noshape.wasm" "$src/bad/noshape.c"

	# C http-wasm guests with wasi-libc: reactors (_initialize, no _start).
	local reactor=(-mexec-model=reactor -I"$src" -Wl,-z,stack-size=65536 -Wl,--stack-first)
	"$CC" "${CFLAGS[@]}" "${reactor[@]}" -o "$dst/probe.wasm" "$src/probe.c"
	"$CC" "${CFLAGS[@]}" "${reactor[@]}" -o "$dst/membomb.wasm" "$src/membomb.c"

	# C CGI guest: a WASI command (_start).
	"$CC" "${CFLAGS[@]}" -Wl,-z,stack-size=65536 -Wl,--stack-first -o "$dst/cgi.wasm" "$src/cgi.c"

	# Invalid inputs.
	cp "$src/bad/not-wasm.txt" "$dst/not-wasm.txt"
	local size
	size=$(stat -c %s "$dst/probe.wasm")
	head -c $((size / 2)) "$dst/probe.wasm" >"$dst/truncated.wasm" # ends inside the code section
	log "C guests built in $((SECONDS - t0))s"

	# Go guests build in a scratch module, so edits to the repository's go.mod
	# neither break them nor invalidate the cache; they use only the standard
	# library.
	local gomod=$tmp/go
	mkdir -p "$gomod"
	printf 'module frostguests\n\ngo 1.24\n' >"$gomod/go.mod"
	cp -r "$root/examples/hello-go" "$src/go-cgi" "$src/go-httpwasm" "$gomod/"
	mkdir "$gomod/biggen"
	cp "$src/big/gen.go" "$gomod/biggen/"
	local goenv=(env GOOS=wasip1 GOARCH=wasm GOWORK=off GOFLAGS='' CGO_ENABLED=0)
	local goflags=(-trimpath -buildvcs=false)
	t0=$SECONDS
	(
		cd "$gomod"
		"${goenv[@]}" "$GO" build "${goflags[@]}" -o "$dst/hello-go.wasm" ./hello-go
		"${goenv[@]}" "$GO" build "${goflags[@]}" -o "$dst/go-cgi.wasm" ./go-cgi
		# A reactor: _initialize starts the runtime, //go:wasmexport adds the rest.
		"${goenv[@]}" "$GO" build "${goflags[@]}" -buildmode=c-shared -o "$dst/go-httpwasm.wasm" ./go-httpwasm
	)
	log "Go guests built in $((SECONDS - t0))s"

	t0=$SECONDS
	mkdir -p "$tmp/big"
	(cd "$gomod" && GOWORK=off GOFLAGS='' "$GO" run ./biggen -out "$tmp/big")
	(cd "$tmp/big" && "${goenv[@]}" "$GO" build "${goflags[@]}" -o "$dst/big.wasm" .)
	log "big guest built in $((SECONDS - t0))s"
}

mkdir -p "$cache"
if [[ ! -f $cache/$key/.key ]]; then
	log "building guests ($key)"
	t0=$SECONDS
	tmp=$(mktemp -d "$cache/.tmp.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	mkdir "$tmp/out"
	build "$tmp/out" "$tmp"
	echo "$key" >"$tmp/out/.key"
	# Publish atomically; if a concurrent build won the race, keep its copy.
	mv -T "$tmp/out" "$cache/$key" 2>/dev/null || true
	log "built in $((SECONDS - t0))s into $cache/$key"

	# Drop the oldest cached builds.
	find "$cache" -mindepth 1 -maxdepth 1 -type d -regextype posix-extended -regex '.*/[0-9a-f]{32}' -printf '%T@ %p\n' |
		sort -rn | tail -n +$((keep + 1)) | cut -d' ' -f2- | xargs -r rm -rf
else
	log "cache hit ($key)"
fi
touch "$cache/$key"

mkdir -p "$out"
rm -f "$out/.key"
for f in "$cache/$key"/*; do
	cp -f "$f" "$out/"
done
cp -f "$cache/$key/.key" "$out/.key" # last: marks OUTDIR complete
log "guests in $out"
