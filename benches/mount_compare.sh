#!/usr/bin/env bash
# Compare `squashbox mount` with squashfuse (Debian) and the kernel's squashfs (loop mount) on
# one image of a large real tree.
#
# Usage (as root):  benches/mount_compare.sh [TREE] [REPEATS]
#   TREE     directory to pack (default /usr/share)
#   REPEATS  runs per test and file system; the median is reported (default 3)
# Env: SQUASHBOX=path to the squashbox binary (default target/release/squashbox),
#      MKSQUASHFS_ARGS extra mksquashfs arguments (default: none, i.e. gzip, 128 KiB blocks),
#      SQUASHBOX_MOUNT_ARGS extra `squashbox mount` arguments (e.g. "--threads 4"),
#      FILESYSTEMS which to run (default "squashbox squashfuse kernel"; ratios need all three).
#
# Every run is cold: the file system is mounted afresh (a new daemon for the FUSE ones, so no
# user-space cache survives) and the kernel caches are dropped (echo 3 > drop_caches) before
# the timed command. Tests:
#   walk    find MNT -printf '%s %m\n'                      (metadata: readdir + stat)
#   read    tar -cf - -C MNT . | cat >/dev/null             (every file, one reader; GNU tar
#           skips reading file data when the archive is literally /dev/null, hence the pipe)
#   par4    the regular files split in 4 lists, 4 concurrent `xargs -0 cat >/dev/null`
#   rand4k  20000 random 4 KiB preads over the regular files (fixed seed, size-weighted)
# RSS is the daemon's peak resident set (VmHWM) after the read test.
set -euo pipefail

tree="${1:-/usr/share}"
repeats="${2:-3}"
root_dir="$(cd "$(dirname "$0")/.." && pwd)"
bin="${SQUASHBOX:-$root_dir/target/release/squashbox}"
mksquashfs_args="${MKSQUASHFS_ARGS:-}"
squashbox_args="${SQUASHBOX_MOUNT_ARGS:-}"

[[ $(id -u) == 0 ]] || { echo "run as root (loop mounts, drop_caches)" >&2; exit 1; }
[[ -x "$bin" ]] || { echo "build first: cargo build --release -p squashbox-cli" >&2; exit 1; }
command -v squashfuse >/dev/null || { echo "squashfuse is not installed" >&2; exit 1; }

work="$(mktemp -d /tmp/squashbox-mount-bench.XXXXXX)"
mnt="$work/mnt"
mkdir -p "$mnt"

cleanup() {
    if mountpoint -q "$mnt"; then
        umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "# packing $tree" >&2
# shellcheck disable=SC2086
mksquashfs "$tree" "$work/img.sqfs" -noappend -quiet -no-progress $mksquashfs_args >/dev/null
img_size=$(stat -c %s "$work/img.sqfs")
nfiles=$(find "$tree" -xdev | wc -l)
tree_bytes=$(du -sb "$tree" | cut -f1)

# File lists (relative, NUL-separated) for the parallel and random tests.
(cd "$tree" && find . -xdev -type f -print0) >"$work/files0"
python3 - "$work" <<'PY'
import sys
work = sys.argv[1]
files = [f for f in open(f"{work}/files0", "rb").read().split(b"\0") if f]
for i in range(4):
    with open(f"{work}/part{i}", "wb") as out:
        out.write(b"\0".join(files[i::4]) + b"\0")
PY

daemon_pid() { # the FUSE daemon serving $mnt
    local p
    for p in $(pgrep -f -- "$mnt" || true); do
        if [[ "$(cat /proc/$p/comm 2>/dev/null)" =~ ^(squashbox|squashfuse)$ ]]; then
            echo "$p"
            return
        fi
    done
}

do_mount() {
    case "$1" in
        squashbox) # shellcheck disable=SC2086
            "$bin" mount $squashbox_args "$work/img.sqfs" "$mnt" ;;
        squashfuse) squashfuse "$work/img.sqfs" "$mnt" ;;
        kernel) mount -t squashfs -o loop,ro "$work/img.sqfs" "$mnt" ;;
    esac
}

do_umount() {
    local pid
    pid="$(daemon_pid)"
    umount "$mnt"
    # Wait for the daemon to exit so runs do not overlap.
    if [[ -n "$pid" ]]; then
        for _ in $(seq 200); do
            [[ -e /proc/$pid && "$(awk '{print $3}' /proc/$pid/stat 2>/dev/null)" != Z ]] || break
            sleep 0.05
        done
    fi
}

run_test() {
    case "$1" in
        walk) find "$mnt" -printf '%s %m\n' >/dev/null ;;
        read) tar -cf - -C "$mnt" . | cat >/dev/null ;;
        par4)
            for i in 0 1 2 3; do
                (cd "$mnt" && xargs -0 -n 64 cat <"$work/part$i" >/dev/null) &
            done
            wait
            ;;
        rand4k)
            python3 - "$mnt" "$work/files0" <<'PY'
import os, random, sys
mnt, lst = sys.argv[1], sys.argv[2]
files = [f.decode("utf-8", "surrogateescape") for f in open(lst, "rb").read().split(b"\0") if f]
rng = random.Random(42)
sizes = []
for f in files:
    try:
        sizes.append(os.lstat(os.path.join(mnt, f)).st_size)
    except OSError:
        sizes.append(0)
pool = [(f, s) for f, s in zip(files, sizes) if s >= 4096]
weights = [s for _, s in pool]
picks = rng.choices(pool, weights=weights, k=20000)
for f, s in picks:
    fd = os.open(os.path.join(mnt, f), os.O_RDONLY)
    os.pread(fd, 4096, rng.randrange(0, s - 4096 + 1))
    os.close(fd)
PY
            ;;
    esac
}

declare -A result rss
read -r -a fss <<<"${FILESYSTEMS:-squashbox squashfuse kernel}"
tests=(walk read par4 rand4k)
for fs in "${fss[@]}"; do
    rss[$fs]=0
    for t in "${tests[@]}"; do
        times=()
        for _ in $(seq "$repeats"); do
            do_mount "$fs"
            sync
            echo 3 >/proc/sys/vm/drop_caches
            start=$(date +%s.%N)
            run_test "$t"
            end=$(date +%s.%N)
            times+=("$(echo "$end - $start" | bc -l)")
            pid="$(daemon_pid)"
            if [[ -n "$pid" ]]; then
                hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
                ((hwm > rss[$fs])) && rss[$fs]=$hwm
            fi
            do_umount
        done
        result[$fs.$t]=$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
        echo "# $fs $t: ${times[*]} -> median ${result[$fs.$t]} s" >&2
    done
done

echo "Tree: $tree ($nfiles entries, $((tree_bytes >> 20)) MiB); image $((img_size >> 20)) MiB" \
     "(mksquashfs defaults${mksquashfs_args:+ + $mksquashfs_args}); $repeats cold runs each, median seconds;" \
     "$(nproc) CPUs; kernel $(uname -r)"
echo
echo "| test | squashbox | squashfuse | kernel | squashfuse / squashbox | squashbox / kernel |"
echo "|---|---|---|---|---|---|"
for t in "${tests[@]}"; do
    a=${result[squashbox.$t]:-0} b=${result[squashfuse.$t]:-0} c=${result[kernel.$t]:-0}
    if [[ ${#fss[@]} -lt 3 ]]; then
        echo "| $t | $a | $b | $c | - | - |"
        continue
    fi
    printf '| %s | %.3f | %.3f | %.3f | %.2fx | %.2fx |\n' "$t" "$a" "$b" "$c" \
        "$(echo "$b / $a" | bc -l)" "$(echo "$a / $c" | bc -l)"
done
echo
echo "Peak daemon RSS (VmHWM): squashbox $((${rss[squashbox]:-0} / 1024)) MiB," \
     "squashfuse $((${rss[squashfuse]:-0} / 1024)) MiB"
