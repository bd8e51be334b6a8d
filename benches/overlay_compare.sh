#!/usr/bin/env bash
# Compare the squashbox overlay with fuse-overlayfs and the kernel's overlayfs over the same
# SquashFS image (kernel loop mount as lower for the other two).
#
#   benches/overlay_compare.sh [SQUASHBOX_BINARY]
#
# Measures: cold sequential read of a 256 MiB lower file, copy-up by appending one byte to it,
# sequential write of a new 256 MiB file, readdir + stat of a 10,000-entry lower directory,
# creating 2,000 small files. Needs root, /dev/fuse, mksquashfs, fuse-overlayfs.
set -euo pipefail

bin=${1:-${CARGO_TARGET_DIR:-target}/release/squashbox}
[[ -x "$bin" ]] || bin=${CARGO_TARGET_DIR:-target}/debug/squashbox
[[ -x "$bin" ]] || { echo "build squashbox first" >&2; exit 2; }
root=$(mktemp -d /tmp/sqb-ovl-bench.XXXXXX)
lower="$root/lower"
cleanup() {
    for m in "$root"/m-*; do
        grep -qs " $m " /proc/mounts && umount "$m" 2>/dev/null || true
    done
    grep -qs " $lower " /proc/mounts && umount "$lower" || true
    rm -rf "$root"
}
trap cleanup EXIT

mkdir -p "$root/src/many" "$lower"
head -c $((256 << 20)) /dev/urandom >"$root/src/big"
for i in $(seq 1 10000); do echo "$i" >"$root/src/many/f$i"; done
mksquashfs "$root/src" "$root/img.sqsh" -noappend -quiet -no-progress -comp zstd >/dev/null
mount -t squashfs -o loop,ro "$root/img.sqsh" "$lower"

now() { date +%s.%N; }
measure() { # label command...
    local t0 t1
    sync; echo 3 >/proc/sys/vm/drop_caches
    t0=$(now); "${@:2}" >/dev/null; t1=$(now)
    printf '  %-28s %8.3f s\n' "$1" "$(echo "$t1 - $t0" | bc)"
}

run_all() { # name mountpoint
    local m=$2
    echo "$1:"
    measure "read 256 MiB lower file" cat "$m/big"
    measure "copy-up 256 MiB (append)" sh -c "echo x >>'$m/big'"
    measure "write 256 MiB new file" dd if=/dev/zero of="$m/new" bs=1M count=256 status=none
    measure "ls -l 10k-entry lower dir" ls -l "$m/many"
    measure "create 2000 small files" sh -c "mkdir '$m/small'; for i in \$(seq 1 2000); do echo \$i >'$m/small/\$i'; done"
}

for impl in squashbox fuse-overlayfs kernel; do
    m="$root/m-$impl"; u="$root/u-$impl"; w="$root/w-$impl"
    mkdir -p "$m" "$u" "$w"
    case $impl in
        squashbox) "$bin" overlay --lower "$root/img.sqsh" --upper "$u" --work "$w" "$m" ;;
        fuse-overlayfs) fuse-overlayfs -o "lowerdir=$lower,upperdir=$u,workdir=$w" "$m" ;;
        kernel) mount -t overlay overlay -o "lowerdir=$lower,upperdir=$u,workdir=$w" "$m" ;;
    esac
    run_all "$impl" "$m"
    umount "$m"
done
