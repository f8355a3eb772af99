#!/usr/bin/env bash
# Freeze tom-stress (and tom-relay, the same binary under another name) into one static file.
#
#   build/freeze.sh PYTHON OUT_DIR
#
# PYTHON must be a distribution Python with a shared libpython (Debian's /usr/bin/python3.11):
# staticx refuses pyenv builds. Runs on the build machine itself (x86_64) or inside an arm64
# Debian root under qemu (build/build-aarch64.sh). Needs patchelf and libnetfilter-queue-dev (the
# lab's delayer is bundled); on aarch64 staticx is built from source (scons, musl-tools, gcc).
# Environment: BUILD_COMMIT, BUILD_DATE (set by the callers).
set -euo pipefail
python=${1:?usage: freeze.sh PYTHON OUT_DIR}
out=${2:?usage: freeze.sh PYTHON OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/.." && pwd)
work=$(mktemp -d /tmp/tom-freeze.XXXXXX)
trap 'rm -rf "$work"' EXIT

"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
# The lab extra (NetfilterQueue, the delayer) builds against libnetfilter-queue-dev, here and now:
# a wheel cached from another Python may carry a RUNPATH, which staticx refuses.
"$work/venv/bin/python" -m pip install --quiet --no-cache-dir --no-binary NetfilterQueue "NetfilterQueue>=1.1"
"$work/venv/bin/python" -m pip install --quiet "$project[lab]" "pyinstaller>=6,<7" "staticx>=0.14,<0.15"

arch=$("$python" -c 'import platform; print(platform.machine())')
cat > "$work/tom_build_info.json" <<JSON
{"commit": "${BUILD_COMMIT:-unknown}", "date": "${BUILD_DATE:-$(date -u +%Y-%m-%d)}", "arch": "$arch", "linkage": "static"}
JSON

cd "$work"
"$work/venv/bin/pyinstaller" --onefile --noconfirm --clean --log-level WARN \
    --name tom-stress \
    --collect-data tomstress.schemas \
    --hidden-import netfilterqueue \
    --add-data "$work/tom_build_info.json:." \
    --distpath "$work/dist" --workpath "$work/pyinstaller" --specpath "$work" \
    "$here/entry.py"
mkdir -p "$out"
"$work/venv/bin/staticx" --strip "$work/dist/tom-stress" "$out/tom-stress"
chmod 755 "$out/tom-stress"
# A hard link, not a symlink: staticx resolves symlinks in STATICX_PROG_PATH, which is how the
# binary learns the name it was started under (build/entry.py).
rm -f "$out/tom-relay"
ln "$out/tom-stress" "$out/tom-relay"
echo "built $out/tom-stress ($arch): $(du -h "$out/tom-stress" | cut -f1)"
