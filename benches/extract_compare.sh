#!/usr/bin/env bash
# Compare `squashbox extract` with Debian's unsquashfs (squashfs-tools 4.5.1) and backhand's
# unsquashfs-backhand on the same images, in the same run.
#
# Usage (as root):  benches/extract_compare.sh [REPEATS] [COMPS]
#   REPEATS  timed runs per tool and image; medians are reported (default 5)
#   COMPS    space-separated compressors to build images with: gzip zstd xz lz4 (default
#            "gzip zstd"; gzip is mksquashfs's default)
# Env:
#   SQUASHBOX   squashbox binary (default target/release/squashbox; build it with
#               `cargo build --release -p squashbox-cli`)
#   BACKHAND    unsquashfs-backhand binary (default: $PATH, then
#               /var/tmp/squashbox-bench-cache/backhand/bin). Install it away from the
#               workspace target dir:
#                 CARGO_TARGET_DIR=/var/tmp/squashbox-bench-cache/target cargo install \
#                   --locked backhand-cli --version 0.25.5 --root /var/tmp/squashbox-bench-cache/backhand
#               Missing backhand is reported and its column left out; BACKHAND=none leaves it
#               out on purpose.
#   BASELINE    a second squashbox binary (e.g. a copy built from the previous commit) timed
#               as tool "baseline" in the same interleaved runs, for before/after comparisons
#   SOURCES     directories packed side by side at the image root (default
#               "/usr/share /usr/include /usr/bin /usr/lib/x86_64-linux-gnu": a real Debian tree
#               of tens of thousands of files, well over 1 GiB, mixing small text files with large
#               binaries and symlinks)
#   BENCH_DIR   where images and outputs live (default /var/tmp/squashbox-extract-bench; the
#               images are kept there between invocations and reused; delete it when done)
#   THREADS     squashbox --threads and unsquashfs -p (default 2)
#
# Method: each image is built once with mksquashfs defaults (128 KiB blocks, fragments,
# xattrs, export table) plus `-comp COMP`. Warm page cache: the image is read once before the
# timed runs. Each run extracts into a fresh directory on the same file system as the image;
# the previous output is removed and `sync`ed outside the timed region. Tools are interleaved
# within each repetition (squashbox, unsquashfs, backhand, squashbox, ...) so machine noise
# hits them alike. /usr/bin/time -f '%e %U %S %M' gives wall, user, sys and peak RSS. After the
# first repetition the outputs are compared (entry count, apparent bytes, and a content hash of
# every regular file) so a tool that skips work cannot win.
set -euo pipefail

root_dir="$(cd "$(dirname "$0")/.." && pwd)"
repeats="${1:-5}"
comps="${2:-gzip zstd}"
bin="${SQUASHBOX:-$root_dir/target/release/squashbox}"
sources="${SOURCES:-/usr/share /usr/include /usr/bin /usr/lib/x86_64-linux-gnu}"
bench_dir="${BENCH_DIR:-/var/tmp/squashbox-extract-bench}"
threads="${THREADS:-2}"

[[ $(id -u) == 0 ]] || { echo "run as root (all tools then restore owners)" >&2; exit 1; }
[[ -x "$bin" ]] || { echo "build first: cargo build --release -p squashbox-cli" >&2; exit 1; }
command -v mksquashfs >/dev/null || { echo "mksquashfs is not installed" >&2; exit 1; }
command -v unsquashfs >/dev/null || { echo "unsquashfs is not installed" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time (GNU time) is not installed" >&2; exit 1; }
baseline="${BASELINE:-}"
[[ -z "$baseline" || -x "$baseline" ]] || { echo "BASELINE=$baseline is not executable" >&2; exit 1; }
backhand="${BACKHAND:-$(command -v unsquashfs-backhand || true)}"
if [[ -z "$backhand" && -x /var/tmp/squashbox-bench-cache/backhand/bin/unsquashfs-backhand ]]; then
    backhand=/var/tmp/squashbox-bench-cache/backhand/bin/unsquashfs-backhand
fi
tools=(squashbox)
[[ -n "$baseline" ]] && tools+=(baseline)
tools+=(unsquashfs)
if [[ "$backhand" == none ]]; then
    :
elif [[ -n "$backhand" ]]; then
    tools+=(backhand)
else
    echo "# unsquashfs-backhand not found: leaving it out (see the header for how to install)" >&2
fi

mkdir -p "$bench_dir"
out="$bench_dir/out"
runs="$bench_dir/runs"
rm -rf "$out" "$runs"
mkdir -p "$runs"
trap 'rm -rf "$out"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# A fingerprint of an extracted tree: entries, apparent bytes, and a hash over every regular
# file's path and content (paths sorted), so outputs of different tools can be compared.
# Bytes are du's apparent size (each hard-linked inode once, so a tool writing links as copies
# shows) minus the directories' own sizes: ext4 directory sizes depend on the order entries
# were created in, which differs between tools and between parallel runs.
fingerprint() {
    local dir="$1" entries bytes dir_bytes hash
    entries=$(find "$dir" -mindepth 1 | wc -l)
    dir_bytes=$(find "$dir" -type d -printf '%s\n' | awk '{s += $1} END {print s + 0}')
    bytes=$(( $(du -sb --apparent-size "$dir" | cut -f1) - dir_bytes ))
    hash=$(cd "$dir" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -n 256 md5sum | md5sum | cut -c1-16)
    echo "entries=$entries bytes=$bytes content=$hash"
}

run_tool() { # TOOL IMAGE COMP: one timed extraction; appends "wall cpu rss_kb" to runs/COMP.TOOL
    local tool="$1" img="$2" comp="$3" cmd
    case "$tool" in
        squashbox) cmd=("$bin" extract --threads "$threads" "$img" "$out") ;;
        baseline) cmd=("$baseline" extract --threads "$threads" "$img" "$out") ;;
        unsquashfs) cmd=(unsquashfs -no-progress -p "$threads" -d "$out" "$img") ;;
        backhand) cmd=("$backhand" --quiet -d "$out" "$img") ;;
    esac
    rm -rf "$out"
    sync
    /usr/bin/time -f "%e %U %S %M" -o "$runs/time" "${cmd[@]}" >"$runs/stdout" 2>"$runs/stderr" || {
        echo "$tool failed on $img: ${cmd[*]}" >&2
        tail -20 "$runs/stderr" >&2
        exit 1
    }
    read -r wall user sys rss <"$runs/time"
    echo "$wall $(echo "$user + $sys" | bc) $rss" >>"$runs/$comp.$tool"
}

echo "# machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)," \
     "kernel $(uname -r), $(unsquashfs -version 2>&1 | head -1)" >&2
for comp in $comps; do
    img="$bench_dir/tree-$comp.sqfs"
    if [[ ! -s "$img" ]]; then
        echo "# building $img from $sources" >&2
        # shellcheck disable=SC2086
        mksquashfs $sources "$img.partial" -noappend -quiet -no-progress -comp "$comp" >/dev/null
        mv "$img.partial" "$img"
    fi
done

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A fp
for comp in $comps; do
    img="$bench_dir/tree-$comp.sqfs"
    echo "# image $img: $(stat -c %s "$img") bytes" >&2
    cat "$img" >/dev/null # warm the page cache
    for rep in $(seq "$repeats"); do
        for tool in "${tools[@]}"; do
            run_tool "$tool" "$img" "$comp"
            echo "# $comp rep $rep $tool: $(tail -1 "$runs/$comp.$tool") (wall s, cpu s, rss KiB)" >&2
            if [[ $rep == 1 ]]; then
                fp[$comp.$tool]=$(fingerprint "$out")
                echo "#   output: ${fp[$comp.$tool]}" >&2
            fi
        done
    done
    for tool in "${tools[@]}"; do
        if [[ "${fp[$comp.$tool]}" != "${fp[$comp.squashbox]}" ]]; then
            echo "# WARNING: $tool output differs from squashbox's on $comp:" \
                 "${fp[$comp.$tool]} vs ${fp[$comp.squashbox]}" >&2
        fi
    done
done

echo
echo "Sources: $sources; ${fp[$(echo "$comps" | awk '{print $1}').squashbox]}"
echo "$repeats warm runs per tool and image, medians; squashbox --threads $threads," \
     "unsquashfs -p $threads; $(nproc) CPUs; kernel $(uname -r);" \
     "load average before/after: $load_before / $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| image | tool | wall s | CPU s | peak RSS MiB | wall / unsquashfs | RSS / unsquashfs |"
echo "|---|---|---|---|---|---|---|"
for comp in $comps; do
    declare -A med_wall med_cpu med_rss
    for tool in "${tools[@]}"; do
        med_wall[$tool]=$(cut -d' ' -f1 "$runs/$comp.$tool" | median)
        med_cpu[$tool]=$(cut -d' ' -f2 "$runs/$comp.$tool" | median)
        med_rss[$tool]=$(cut -d' ' -f3 "$runs/$comp.$tool" | median)
    done
    for tool in "${tools[@]}"; do
        printf '| %s | %s | %.2f | %.2f | %.1f | %.2fx | %.2fx |\n' "$comp" "$tool" \
            "${med_wall[$tool]}" "${med_cpu[$tool]}" "$(echo "${med_rss[$tool]} / 1024" | bc -l)" \
            "$(echo "${med_wall[$tool]} / ${med_wall[unsquashfs]}" | bc -l)" \
            "$(echo "${med_rss[$tool]} / ${med_rss[unsquashfs]}" | bc -l)"
    done
    unset med_wall med_cpu med_rss
done
echo
echo "Raw runs (wall s, CPU s, RSS KiB) are in $runs."
