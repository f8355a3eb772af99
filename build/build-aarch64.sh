#!/usr/bin/env bash
# Build the static aarch64 binaries into build/out/aarch64/ (tom-stress, and tom-relay as a hard link)
# on an x86_64 Debian host, then smoke-test them in an empty chroot through qemu.
#
#   build/build-aarch64.sh
#
# PyInstaller does not cross-compile, so this runs the same build/freeze.sh as the x86_64 build,
# but inside an arm64 Debian root (debootstrap) under qemu user emulation (binfmt_misc).
# The root is cached in build/out/arm64-root (git-ignored): a second run skips debootstrap when the
# root is complete (marker file written at the end of a successful bootstrap), and pip's cache in
# the root keeps the staticx wheel built from source. Needs root (apt-get, mount, chroot).
#
# Environment (all optional): ARM64_ROOT (cache directory of the arm64 root), DEBIAN_MIRROR,
# BUILD_COMMIT, BUILD_DATE (default: the host's git HEAD and today's date), FREEZE_TIMEOUT (s).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/.." && pwd)
root=${ARM64_ROOT:-$here/out/arm64-root}
out=$here/out/aarch64
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
freeze_timeout=${FREEZE_TIMEOUT:-2400}
# What freeze.sh needs in the root: Debian's python3.11 with venv/pip/headers, patchelf, and what
# pip needs to build staticx from its sdist on aarch64 (scons, musl-tools, gcc, binutils).
packages=python3,python3-venv,python3-pip,python3-dev,gcc,libc6-dev,binutils,make,patchelf,scons,musl-tools,ca-certificates,file,libnetfilter-queue-dev
marker=$root/.tom-bootstrap-complete
src=/src/tom-stress      # paths inside the root
dst=/src/out

log() { echo "== [build-aarch64] $*"; }
die() { echo "== [build-aarch64] ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get, mount, chroot)"
[ "$(uname -m)" = x86_64 ] || log "note: host is $(uname -m), not x86_64; carrying on"
start=$SECONDS

# --- host tools ---------------------------------------------------------------------------------
missing=()
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
command -v update-binfmts >/dev/null || missing+=(binfmt-support)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v file >/dev/null || missing+=(file)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing host packages: ${missing[*]}"
    timeout 600 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- binfmt_misc: let the kernel run aarch64 ELF files through qemu ------------------------------
binfmt=/proc/sys/fs/binfmt_misc
if [ ! -e "$binfmt/register" ]; then
    log "mounting binfmt_misc on $binfmt"
    mount -t binfmt_misc binfmt_misc "$binfmt"
fi
if ! grep -qx enabled "$binfmt/qemu-aarch64" 2>/dev/null; then
    log "enabling the qemu-aarch64 binfmt handler"
    update-binfmts --enable qemu-aarch64
fi
grep -qx enabled "$binfmt/qemu-aarch64" || die "qemu-aarch64 binfmt handler is not enabled"
# With the F flag the kernel holds the interpreter open, so nothing of qemu is needed inside the
# arm64 root or inside the empty smoke-test root (where the binary re-executes itself).
if ! grep -q '^flags:.*F' "$binfmt/qemu-aarch64"; then
    die "qemu-aarch64 binfmt handler lacks the F (fix binary) flag; Debian's qemu-user-static sets it"
fi

# --- mounts, always undone ----------------------------------------------------------------------
mounted=()
mounts_under_root() { findmnt -rn -o TARGET | awk -v r="$root" 'index($0, r "/") == 1' | sort -r; }
unmount_all() {
    local i m
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" 2>/dev/null ||
            echo "== [build-aarch64] WARNING: could not unmount ${mounted[i]}" >&2
    done
    [ ${#mounted[@]} -eq 0 ] || log "unmounted ${#mounted[@]} file systems in $root"
    mounted=()
    # What a debootstrap killed by the timeout may have left (its own proc/sys mounts).
    for m in $(mounts_under_root); do
        log "unmounting left-over $m"
        umount "$m" 2>/dev/null || umount -l "$m" || true
    done
}
cleanup() {
    local rc=$?
    unmount_all
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mount_root() {
    log "mounting proc, sys, dev, dev/pts in $root"
    mkdir -p "$root/proc" "$root/sys" "$root/dev"
    mount -t proc proc "$root/proc" && mounted+=("$root/proc")
    mount -t sysfs sysfs "$root/sys" && mounted+=("$root/sys")
    mount --bind /dev "$root/dev" && mounted+=("$root/dev")
    mkdir -p "$root/dev/pts"
    mount --bind /dev/pts "$root/dev/pts" && mounted+=("$root/dev/pts")
}

# Mounts left by a run that was killed hard (SIGKILL skips the trap) would let the `rm -rf` below
# reach into the host's /dev: undo them first, and refuse if that does not work.
unmount_all
if [ -n "$(mounts_under_root)" ]; then
    die "file systems are still mounted under $root: $(mounts_under_root | tr '\n' ' ')"
fi

# --- the arm64 Debian root, cached --------------------------------------------------------------
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$suite $packages" ]; then
    log "reusing the arm64 root in $root (bootstrapped $(date -u -r "$marker" '+%Y-%m-%d %H:%M UTC'))"
else
    if [ -e "$root" ]; then
        log "removing incomplete or outdated arm64 root $root"
        rm -rf --one-file-system "$root"
    fi
    log "debootstrap arm64 $suite into $root (takes a few minutes under qemu)"
    mkdir -p "$(dirname "$root")"
    t0=$SECONDS
    timeout --kill-after=30 1800 debootstrap --arch=arm64 --variant=minbase --include="$packages" \
        "$suite" "$root" "$mirror"
    [ -x "$root/usr/bin/python3.11" ] || die "debootstrap finished but $root has no python3.11"
    echo "$suite $packages" > "$marker"
    log "bootstrap done in $((SECONDS - t0)) s"
fi

# --- the project, copied in (not bind-mounted) -------------------------------------------------
log "copying the project into $root$src"
rm -rf --one-file-system "$root$src" "$root$dst"
mkdir -p "$root$src" "$root$dst"
if git -C "$project" rev-parse --git-dir >/dev/null 2>&1; then
    # The working tree as git sees it: tracked files (with local edits) and untracked ones that are
    # not ignored; never build/out, nor setuptools' in-tree left-overs (build/lib, build/bdist.*).
    (cd "$project" && git ls-files -z --cached --others --exclude-standard |
        grep -zv -E '^build/(out|lib|bdist\.[^/]*)/' |
        while IFS= read -r -d '' f; do
            if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi   # skip deleted files
        done |
        tar --null -T - -cf -) | tar -C "$root$src" -xf -
else
    tar -C "$project" --exclude=./.git --exclude=./build/out --exclude=./build/lib \
        --exclude='./build/bdist.*' -cf - . | tar -C "$root$src" -xf -
fi
[ -x "$root$src/build/freeze.sh" ] || die "copy failed: no build/freeze.sh in $root$src"
export BUILD_COMMIT=${BUILD_COMMIT:-$(git -C "$project" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
export BUILD_DATE=${BUILD_DATE:-$(date -u +%Y-%m-%d)}
find "$root/tmp" -mindepth 1 -delete   # what a killed earlier run left (freeze.sh works in /tmp)
cp -L /etc/resolv.conf "$root/etc/resolv.conf"   # pip resolves PyPI from inside the root
# pip in the root trusts what the host's pip trusts: a host that reaches PyPI through a TLS proxy
# has that proxy's CA in its bundle (from /usr/local/share/ca-certificates), the root does not.
host_ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
ca_env=()
if [ -f "$host_ca" ]; then
    cp -L "$host_ca" "$root/etc/ssl/certs/host-ca-bundle.crt"
    ca_env=(PIP_CERT=/etc/ssl/certs/host-ca-bundle.crt SSL_CERT_FILE=/etc/ssl/certs/host-ca-bundle.crt)
fi
# The host's package index and proxy settings, if any come from the environment.
pass_env=()
for v in PIP_INDEX_URL PIP_DEFAULT_TIMEOUT http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    if [ -n "${!v:-}" ]; then pass_env+=("$v=${!v}"); fi
done

# --- freeze inside the root ---------------------------------------------------------------------
mount_root
log "running build/freeze.sh under qemu (commit $BUILD_COMMIT, date $BUILD_DATE)"
t0=$SECONDS
# A clean environment: the host's pip settings (local find-links, constraints) mean nothing there.
timeout --kill-after=30 "$freeze_timeout" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
    BUILD_COMMIT="$BUILD_COMMIT" BUILD_DATE="$BUILD_DATE" "${ca_env[@]}" "${pass_env[@]}" \
    chroot "$root" "$src/build/freeze.sh" /usr/bin/python3.11 "$dst"
log "freeze done in $((SECONDS - t0)) s"
unmount_all

# --- result -------------------------------------------------------------------------------------
mkdir -p "$out"
rm -f "$out/tom-stress" "$out/tom-relay"
cp "$root$dst/tom-stress" "$out/tom-stress"
ln "$out/tom-stress" "$out/tom-relay"  # a hard link: see freeze.sh
info=$(file "$out/tom-stress")
echo "$info"
case $info in *"ARM aarch64"*) ;; *) die "$out/tom-stress is not an aarch64 binary" ;; esac
case $info in *"statically linked"*) ;; *) die "$out/tom-stress is not statically linked" ;; esac
log "built $out/tom-stress ($(du -h "$out/tom-stress" | cut -f1)), link $out/tom-relay"

# --- smoke test: an empty root, the binary and qemu, nothing else -------------------------------
log "smoke test: build/smoke-chroot.sh $out/tom-stress qemu-aarch64-static"
timeout --kill-after=30 600 "$here/smoke-chroot.sh" "$out/tom-stress" qemu-aarch64-static
log "all done in $((SECONDS - start)) s"
