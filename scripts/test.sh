#!/usr/bin/env bash
# The one test command of squashbox: prepares the machine (idempotently), then runs
# formatting, lint and every test of the workspace. CI runs exactly this (via .ci/run).
#
#   scripts/test.sh            # everything
#   scripts/test.sh -p squashbox-format   # extra args are passed to `cargo test`
#
# Environment:
#   CI=true                 tests needing root/FUSE/loop devices fail instead of skipping
#   SQUASHBOX_CACHE         persistent cache dir (default /var/cache/squashbox); the cargo
#                           target dir lives there so a fresh clone reuses compiled deps
#   CARGO_TARGET_DIR        overrides the target dir entirely
#   SQUASHBOX_SKIP_SETUP=1  skip the machine preparation (packages, devices, users)
#
# Each prerequisite is one function below; add new ones there and call them from `setup`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo_root=$(pwd)

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
section_start=$SECONDS
section() {
    local now=$SECONDS
    if [[ -n "${current_section:-}" ]]; then
        echo "==> done: $current_section ($((now - section_start)) s)"
    fi
    current_section="$1"
    section_start=$now
    echo
    echo "================================================================================"
    echo "==> $1"
    echo "================================================================================"
}

is_root() { [[ $(id -u) -eq 0 ]]; }

warn() { echo "test.sh: warning: $*" >&2; }

# ---------------------------------------------------------------------------------------------
# Prerequisites (one function each; all idempotent)
# ---------------------------------------------------------------------------------------------

# Debian packages the tests use as oracles and peers.
APT_PACKAGES=(
    squashfs-tools   # mksquashfs/unsquashfs: reference writer/reader
    fuse3            # fusermount3, /etc/fuse.conf
    squashfuse       # reference FUSE reader
    fuse-overlayfs   # reference overlay
    attr             # getfattr/setfattr
    git
    time             # /usr/bin/time for memory figures
    kmod             # modprobe (loop, squashfs, fuse)
    util-linux       # mount, umount, losetup
    passwd           # useradd
)

ensure_apt_packages() {
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed"; then
            missing+=("$pkg")
        fi
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        echo "apt packages: all present"
        return
    fi
    if ! is_root; then
        warn "missing packages (need root to install): ${missing[*]}"
        return
    fi
    echo "apt packages: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

ensure_fuse() {
    if ! is_root; then
        [[ -c /dev/fuse ]] || warn "/dev/fuse missing"
        return
    fi
    grep -qw fuse /proc/filesystems || modprobe fuse 2>/dev/null || true
    if [[ ! -c /dev/fuse ]]; then
        echo "creating /dev/fuse"
        mknod -m 0666 /dev/fuse c 10 229
    fi
    # Let the unprivileged `tests` user mount FUSE too (pjdfstest, non-root tests).
    chmod 0666 /dev/fuse || true
    if [[ -f /etc/fuse.conf ]] && ! grep -q '^user_allow_other' /etc/fuse.conf; then
        echo "user_allow_other" >>/etc/fuse.conf
    fi
    echo "fuse: /dev/fuse ready"
}

ensure_loop_devices() {
    if ! is_root; then
        return
    fi
    grep -qw squashfs /proc/filesystems || modprobe squashfs 2>/dev/null || true
    [[ -e /dev/loop-control ]] || modprobe loop 2>/dev/null || true
    if [[ ! -e /dev/loop-control ]]; then
        echo "creating /dev/loop-control"
        mknod -m 0660 /dev/loop-control c 10 237 || warn "cannot create /dev/loop-control"
    fi
    # Without udev, nodes for loop devices the kernel allocates on demand never appear:
    # create a pool of them (tests mount several images in parallel).
    local n created=0
    for n in $(seq 0 31); do
        if [[ ! -e /dev/loop$n ]]; then
            mknod -m 0660 "/dev/loop$n" b 7 "$n" && created=$((created + 1))
        fi
    done
    echo "loop: /dev/loop0..31 present ($created created)"
}

ensure_test_user() {
    if ! is_root; then
        return
    fi
    if ! id tests >/dev/null 2>&1; then
        echo "creating user 'tests'"
        useradd --create-home --shell /bin/bash tests
    else
        echo "user 'tests': present"
    fi
}

# Hook (backup): start the S3 server the backup tests need, export its env, stop it at exit.
# e.g.:  eval "$(scripts/s3-server.sh start)"; trap 'scripts/s3-server.sh stop' EXIT
# (Owned by the backup engineer.) SeaweedFS on 127.0.0.1:18333 with SigV4 auth; the exported
# AWS_* / SQUASHBOX_TEST_S3* variables make the backup tests run their S3 variants.
start_s3_server() {
    local env_out
    if env_out="$(SQUASHBOX_S3_FRESH=1 bash "$repo_root/scripts/s3-server.sh" start)"; then
        eval "$env_out"
        # On failure, show the server's own errors: an S3 test failing with a bare
        # "500 InternalError" is otherwise undiagnosable after the run.
        trap 'status=$?; ((status == 0)) || bash "$repo_root/scripts/s3-server.sh" errors
              bash "$repo_root/scripts/s3-server.sh" stop' EXIT
        echo "s3: SeaweedFS at $AWS_ENDPOINT_URL, bucket $SQUASHBOX_TEST_S3_BUCKET"
    else
        warn "S3 server did not start: S3 backup tests skip (and fail under CI=true)"
    fi
}

# Hook (overlay): build/install pjdfstest for the overlay POSIX conformance tests.
ensure_pjdfstest() {
    if command -v pjdfstest >/dev/null 2>&1 || [[ -x "$HOME/.cargo/bin/pjdfstest" ]]; then
        echo "pjdfstest: present"
    elif is_root; then
        echo "installing pjdfstest (cargo install pjdfstest --locked)"
        cargo install pjdfstest --locked || warn "pjdfstest install failed: its test skips (fails under CI=true)"
    fi
}

ensure_cargo_cache() {
    if [[ -z "${CARGO_TARGET_DIR:-}" ]]; then
        local cache="${SQUASHBOX_CACHE:-/var/cache/squashbox}"
        if mkdir -p "$cache/target" 2>/dev/null && [[ -w "$cache/target" ]]; then
            export CARGO_TARGET_DIR="$cache/target"
        else
            warn "cannot use $cache; building in $repo_root/target"
        fi
    fi
    echo "cargo target dir: ${CARGO_TARGET_DIR:-$repo_root/target}"
}

# Free space (GiB, rounded down) of the filesystem holding $1.
free_gib() { df -P -k "$1" | awk 'NR == 2 { print int($4 / 1048576) }'; }

# Keep the persistent cargo cache bounded. A fresh clone rebuilds every workspace crate anyway
# (new source mtimes), so their old artifacts are dead weight: each commit's test binaries add
# gigabytes, and a nearly full disk makes the S3 server (SeaweedFS) turn its volumes read-only,
# which fails the S3 tests with "500 InternalError". Third-party artifacts are kept: they are
# keyed by Cargo.lock and reused. If the cache still exceeds its budget, it is dropped.
prune_cargo_cache() {
    local target="${CARGO_TARGET_DIR:-$repo_root/target}" profile_dir stems=() f stem
    [[ -d "$target" ]] || return 0
    for f in "$repo_root"/tests/*.rs "$repo_root"/benches/*.rs "$repo_root"/crates/*/tests/*.rs \
        "$repo_root"/crates/*/examples/*.rs "$repo_root"/crates/*/benches/*.rs; do
        [[ -e "$f" ]] && stems+=("$(basename "$f" .rs)")
    done
    for profile_dir in "$target/debug" "$target/release"; do
        [[ -d "$profile_dir" ]] || continue
        rm -rf "$profile_dir/incremental"
        rm -f "$profile_dir"/deps/squashbox* "$profile_dir"/deps/libsquashbox* \
            "$profile_dir"/examples/*
        for stem in "${stems[@]}"; do
            rm -f "$profile_dir/deps/$stem"-*
        done
    done
    local used_gib budget_gib="${SQUASHBOX_CACHE_BUDGET_GIB:-12}"
    used_gib=$(du -s -k "$target" | awk '{ print int($1 / 1048576) }')
    if ((used_gib > budget_gib)); then
        echo "cargo cache: ${used_gib} GiB exceeds ${budget_gib} GiB; removing it"
        rm -rf "$target"
    fi
    echo "cargo cache: $(du -sh "$target" 2>/dev/null | cut -f1) after pruning"
}

# The suite writes a few GiB (images, trees, the S3 store); refuse to start without room rather
# than fail later with errors that do not name the cause.
ensure_disk_space() {
    local need_gib=10 dir free
    for dir in "${TMPDIR:-/tmp}" "${CARGO_TARGET_DIR:-$repo_root}"; do
        mkdir -p "$dir" 2>/dev/null || true
        free=$(free_gib "$dir")
        echo "disk: ${free} GiB free on the filesystem of $dir"
        if ((free < need_gib)); then
            echo "test.sh: only ${free} GiB free for $dir; the tests need at least ${need_gib} GiB." >&2
            echo "test.sh: free some space (for example an old cargo target dir) and run again." >&2
            exit 1
        fi
    done
}

setup() {
    ensure_cargo_cache
    prune_cargo_cache
    ensure_disk_space
    if [[ "${SQUASHBOX_SKIP_SETUP:-}" == 1 ]]; then
        echo "setup skipped (SQUASHBOX_SKIP_SETUP=1)"
    else
        ensure_apt_packages
        ensure_fuse
        ensure_loop_devices
        ensure_test_user
        ensure_pjdfstest
        start_s3_server
    fi
}

# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
total_start=$SECONDS
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
# Incremental data only pays off for repeated edits in one checkout; here it costs gigabytes.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
echo "squashbox tests: $(date -u +%FT%TZ), CI=${CI:-}, uid=$(id -u), $(nproc) cores"

section "setup"
setup
cargo --version
rustc --version

section "cargo fmt --check"
cargo fmt --all -- --check

section "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

section "cargo build (binaries used by integration tests)"
cargo build --workspace --bins

section "cargo test"
cargo test --workspace --no-fail-fast "$@"

section "finished"
echo "==> all checks passed in $((SECONDS - total_start)) s"
