#!/usr/bin/env bash
# rootfs.sh builds Frost's default sandbox template root file system once and
# prints its absolute path as the last line of stdout (progress on stderr).
#
# It is a Debian bookworm minbase tree (debootstrap) with bash, python3, git,
# curl and ca-certificates. The tree is used read-only as an OCI bundle root
# (gVisor puts a memory/file-backed overlay on top), so nothing here may need
# writing at run time.
#
#   FROST_CACHE     cache root (default $HOME/.cache/frost)
#   ROOTFS_MIRROR   Debian mirror (default http://deb.debian.org/debian)
#
# Layout: $FROST_CACHE/rootfs/<key>/ where <key> is a sha256 prefix over every
# input that changes the result (script version, suite, variant, arch, mirror,
# package list). Built in a temp dir next to it and renamed when complete, so a
# directory under that name is always a finished tree (with .frost-rootfs
# stamp). Needs root (debootstrap); installs debootstrap with apt if missing.
set -euo pipefail

# Bump when the build steps below change in a way that alters the tree.
SCRIPT_VERSION=3
SUITE=bookworm
VARIANT=minbase
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
MIRROR=${ROOTFS_MIRROR:-http://deb.debian.org/debian}
PACKAGES=(bash python3 git curl ca-certificates)

CACHE=${FROST_CACHE:-$HOME/.cache/frost}
log() { echo "rootfs.sh: $*" >&2; }

inputs="v=$SCRIPT_VERSION suite=$SUITE variant=$VARIANT arch=$ARCH mirror=$MIRROR packages=$(IFS=,; echo "${PACKAGES[*]}")"
KEY=$(printf '%s' "$inputs" | sha256sum | cut -c1-16)
DEST=$CACHE/rootfs/$KEY

if [[ -f $DEST/.frost-rootfs ]]; then
	echo "$DEST"
	exit 0
fi

((EUID == 0)) || { log "must run as root (debootstrap)"; exit 1; }
if ! command -v debootstrap >/dev/null; then
	log "installing debootstrap"
	export DEBIAN_FRONTEND=noninteractive
	timeout 600 apt-get install -y debootstrap >&2 ||
		{ timeout 600 apt-get update -qq >&2 && timeout 600 apt-get install -y debootstrap >&2; }
fi

mkdir -p "$CACHE/rootfs"
TMP=$(mktemp -d "$CACHE/rootfs/.build-$KEY.XXXXXX")
cleanup() {
	# debootstrap may leave /proc etc. mounted inside the target on failure.
	for m in proc sys dev/pts dev; do umount -l "$TMP/root/$m" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT

log "debootstrap $SUITE ($VARIANT, $ARCH) from $MIRROR; key $KEY"
start=$SECONDS
timeout 1800 debootstrap --variant="$VARIANT" --arch="$ARCH" \
	--include="$(IFS=,; echo "${PACKAGES[*]}")" \
	"$SUITE" "$TMP/root" "$MIRROR" >&2

R=$TMP/root
# Trim: apt caches and lists, docs, man pages, logs. Keep copyright files.
chroot "$R" apt-get clean >&2
rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin "$R"/var/cache/debconf/*-old \
	"$R"/var/log/* "$R"/usr/share/man/* "$R"/usr/share/info/* "$R"/usr/share/lintian \
	"$R"/tmp/* "$R"/var/tmp/* "$R"/root/.cache
find "$R"/usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
find "$R"/usr/share/doc -mindepth 1 -type d -empty -delete 2>/dev/null || true
# Translations are 40+ MiB; sandboxes run with the C/English messages.
find "$R"/usr/share/locale -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
find "$R" -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true

# Files a read-only root still wants present (runsc does not create them).
printf 'frost\n' >"$R"/etc/hostname
printf '127.0.0.1\tlocalhost frost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$R"/etc/hosts
: >"$R"/etc/resolv.conf
chmod 1777 "$R"/tmp "$R"/var/tmp
mkdir -p "$R"/proc "$R"/sys "$R"/dev "$R"/run "$R"/workspace
# Mount points of Frost's bind mounts. runsc (gofer) creates a missing bind
# mount destination in the *host* root directory, even with --overlay2, so
# they must exist already or the first sandbox would write to the template.
mkdir -p "$R"/.frost
: >"$R"/.frost/frost
chmod 0755 "$R"/.frost/frost

printf '%s\n' "$inputs" >"$R"/.frost-rootfs
mv -T "$R" "$TMP/$KEY"
if ! mv -T "$TMP/$KEY" "$DEST" 2>/dev/null; then
	if [[ -f $DEST/.frost-rootfs ]]; then
		log "another build finished first; using it"
	else
		rm -rf "$DEST"
		mv -T "$TMP/$KEY" "$DEST"
	fi
fi
log "built in $((SECONDS - start))s, $(du -sh "$DEST" | cut -f1)"
echo "$DEST"
