#!/usr/bin/env bash
# Compare squashbox backup/restore with tar+zstd and mksquashfs on one generated tree.
#
#   benches/backup_compare.sh [FILES] [MiB]      # default 20000 small files + 200 MiB of data
#
# Measures (wall time, median of 3 runs): backup to the local store, backup to the S3 test
# server (when AWS_ENDPOINT_URL is set, see scripts/s3-server.sh), tar --zstd, mksquashfs;
# restore by overlay mount (time until the tree is usable), restore --copy, tar -x. Prints a
# Markdown table. Needs root + /dev/fuse for the overlay rows.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

files="${1:-20000}"
mib="${2:-200}"
bin="${SQUASHBOX_BIN:-${CARGO_TARGET_DIR:-target}/release/squashbox}"
if [[ ! -x "$bin" ]]; then
    cargo build --release -p squashbox-cli >&2
fi

work="$(mktemp -d /tmp/sqb-bench.XXXXXX)"
cleanup() {
    "$bin" umount "$work/restore-overlay" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
export SQUASHBOX_STORE="file://$work/store" SQUASHBOX_STATE_DIR="$work/state"
export SQUASHBOX_CACHE_DIR="$work/cache" TMPDIR="$work/tmp"
mkdir -p "$work/tmp"

# The tree: $files small text-like files in 100 dirs, plus $mib MiB in 8 larger files
# (half compressible, half random).
src="$work/src"
python3 - "$src" "$files" "$mib" <<'PY'
import os, random, sys
root, files, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(42)
words = [b"alpha", b"beta", b"gamma", b"delta", b"fn", b"let", b"return", b"struct", b"\n"]
for i in range(files):
    d = os.path.join(root, f"d{i % 100:03}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}.txt"), "wb") as f:
        f.write(b" ".join(rnd.choice(words) for _ in range(rnd.randint(10, 400))))
big = os.path.join(root, "big")
os.makedirs(big, exist_ok=True)
for j in range(8):
    with open(os.path.join(big, f"blob{j}"), "wb") as f:
        n = mib * 1024 * 1024 // 8
        f.write(os.urandom(n) if j % 2 else (b"squashbox " * (n // 10 + 1))[:n])
PY
bytes=$(du -sb "$src" | cut -f1)

now() { date +%s.%N; }
median3() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
# time3 NAME PREP CMD: run PREP (untimed) then CMD three times; print the median seconds.
time3() {
    local prep="$2" cmd="$3" t=() i s
    for i in 1 2 3; do
        eval "$prep"
        s=$(now)
        eval "$cmd" >/dev/null
        t+=("$(echo "$(now) - $s" | bc)")
    done
    median3 "${t[@]}"
}
size_of() { du -sb "$1" | cut -f1; }

rows=()
row() { rows+=("| $1 | $2 | $3 |"); }

t=$(time3 backup-local "rm -rf $work/store" "$bin backup $src --json")
row "squashbox backup (local store, zstd)" "$t" "$(size_of "$work/store")"
id=$("$bin" backup "$src")

if [[ -n "${AWS_ENDPOINT_URL:-}" && -n "${SQUASHBOX_TEST_S3_BUCKET:-}" ]]; then
    s3="s3://$SQUASHBOX_TEST_S3_BUCKET/bench-$$"
    t=$(time3 backup-s3 ":" "$bin backup $src --store $s3 --json")
    row "squashbox backup (S3 SeaweedFS loopback)" "$t" "-"
    s3id=$("$bin" backup "$src" --store "$s3")
    t=$(time3 restore-s3 "rm -rf $work/cache $work/restore-s3" \
        "$bin restore $s3id --store $s3 --copy --dir $work/restore-s3")
    row "squashbox restore --copy from S3 (cold cache)" "$t" "-"
fi

t=$(time3 tar "rm -f $work/t.tar.zst" "tar -C $src -I 'zstd -3 -T0' -cf $work/t.tar.zst .")
row "tar --zstd -3 -T0" "$t" "$(size_of "$work/t.tar.zst")"
t=$(time3 mksquashfs "rm -f $work/m.sqsh" "mksquashfs $src $work/m.sqsh -comp zstd -quiet -no-progress")
row "mksquashfs -comp zstd" "$t" "$(size_of "$work/m.sqsh")"

if [[ $(id -u) -eq 0 && -c /dev/fuse ]]; then
    mkdir -p "$work/restore-overlay"
    t=$(time3 overlay "$bin umount $work/restore-overlay >/dev/null 2>&1 || true" \
        "$bin restore $id --dir $work/restore-overlay && ls $work/restore-overlay/d000 | wc -l")
    row "squashbox restore (overlay mount, warm cache)" "$t" "-"
    "$bin" umount "$work/restore-overlay" >/dev/null 2>&1 || true
fi
t=$(time3 copy "rm -rf $work/restore-copy" "$bin restore $id --copy --dir $work/restore-copy")
row "squashbox restore --copy (warm cache)" "$t" "-"
t=$(time3 copy-cold "rm -rf $work/restore-copy $work/cache" "$bin restore $id --copy --dir $work/restore-copy")
row "squashbox restore --copy (cold cache, local store)" "$t" "-"
t=$(time3 untar "rm -rf $work/untar && mkdir -p $work/untar" "tar -C $work/untar -I zstd -xf $work/t.tar.zst")
row "tar -x (zstd)" "$t" "-"

echo
echo "Tree: $files files + $mib MiB ($bytes bytes), $(nproc) cores, $(date -u +%F)"
echo
echo "| operation | seconds (median of 3) | stored bytes |"
echo "| --- | ---: | ---: |"
printf '%s\n' "${rows[@]}"
