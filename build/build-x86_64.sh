#!/usr/bin/env bash
# Build the static x86_64 binaries into build/out/x86_64/ (tom-stress, and tom-relay as a link).
# Needs root only to install patchelf and libnetfilter-queue-dev when missing (Debian: apt-get).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
need=()
command -v patchelf >/dev/null || need+=(patchelf)
[ -e /usr/include/libnetfilter_queue/libnetfilter_queue.h ] || need+=(libnetfilter-queue-dev)
if [ ${#need[@]} -gt 0 ]; then
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
export BUILD_COMMIT=${BUILD_COMMIT:-$(git -C "$here/.." rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
export BUILD_DATE=${BUILD_DATE:-$(date -u +%Y-%m-%d)}
"$here/freeze.sh" /usr/bin/python3.11 "$here/out/x86_64"
file "$here/out/x86_64/tom-stress"
