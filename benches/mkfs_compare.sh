#!/usr/bin/env bash
# Compare `squashbox mkfs` with Debian's mksquashfs (squashfs-tools 4.5.1) on one large tree.
#
# Usage (as root):  benches/mkfs_compare.sh [TREE] [REPEATS] [CONFIGS]
#   TREE     directory to pack (default: a copy of /usr/share, /usr/include, /usr/bin and
#            /usr/lib/python3* made once under /tmp/squashbox-mkfs-bench-tree)
#   REPEATS  runs per tool and configuration; medians are reported (default 3)
#   CONFIGS  space-separated list out of: zstd-3 gzip-9 lz4 xz (default "zstd-3 gzip-9 lz4")
# Env: SQUASHBOX=path to the binary (default target/release/squashbox), THREADS (default nproc),
#      BLOCK=block size in bytes (default 131072), BACKHAND=1 to add backhand's writer (built
#      once from benches/backhand-mkfs into /var/tmp/squashbox-bench-cache; it cannot store
#      xattrs or hard links and uses all cores, so it only runs when THREADS is nproc).
#
# Both tools get the same compressor, level, block size and thread count; otherwise their
# defaults (both deduplicate, both store xattrs, both write an export table; squashbox also
# packs the tails of large files into fragments — mksquashfs only does so with
# -always-use-fragments). Warm cache: the tree is read once before the timed runs, and each
# tool writes to the same file system. /usr/bin/time -f gives wall, user, sys, max RSS.
set -euo pipefail

root_dir="$(cd "$(dirname "$0")/.." && pwd)"
bin="${SQUASHBOX:-$root_dir/target/release/squashbox}"
threads="${THREADS:-$(nproc)}"
block="${BLOCK:-131072}"
repeats="${2:-3}"
configs="${3:-zstd-3 gzip-9 lz4}"

[[ -x "$bin" ]] || { echo "build first: cargo build --release -p squashbox-cli" >&2; exit 1; }
command -v mksquashfs >/dev/null || { echo "mksquashfs is not installed" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time (GNU time) is not installed" >&2; exit 1; }

tree="${1:-}"
if [[ -z "$tree" ]]; then
    tree=/tmp/squashbox-mkfs-bench-tree
    if [[ ! -d "$tree" ]]; then
        echo "creating $tree (copy of parts of /usr)" >&2
        mkdir -p "$tree.partial"
        for d in /usr/share /usr/include /usr/bin /usr/lib/python3*; do
            [[ -d "$d" ]] && cp -a "$d" "$tree.partial/$(echo "${d#/usr/}" | tr / _)"
        done
        mv "$tree.partial" "$tree"
    fi
fi

backhand=""
if [[ "${BACKHAND:-0}" == 1 ]]; then
    bh_target=/var/tmp/squashbox-bench-cache/backhand-mkfs-target
    (cd "$root_dir/benches/backhand-mkfs" && CARGO_TARGET_DIR="$bh_target" cargo build --release -q)
    backhand="$bh_target/release/backhand-mkfs"
    [[ "$threads" == "$(nproc)" ]] || { echo "BACKHAND=1 needs THREADS=$(nproc)" >&2; exit 1; }
fi
tools="squashbox mksquashfs${backhand:+ backhand}"

work="$(mktemp -d /tmp/squashbox-mkfs-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT

files=$(find "$tree" -type f | wc -l)
bytes=$(du -sb --apparent-size "$tree" | cut -f1)
echo "tree: $tree  files: $files  bytes: $bytes  threads: $threads  block: $block  repeats: $repeats"
# Warm the page cache.
tar -cf - -C "$tree" . | cat >/dev/null

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# run_tool NAME OUTFILE CMD... : append "wall cpu rss_kb size" lines to $work/NAME.runs
run_tool() {
    local name="$1" out="$2"
    shift 2
    rm -f "$out"
    /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$@" >/dev/null 2>"$work/stderr" || {
        echo "$name failed:" >&2
        cat "$work/stderr" >&2
        exit 1
    }
    read -r wall user sys rss <"$work/time"
    local size
    size=$(stat -c %s "$out")
    echo "$wall $(echo "$user + $sys" | bc) $rss $size" >>"$work/$name.runs"
}

printf '\n%-8s %-11s %9s %9s %10s %14s\n' config tool "wall s" "cpu s" "rss MiB" "image bytes"
for config in $configs; do
    case "$config" in
        zstd-3) sb=(--comp zstd --level 3); mk=(-comp zstd -Xcompression-level 3); bh=(zstd 3) ;;
        gzip-9) sb=(--comp gzip --level 9); mk=(-comp gzip -Xcompression-level 9); bh=(gzip 9) ;;
        lz4) sb=(--comp lz4); mk=(-comp lz4); bh=(lz4 0) ;;
        xz) sb=(--comp xz); mk=(-comp xz); bh=(xz 0) ;;
        *) echo "unknown config $config" >&2; exit 1 ;;
    esac
    rm -f "$work"/*.runs
    for _ in $(seq "$repeats"); do
        run_tool squashbox "$work/sb.img" "$bin" mkfs "$tree" "$work/sb.img" --quiet \
            --threads "$threads" --block-size "$block" "${sb[@]}"
        run_tool mksquashfs "$work/mk.img" mksquashfs "$tree" "$work/mk.img" -noappend \
            -quiet -no-progress -processors "$threads" -b "$block" "${mk[@]}"
        if [[ -n "$backhand" ]]; then
            run_tool backhand "$work/bh.img" "$backhand" "$tree" "$work/bh.img" "${bh[@]}" "$block"
        fi
    done
    for tool in $tools; do
        wall=$(cut -d' ' -f1 "$work/$tool.runs" | median)
        cpu=$(cut -d' ' -f2 "$work/$tool.runs" | median)
        rss=$(cut -d' ' -f3 "$work/$tool.runs" | median)
        size=$(cut -d' ' -f4 "$work/$tool.runs" | median)
        printf '%-8s %-11s %9.2f %9.2f %10.1f %14.0f\n' "$config" "$tool" "$wall" "$cpu" \
            "$(echo "$rss / 1024" | bc -l)" "$size"
        eval "${tool}_wall=$wall ${tool}_cpu=$cpu ${tool}_rss=$rss ${tool}_size=$size"
    done
    printf '%-8s %-11s %9.2f %9.2f %10.2f %14.3f\n' "$config" "ratio" \
        "$(echo "$squashbox_wall / $mksquashfs_wall" | bc -l)" \
        "$(echo "$squashbox_cpu / $mksquashfs_cpu" | bc -l)" \
        "$(echo "$squashbox_rss / $mksquashfs_rss" | bc -l)" \
        "$(echo "$squashbox_size / $mksquashfs_size" | bc -l)"
    if [[ -n "$backhand" ]]; then
        printf '%-8s %-11s %9.2f %9.2f %10.2f %14.3f\n' "$config" "sb/backhand" \
            "$(echo "$squashbox_wall / $backhand_wall" | bc -l)" \
            "$(echo "$squashbox_cpu / $backhand_cpu" | bc -l)" \
            "$(echo "$squashbox_rss / $backhand_rss" | bc -l)" \
            "$(echo "$squashbox_size / $backhand_size" | bc -l)"
    fi
done
