#!/usr/bin/env bash
# Compare the squashbox copy-on-write overlay with its two peers over one SquashFS image:
#
#   squashbox       squashbox overlay --lower IMAGE (reads the image with its own reader)
#   fuse-overlayfs  fuse-overlayfs with lowerdir = a squashfuse mount of the same image
#   kernel          the kernel's overlayfs with lowerdir = a kernel squashfs loop mount
#
#   benches/overlay_compare.sh [SQUASHBOX_BINARY] [REPS]
#
# Workloads (issue #5): extract a 10,000-file tar archive into the overlay; metadata walk of
# the whole lower tree (find -ls); cold read-through of every lower file; `ls -l` of a
# 10,000-entry lower directory; `git status` in a lower git checkout; copy-up of a 1 GiB lower
# file (append one byte); write of a new 512 MiB upper file; `rm -rf` of a large lower tree.
# Every run of every workload gets fresh mounts (lower and overlay), an empty upper directory
# and dropped kernel caches, so it is cold for all three. Prints the median of REPS (default 3)
# runs and the ratios squashbox/fuse-overlayfs and squashbox/kernel.
# Needs root, /dev/fuse, mksquashfs, squashfuse, fuse-overlayfs, git, tar.
#
# Environment: WORKLOADS="copyup write" runs only those; SQUASHBOX_OVERLAY_ARGS="--sync-copy-up"
# adds options to the squashbox mount.
set -euo pipefail

bin=${1:-${CARGO_TARGET_DIR:-target}/release/squashbox}
reps=${2:-3}
[[ -x "$bin" ]] || { echo "no squashbox binary at $bin (cargo build --release -p squashbox-cli)" >&2; exit 2; }
for t in mksquashfs squashfuse fuse-overlayfs git tar bc; do
    command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 2; }
done
root=$(mktemp -d /tmp/sqb-ovl-bench.XXXXXX)
m="$root/merged"; u="$root/upper"; w="$root/work"; low="$root/lower"

unmount_all() {
    for p in "$m" "$low"; do
        while grep -qs " $p " /proc/mounts; do umount "$p" 2>/dev/null || umount -l "$p"; done
    done
}
cleanup() { unmount_all; rm -rf "$root"; }
trap cleanup EXIT

echo "building the lower tree and image in $root ..." >&2
src="$root/src"
mkdir -p "$src/tree" "$src/many" "$src/repo"
# A real tree: manual pages, perl modules, locale sources, time zones (~24k files).
for d in /usr/share/man /usr/share/perl /usr/share/i18n /usr/share/zoneinfo; do
    [[ -d $d ]] && cp -a "$d" "$src/tree/"
done
for i in $(seq 1 10000); do echo "$i" >"$src/many/f$i"; done
# A git checkout (the vim runtime, ~2k files), committed, clean.
cp -a /usr/share/vim/. "$src/repo/"
(cd "$src/repo" && git init -q && git add -A && git -c user.name=b -c user.email=b@b commit -qm init)
head -c $((1 << 30)) /dev/urandom >"$src/big1g"
mksquashfs "$src" "$root/img.sqsh" -noappend -quiet -no-progress -comp zstd >/dev/null
# The archive to extract: 10,000 files (manual pages, not part of the overlay).
(cd /usr/share && find man -type f | awk 'NR <= 10000' | tar -cf "$root/archive.tar" -T -)
rm -rf "$src"
files=$(tar -tf "$root/archive.tar" | grep -vc '/$')
echo "image $(du -h "$root/img.sqsh" | cut -f1), archive $files files" >&2

mount_impl() { # impl
    rm -rf "$u" "$w"
    mkdir -p "$u" "$w" "$m" "$low"
    case $1 in
        squashbox)
            # shellcheck disable=SC2086 # word splitting of the extra options is wanted
            "$bin" overlay --lower "$root/img.sqsh" --upper "$u" --work "$w" \
                ${SQUASHBOX_OVERLAY_ARGS:-} "$m" ;;
        fuse-overlayfs)
            squashfuse "$root/img.sqsh" "$low"
            fuse-overlayfs -o "lowerdir=$low,upperdir=$u,workdir=$w" "$m" ;;
        kernel)
            mount -t squashfs -o loop,ro "$root/img.sqsh" "$low"
            mount -t overlay overlay -o "lowerdir=$low,upperdir=$u,workdir=$w" "$m" ;;
    esac
}

w_extract() { mkdir "$m/x" && tar -xf "$root/archive.tar" -C "$m/x"; }
w_walk() { find "$m/tree" -ls >/dev/null; }
w_read() { find "$m/tree" -type f -print0 | xargs -0 cat >/dev/null; }
w_lsl() { ls -l "$m/many" >/dev/null; }
w_git() { git -C "$m/repo" status --porcelain >/dev/null; }
w_copyup() { echo x >>"$m/big1g"; }
w_write() { dd if=/dev/zero of="$m/new" bs=1M count=512 status=none; }
w_rm() { rm -rf "$m/tree/man"; }

read -r -a workloads <<<"${WORKLOADS:-extract walk read lsl git copyup write rm}"
declare -A label=(
    [extract]="extract 10,000-file tar into the overlay"
    [walk]="metadata walk of the tree (find -ls)"
    [read]="cold read-through of all lower files"
    [lsl]="ls -l of a 10,000-entry lower dir"
    [git]="git status in a lower checkout"
    [copyup]="copy-up of a 1 GiB lower file"
    [write]="write a new 512 MiB upper file"
    [rm]="rm -rf of a large lower tree (21k files)"
)
impls=(squashbox fuse-overlayfs kernel)
declare -A times

now() { date +%s.%N; }
for rep in $(seq 1 "$reps"); do
    # Each rep starts with a different implementation: the first 1 GiB copy-up after other
    # workloads must find fresh free space on the (well-filled) disk, while later ones reuse
    # the extents the previous copy freed, and that costs the synchronous writers (squashbox,
    # kernel) up to 2x. Rotating the order keeps any such effect from landing on one tool.
    order=("${impls[@]:$(((rep - 1) % ${#impls[@]}))}" "${impls[@]:0:$(((rep - 1) % ${#impls[@]}))}")
    for wl in "${workloads[@]}"; do
        for impl in "${order[@]}"; do
            mount_impl "$impl"
            sync; echo 3 >/proc/sys/vm/drop_caches
            t0=$(now); "w_$wl"; t1=$(now)
            dt=$(echo "$t1 - $t0" | bc)
            times[$wl,$impl]+="$dt "
            echo "  run $rep $wl $impl: $dt s" >&2
            unmount_all
        done
    done
    echo "run $rep/$reps done" >&2
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo "load: $(uptime)"
echo
printf '| workload | squashbox | fuse-overlayfs | kernel overlayfs | sqb / fuse-overlayfs | sqb / kernel |\n'
printf '|---|---|---|---|---|---|\n'
for wl in "${workloads[@]}"; do
    s=$(echo "${times[$wl,squashbox]}" | median)
    f=$(echo "${times[$wl,fuse-overlayfs]}" | median)
    k=$(echo "${times[$wl,kernel]}" | median)
    printf '| %s | %.2f s | %.2f s | %.2f s | %.2fx | %.2fx |\n' "${label[$wl]}" "$s" "$f" "$k" \
        "$(echo "$s / $f" | bc -l)" "$(echo "$s / $k" | bc -l)"
done
echo
echo "raw seconds per run:"
for wl in "${workloads[@]}"; do
    for impl in "${impls[@]}"; do echo "  $wl $impl: ${times[$wl,$impl]}"; done
done
