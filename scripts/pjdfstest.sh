#!/usr/bin/env bash
# POSIX conformance of the squashbox overlay with pjdfstest (https://crates.io/crates/pjdfstest).
#
# Runs pjdfstest, as root, against (1) a plain directory on the same file system as the upper
# directory (the reference), (2) the kernel's overlayfs over the same image (loop-mounted) and
# (3) a squashbox overlay mount of that image, in one run. Fails if squashbox fails a test that
# passes on the plain directory, unless the kernel's overlayfs fails it too (a property of
# overlayfs itself: e.g. pjdfstest's `::char` cases create 0/0 character devices, which are
# whiteouts and refused with EPERM by every overlayfs).
#
#   scripts/pjdfstest.sh [SQUASHBOX_BINARY]     # default: target dir's debug binary
#
# Needs: root, /dev/fuse, mksquashfs, user `tests` (scripts/test.sh creates it), pjdfstest in
# PATH or ~/.cargo/bin (`cargo install pjdfstest --locked`). Logs: $PJD_OUT (default a tmp dir).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=${1:-${CARGO_TARGET_DIR:-target}/debug/squashbox}
pjd=$(command -v pjdfstest || echo "$HOME/.cargo/bin/pjdfstest")
[[ -x "$pjd" ]] || { echo "pjdfstest.sh: pjdfstest not installed" >&2; exit 2; }
[[ -x "$bin" ]] || { echo "pjdfstest.sh: $bin not built (cargo build -p squashbox-cli)" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "pjdfstest.sh: must run as root" >&2; exit 2; }
id tests >/dev/null 2>&1 || { echo "pjdfstest.sh: user 'tests' missing" >&2; exit 2; }

out=${PJD_OUT:-$(mktemp -d /tmp/sqb-pjd.XXXXXX)}
mkdir -p "$out"
root=$(mktemp -d /tmp/sqb-pjd-run.XXXXXX)
chmod 0755 "$root"
mnt="$root/mnt"

cleanup() {
    if grep -qs " $mnt " /proc/mounts; then
        "$bin" umount "$mnt" 2>/dev/null || umount -l "$mnt" || true
    fi
    for m in "$root/kmnt" "$root/lower"; do
        grep -qs " $m " /proc/mounts && { umount "$m" || umount -l "$m" || true; }
    done
    rm -rf "$root"
}
trap cleanup EXIT

# pjdfstest configuration: what the kernel + upper file system (ext4/tmpfs) provide.
cat >"$out/pjdfstest.toml" <<'EOF'
[features]
posix_fallocate = {}
utime_now = {}
utimensat = {}
rename_ctime = {}
EOF

mkdir -p "$root/src/lowerdir" "$root/plain" "$mnt"
echo "lower" >"$root/src/lowerdir/file"
mksquashfs "$root/src" "$root/img.sqsh" -noappend -quiet -no-progress >/dev/null
"$bin" overlay --lower "$root/img.sqsh" --upper "$root/upper" --work "$root/work" -o allow_other "$mnt"

run_suite() { # name dir
    local name=$1 dir=$2
    chmod 0777 "$dir"
    (cd "$dir" && NO_COLOR=1 timeout 1800 "$pjd" -c "$out/pjdfstest.toml" -p "$dir") >"$out/$name.log" 2>&1 || true
    grep -E '^[a-z_0-9:]+ +(FAILED|failed)' "$out/$name.log" | awk '{print $1}' | sort -u >"$out/$name.failed" || true
    echo "$name: $(grep '^Summary' "$out/$name.log" || echo 'no summary (crashed?)')"
}

run_suite plain "$root/plain"

mkdir -p "$root/lower" "$root/kmnt" "$root/kupper" "$root/kwork"
mount -t squashfs -o loop,ro "$root/img.sqsh" "$root/lower"
mount -t overlay overlay -o "lowerdir=$root/lower,upperdir=$root/kupper,workdir=$root/kwork" "$root/kmnt"
run_suite kernel-overlay "$root/kmnt/lowerdir"
umount "$root/kmnt"
# Inside the overlay: once in a lower directory (merged), once at the root.
run_suite overlay "$mnt/lowerdir"

sort -u "$out/plain.failed" "$out/kernel-overlay.failed" >"$out/allowed.failed"
extra=$(comm -13 "$out/allowed.failed" "$out/overlay.failed")
echo "failing on squashbox and on the kernel overlayfs (not on a plain dir): $(comm -12 "$out/kernel-overlay.failed" "$out/overlay.failed" | wc -l)"
echo "failing on the kernel overlayfs only: $(comm -23 "$out/kernel-overlay.failed" "$out/overlay.failed" | wc -l)"
grep -q '^Summary' "$out/overlay.log" || { echo "overlay run did not finish; see $out/overlay.log"; exit 1; }
if [[ -n "$extra" ]]; then
    echo "tests failing on squashbox but on neither a plain directory nor the kernel overlayfs:"
    echo "$extra"
    echo "logs: $out"
    exit 1
fi
echo "squashbox overlay: no failure beyond those of a plain directory or the kernel overlayfs (logs: $out)"
