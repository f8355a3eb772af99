#!/usr/bin/env bash
# Run the static binary where no Python can help it: an empty root holding only the binary, a
# writable /tmp and /proc. Runs --version, `ping --local` and a one-node `group-node`, then
# SIGKILLs the outermost process of a `ping --local --continuous` and checks that nothing it started outlives it by 2 s (staticx's
# bootloader forwards no SIGKILL: our lifeline must see it go); exits non-zero if anything fails.
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
echo "== group-node: a group hosted here, three messages through its hub"
group_out=$(env -i PATH=/bin "$(command -v chroot)" "$root" "${run[@]}" group-node --listen 127.0.0.1:0 \
    --create smoke --chatter 500ms --duration 4s)
echo "$group_out" | grep -q '"fact": "GroupJoined"' || { echo "group-node joined no group" >&2; exit 1; }
[ "$(echo "$group_out" | grep -c '"fact": "GroupMessageConfirmed"')" -ge 2 ] \
    || { echo "group-node: its hub confirmed fewer than 2 messages" >&2; exit 1; }
echo "$group_out" | tail -n 1 | grep -q '"event": "stopped"' || { echo "group-node did not stop cleanly" >&2; exit 1; }

# Every process below $1 ("pid starttime" lines), from /proc/<pid>/task/*/children.
descendants() {
    local child
    for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        echo "$child $(sed 's/.*) //' /proc/"$child"/stat 2>/dev/null | cut -d' ' -f20)"
        descendants "$child"
    done
}
# Still running: there, not a zombie, and the same start time (not another process on that pid).
running() {
    local fields
    fields=$(sed 's/.*) //' /proc/"$1"/stat 2>/dev/null) || return 1
    [ -n "$fields" ] || return 1
    case "${fields%% *}" in Z|X) return 1 ;; esac
    [ "$(echo "$fields" | cut -d' ' -f20)" = "$2" ]
}
echo "== SIGKILL of the outermost process of ping --local --continuous"
env -i PATH=/bin "$(command -v chroot)" "$root" "${run[@]}" ping --local --continuous --interval 100ms --timeout 5s \
    --output-dir /tmp/results-killed --no-live >/dev/null 2>&1 &
outer=$!  # env and chroot exec: this is the binary's own bootloader
tree=""
for _ in $(seq 1200); do  # up to 120 s (emulated binaries start slowly): until the responder answers
    tree=$(descendants "$outer")
    if grep -q '"ev":"probe"' "$root"/tmp/results-killed/*.jsonl 2>/dev/null; then break; fi
    sleep 0.1
done
grep -q '"ev":"probe"' "$root"/tmp/results-killed/*.jsonl 2>/dev/null || { echo "ping --local never probed" >&2; kill -9 "$outer"; exit 1; }
tree=$(descendants "$outer")
commands=$(while read -r pid _; do echo "  $pid $(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null)"; done <<<"$tree")
echo "processes under $outer:"; echo "$commands"
case "$commands" in *" responder "*) ;; *) echo "no responder under $outer" >&2; kill -9 "$outer"; exit 1 ;; esac
kill -KILL "$outer"
wait "$outer" 2>/dev/null || true
left=""
for _ in $(seq 20); do  # 2 s
    sleep 0.1
    left=""
    while read -r pid start; do
        if running "$pid" "$start"; then left="$left $pid"; fi
    done <<<"$tree"
    [ -z "$left" ] && break
done
if [ -n "$left" ]; then
    echo "still running 2 s after SIGKILL of $outer:$left" >&2
    for pid in $left; do kill -KILL "$pid" 2>/dev/null || true; done
    exit 1
fi
echo "nothing left 2 s after SIGKILL of $outer"
# Stopped as if SIGTERM'd: the archive is complete.
tail -n 1 "$root"/tmp/results-killed/*.jsonl | grep -q '"ev":"summary"' || { echo "the killed run's archive has no summary" >&2; exit 1; }
echo "and the killed run's archive ends with its summary"
echo "== smoke test passed"
