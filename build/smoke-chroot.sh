#!/usr/bin/env bash
# Run the static binary where no Python can help it: an empty root holding only the binary, a
# writable /tmp and /proc. Runs --version and `ping --local`; exits non-zero if either fails.
#
#   build/smoke-chroot.sh BINARY [RUNNER]     (RUNNER: e.g. qemu-aarch64-static for a foreign binary)
set -euo pipefail
binary=$(realpath "${1:?usage: smoke-chroot.sh BINARY [RUNNER]}")
runner=${2:-}
root=$(mktemp -d /tmp/tom-chroot.XXXXXX)
cleanup() {
    umount "$root/proc" 2>/dev/null || true
    rm -rf "$root"
}
trap cleanup EXIT
mkdir -p "$root/tmp" "$root/proc" "$root/bin"
chmod 1777 "$root/tmp"
cp "$binary" "$root/bin/tom-stress"
ln "$root/bin/tom-stress" "$root/bin/tom-relay"
if [ -n "$runner" ]; then
    cp "$(command -v "$runner")" "$root/bin/runner"
    run=(/bin/runner /bin/tom-stress)
else
    run=(/bin/tom-stress)
fi
mount -t proc proc "$root/proc"
echo "== files in the root:"; (cd "$root" && find . -path ./proc -prune -o -print | sort)
chroot "$root" "${run[@]}" --version
relay_version=$(chroot "$root" "${run[@]/tom-stress/tom-relay}" --version)
echo "$relay_version"
case "$relay_version" in tom-relay*) ;; *) echo "tom-relay did not answer as tom-relay" >&2; exit 1 ;; esac
env -i PATH=/bin "$(command -v chroot)" "$root" "${run[@]}" ping --local --count 5 --interval 100ms --timeout 5s \
    --output-dir /tmp/results --no-live
echo "== smoke test passed"
