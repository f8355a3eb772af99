#!/usr/bin/env bash
# Build the static x86_64 binaries into build/out/x86_64/ (tom-stress, and tom-relay as a link).
# Needs root only to install patchelf when it is missing (Debian: apt-get).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v patchelf >/dev/null; then
    apt-get install -y -qq patchelf >/dev/null
fi
export BUILD_COMMIT=${BUILD_COMMIT:-$(git -C "$here/.." rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
export BUILD_DATE=${BUILD_DATE:-$(date -u +%Y-%m-%d)}
"$here/freeze.sh" /usr/bin/python3.11 "$here/out/x86_64"
file "$here/out/x86_64/tom-stress"
