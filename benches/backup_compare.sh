#!/usr/bin/env bash
# squashbox backup/restore against the reference pipeline of issue #6:
#   create  = mksquashfs (lz4, the compressor the issue names for the reference) + upload of
#             the image to the same store (+ a small meta object)
#   restore = download the image + squashfuse + fuse-overlayfs, until `ls` of a deep path works
# and squashbox `backup` (default zstd, and --comp lz4) / `restore` (overlay mount: right after
# the create on the same machine, with the local cache wiped (cold), and warm).
#
#   benches/backup_compare.sh                 # both trees, both stores, 3 runs each
#   BENCH_TREES="nm" BENCH_STORES="local" RUNS=1 benches/backup_compare.sh   # quick look
#
# Settings (env):
#   BENCH_TREES   "real nm" (default): real = $REAL_TREE (default /tmp/squashbox-mkfs-bench-tree,
#                 else a copy of /usr/share); nm = generated node_modules-style tree
#   NM_FILES      files in the node_modules-style tree (default 30000)
#   BENCH_STORES  "local s3" (default): s3 needs AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
#                 AWS_SECRET_ACCESS_KEY and SQUASHBOX_TEST_S3_BUCKET (scripts/s3-server.sh)
#   RUNS          runs per measurement (default 3; the median is reported)
#   SQUASHBOX_BIN the binary (default $CARGO_TARGET_DIR/release/squashbox)
#
# Local store: the reference "upload" is a copy into the store directory (fsynced, as the
# squashbox local store fsyncs) plus meta.json; its "download" is a copy out of it.
# S3: the reference uploads/downloads with curl --aws-sigv4 (one PUT / one GET).
# Peak RSS: /usr/bin/time for one-shot commands; VmHWM of the background restore server.
# Needs root, /dev/fuse, mksquashfs, squashfuse, fuse-overlayfs, curl, GNU time.
# Prints a Markdown table per (tree, store) and a ratio summary.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs="${RUNS:-3}"
trees="${BENCH_TREES:-real nm}"
stores="${BENCH_STORES:-local s3}"
nm_files="${NM_FILES:-30000}"
bin="${SQUASHBOX_BIN:-${CARGO_TARGET_DIR:-target}/release/squashbox}"
if [[ ! -x "$bin" ]]; then
    cargo build --release -p squashbox-cli >&2
fi
for tool in mksquashfs squashfuse fuse-overlayfs curl /usr/bin/time fusermount3; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done
[[ $(id -u) -eq 0 && -c /dev/fuse ]] || { echo "needs root and /dev/fuse" >&2; exit 2; }

work="$(mktemp -d /tmp/sqb-bkbench.XXXXXX)"
mnt="$work/mnt"
ref_lower="$work/ref-lower"
cleanup() {
    "$bin" umount "$mnt" >/dev/null 2>&1 || true
    fusermount3 -u "$mnt" >/dev/null 2>&1 || true
    fusermount3 -u "$ref_lower" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
export SQUASHBOX_STATE_DIR="$work/state" SQUASHBOX_CACHE_DIR="$work/cache" TMPDIR="$work/tmp"
mkdir -p "$work/tmp" "$mnt" "$ref_lower"

log() { echo "[$(date -u +%T)] $*" >&2; }
now() { date +%s.%N; }
elapsed() { printf '%.3f' "$(echo "$(now) - $1" | bc -l)"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { echo "scale=2; $1 / $2" | bc -l | sed 's/^\./0./'; }

# ---- trees -------------------------------------------------------------------------------
make_nm_tree() {
    python3 - "$1" "$nm_files" <<'PY'
import json, os, random, sys
root, total = sys.argv[1], int(sys.argv[2])
rnd = random.Random(6)
words = ["function", "return", "const", "let", "require", "module", "exports", "this",
         "if", "else", "for", "var", "null", "undefined", "=>", "{", "}", "(", ")", ";",
         "value", "options", "callback", "err", "data", "index", "length", "push"]
def js(n):
    return " ".join(rnd.choice(words) for _ in range(n)).encode()
made = 0
def write(path, data):
    global made
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    made += 1
pkg = 0
# Packages with nested node_modules (up to 3 levels), lib/ and dist/ dirs, like npm trees.
def package(base, depth):
    global pkg
    pkg += 1
    name = f"pkg-{pkg}"
    d = os.path.join(base, "node_modules", name)
    write(os.path.join(d, "package.json"), json.dumps(
        {"name": name, "version": f"1.{pkg % 17}.{pkg % 5}", "main": "index.js",
         "license": "MIT", "dependencies": {f"dep-{i}": "^1.0.0" for i in range(rnd.randint(0, 6))}},
        indent=2).encode())
    write(os.path.join(d, "index.js"), js(rnd.randint(20, 400)))
    write(os.path.join(d, "README.md"), js(rnd.randint(50, 800)))
    for sub in ("lib", "dist", "lib/utils"):
        for i in range(rnd.randint(1, 6)):
            write(os.path.join(d, sub, f"m{i}.js"), js(rnd.randint(10, 1500)))
    if depth < 3 and rnd.random() < 0.3:
        for _ in range(rnd.randint(1, 3)):
            package(d, depth + 1)
while made < total:
    package(root, 0)
print(made)
PY
}

deep_path() {
    # The deepest directory (relative), for the "usable" probe.
    (cd "$1" && find . -type d -printf '%d %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
}

# ---- stores ------------------------------------------------------------------------------
s3_url() { echo "$AWS_ENDPOINT_URL/$SQUASHBOX_TEST_S3_BUCKET/$1"; }
s3curl() {
    curl -sS --fail --aws-sigv4 "aws:amz:${AWS_REGION:-us-east-1}:s3" \
        --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$@"
}

# ref_upload STORE_KIND KEY FILE / ref_download STORE_KIND KEY FILE / ref_size / ref_delete
ref_upload() {
    case "$1" in
    local)
        mkdir -p "$(dirname "$local_store/$2")"
        cp "$3" "$local_store/$2.tmp" && sync "$local_store/$2.tmp"
        mv "$local_store/$2.tmp" "$local_store/$2"
        ;;
    s3) s3curl -o /dev/null -T "$3" "$(s3_url "$s3_prefix/$2")" ;;
    esac
}
ref_download() {
    case "$1" in
    local) cp "$local_store/$2" "$3" ;;
    s3) s3curl -o "$3" "$(s3_url "$s3_prefix/$2")" ;;
    esac
}
ref_delete() {
    case "$1" in
    local) rm -rf "$local_store/$(dirname "$2")" ;;
    s3) s3curl -o /dev/null -X DELETE "$(s3_url "$s3_prefix/$2")" || true ;;
    esac
}
store_url() {
    case "$1" in
    local) echo "file://$local_store" ;;
    s3) echo "s3://$SQUASHBOX_TEST_S3_BUCKET/$s3_prefix" ;;
    esac
}
local_store="$work/store"
s3_prefix="bench-$$"

# ---- one measurement set -----------------------------------------------------------------
# Globals set by the timed helpers.
secs=0
rss=0

# timed_rss CMD...: run CMD under GNU time; sets secs and rss (KiB).
timed_rss() {
    local out="$work/time.out" start
    start=$(now)
    /usr/bin/time -f '%M' -o "$out" "$@" >"$work/cmd.out"
    secs=$(elapsed "$start")
    rss=$(cat "$out")
}

ours_create() { # STORE COMP -> sets secs rss id bytes
    local comp_args=()
    [[ -n "$2" ]] && comp_args=(--comp "$2")
    timed_rss "$bin" backup "$tree" --store "$(store_url "$1")" "${comp_args[@]}" --json
    id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <"$work/cmd.out")
    bytes=$("$bin" list --store "$(store_url "$1")" --json |
        python3 -c 'import json,sys; print([b["sizeBytes"] for b in json.load(sys.stdin) if b["id"]==sys.argv[1]][0])' "$id")
}

ref_create() { # STORE -> sets secs rss key bytes
    local start
    key="backups/$(python3 -c 'import uuid; print(uuid.uuid4())')/data.sqsh"
    start=$(now)
    /usr/bin/time -f '%M' -o "$work/time.out" \
        mksquashfs "$tree" "$work/tmp/ref.sqsh" -comp lz4 -noappend -quiet -no-progress >/dev/null
    rss=$(cat "$work/time.out")
    ref_upload "$1" "$key" "$work/tmp/ref.sqsh"
    printf '{"id":"ref","sizeBytes":%s}\n' "$(stat -c %s "$work/tmp/ref.sqsh")" >"$work/tmp/meta.json"
    ref_upload "$1" "${key%/data.sqsh}/meta.json" "$work/tmp/meta.json"
    secs=$(elapsed "$start")
    bytes=$(stat -c %s "$work/tmp/ref.sqsh")
    rm -f "$work/tmp/ref.sqsh" "$work/tmp/meta.json"
}

probe() { ls "$mnt/$deep" >/dev/null; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

ours_restore() { # STORE ID COLD(1/0) -> secs rss
    local start
    [[ "$3" == 1 ]] && rm -rf "$SQUASHBOX_CACHE_DIR"
    start=$(now)
    "$bin" restore "$2" --store "$(store_url "$1")" --dir "$mnt" >/dev/null
    probe
    secs=$(elapsed "$start")
    local pid
    pid=$("$bin" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["pid"])')
    rss=$(hwm "$pid")
    "$bin" umount "$mnt"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
}

ref_restore() { # STORE KEY -> secs rss
    local start
    rm -rf "$work/ref-layers" "$work/ref.sqsh"
    mkdir -p "$work/ref-layers/upper" "$work/ref-layers/work"
    start=$(now)
    ref_download "$1" "$2" "$work/ref.sqsh"
    squashfuse "$work/ref.sqsh" "$ref_lower"
    fuse-overlayfs -o "lowerdir=$ref_lower,upperdir=$work/ref-layers/upper,workdir=$work/ref-layers/work" "$mnt" 2>/dev/null
    probe
    secs=$(elapsed "$start")
    # Only the two daemons of this run (other squashfuse processes may exist on the machine).
    local a b ovl i
    ovl=$(pgrep -f -- "upperdir=$work/ref-layers/upper" | head -1)
    a=$(hwm "$(pgrep -f -- "squashfuse $work/ref.sqsh" | head -1)")
    b=$(hwm "$ovl")
    rss=$((a + b))
    fusermount3 -u "$mnt"
    # fuse-overlayfs holds the lower mount until it has exited.
    for ((i = 0; i < 600; i++)); do
        kill -0 "$ovl" 2>/dev/null || break
        sleep 0.05
    done
    fusermount3 -u "$ref_lower"
    rm -f "$work/ref.sqsh"
}

summary=()
bench() { # TREE_LABEL STORE
    local label="$1" store="$2" i
    local c_z=() c_l=() c_r=() r_cold=() r_warm=() r_ref=() r_first=()
    local rss_z=0 rss_l=0 rss_r=0 rss_cold=0 rss_ref=0 b_z=0 b_l=0 b_r=0
    log "$label/$store: create"
    for ((i = 0; i < runs; i++)); do
        ours_create "$store" ""
        c_z+=("$secs"); rss_z=$rss; b_z=$bytes
        # The everyday flow: restore right after creating, on the same machine.
        ours_restore "$store" "$id" 0
        r_first+=("$secs")
        "$bin" delete "$id" --store "$(store_url "$store")" >/dev/null
        ours_create "$store" lz4
        c_l+=("$secs"); rss_l=$rss; b_l=$bytes
        "$bin" delete "$id" --store "$(store_url "$store")" >/dev/null
        ref_create "$store"
        c_r+=("$secs"); rss_r=$rss; b_r=$bytes
        ref_delete "$store" "$key"
        ref_delete "$store" "${key%/data.sqsh}/meta.json"
    done
    log "$label/$store: restore"
    ours_create "$store" ""
    local our_id="$id"
    ref_create "$store"
    local ref_key="$key"
    for ((i = 0; i < runs; i++)); do
        ours_restore "$store" "$our_id" 1
        r_cold+=("$secs"); rss_cold=$rss
        ref_restore "$store" "$ref_key"
        r_ref+=("$secs"); rss_ref=$rss
    done
    for ((i = 0; i < runs; i++)); do
        ours_restore "$store" "$our_id" 0
        r_warm+=("$secs")
    done
    "$bin" delete "$our_id" --store "$(store_url "$store")" >/dev/null
    ref_delete "$store" "$ref_key"
    ref_delete "$store" "${ref_key%/data.sqsh}/meta.json"

    local mz ml mr mc mw mf m1
    mz=$(median "${c_z[@]}"); ml=$(median "${c_l[@]}"); mr=$(median "${c_r[@]}")
    m1=$(median "${r_first[@]}")
    mc=$(median "${r_cold[@]}"); mw=$(median "${r_warm[@]}"); mf=$(median "${r_ref[@]}")
    echo
    echo "### $label, $store store ($files_desc)"
    echo
    echo "| step | squashbox | reference | ratio | peak RSS KiB (ours / ref) |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    echo "| create, zstd (our default) | ${mz} s, ${b_z} B | ${mr} s, ${b_r} B | $(ratio "$mz" "$mr") time, $(ratio "$b_z" "$b_r") bytes | $rss_z / $rss_r (mksquashfs) |"
    echo "| create, lz4 | ${ml} s, ${b_l} B | ${mr} s, ${b_r} B | $(ratio "$ml" "$mr") time, $(ratio "$b_l" "$b_r") bytes | $rss_l / $rss_r |"
    echo "| restore until usable, first after create | ${m1} s | ${mf} s | $(ratio "$m1" "$mf") | - |"
    echo "| restore until usable, cold cache | ${mc} s | ${mf} s | $(ratio "$mc" "$mf") | $rss_cold / $rss_ref |"
    echo "| restore until usable, warm cache | ${mw} s | - | - | - |"
    echo "runs: create zstd ${c_z[*]} | lz4 ${c_l[*]} | ref ${c_r[*]} | restore after create ${r_first[*]} | restore cold ${r_cold[*]} | ref ${r_ref[*]} | warm ${r_warm[*]}"
    summary+=("| $label | $store | $(ratio "$mz" "$mr") | $(ratio "$ml" "$mr") | $(ratio "$b_z" "$b_r") | $(ratio "$b_l" "$b_r") | $(ratio "$m1" "$mf") | $(ratio "$mc" "$mf") | $(echo "$mw * 1000 / 1" | bc) ms |")
}

echo "# backup_compare $(date -u '+%F %T') UTC, $(nproc) cores, $("$bin" --version 2>/dev/null || echo squashbox)"
echo "load at start: $(uptime | sed 's/.*load average: //')"
for t in $trees; do
    case "$t" in
    real)
        tree="${REAL_TREE:-/tmp/squashbox-mkfs-bench-tree}"
        if [[ ! -d "$tree" ]]; then
            tree="$work/usr-share"
            cp -a /usr/share "$tree"
        fi
        label="real tree"
        ;;
    nm)
        tree="$work/nm-tree"
        log "generating node_modules-style tree"
        make_nm_tree "$tree" >/dev/null
        label="node_modules-style tree"
        ;;
    *) echo "unknown tree $t" >&2; exit 2 ;;
    esac
    deep="$(deep_path "$tree")"
    files_desc="$(find "$tree" -type f | wc -l) files, $(du -sb "$tree" | cut -f1) bytes, $tree"
    for s in $stores; do
        if [[ "$s" == s3 && ( -z "${AWS_ENDPOINT_URL:-}" || -z "${SQUASHBOX_TEST_S3_BUCKET:-}" ) ]]; then
            log "skipping S3: run eval \"\$(scripts/s3-server.sh start)\" first"
            continue
        fi
        bench "$label" "$s"
    done
    [[ "$t" == nm ]] && rm -rf "$tree"
done
echo
echo "## summary (ratios squashbox / reference; targets: create <= 0.8, bytes <= 1.0, restore <= 0.5, warm < 100 ms)"
echo
echo "| tree | store | create zstd | create lz4 | bytes zstd | bytes lz4 | restore after create | restore cold | restore warm |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${summary[@]}"
echo
echo "load at end: $(uptime | sed 's/.*load average: //')"
