#!/usr/bin/env bash
# End-to-end test: the binary reports to a real Sentry-compatible server.
#
# Starts a throw-away Bugsink on loopback and a few fake Hasura servers, runs
# `hasura-metadata-reloader reload` against them, then reads back what Bugsink
# stored and checks it against SPEC.md section 5. Prints one `ok`/`not ok`
# line per check and a summary line; exits 1 when a check failed.
#
# Needs python3 (3.11 or newer, with venv), curl, cargo, and PyPI access for
# the first run. Settings, all optional:
#   BUGSINK_VENV        venv holding Bugsink, reused between runs
#                       (default: <target>/e2e/bugsink-venv)
#   BUGSINK_PIP_SPEC    what pip installs (default: bugsink==2.6.2)
#   E2E_SKIP_BUILD=1    do not run cargo build; use the binaries as they are
#   E2E_RELOADER, E2E_FAKE_HASURA   binaries to test (default: target/debug)
#   E2E_RUST_LOG        RUST_LOG for the binary (default: debug, so that the
#                       secret check covers every log level)
#   E2E_KEEP=1          keep the work directory after a passing run
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/tests/e2e
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
VENV=${BUGSINK_VENV:-$TARGET/e2e/bugsink-venv}
PIP_SPEC=${BUGSINK_PIP_SPEC:-bugsink==2.6.2}
RELOADER=${E2E_RELOADER:-$TARGET/debug/hasura-metadata-reloader}
FAKE=${E2E_FAKE_HASURA:-$TARGET/debug/examples/fake-hasura}
MONITOR=e2e-monitor

passed=0
failed=0
FAKE_PIDS=()
WORK=

say() { printf 'bugsink e2e: %s\n' "$*" >&2; }

ok() {
    passed=$((passed + 1))
    printf 'ok - %s\n' "$1"
}

not_ok() {
    failed=$((failed + 1))
    printf 'not ok - %s: %s\n' "$1" "$2"
}

alive() { # PID: running and not a zombie
    [ -r "/proc/$1/stat" ] || return 1
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ "$state" != Z ]
}

stop_pid() { # PID: ask, then insist
    local pid=$1
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do
        alive "$pid" || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

stop_bugsink() {
    [ -n "$WORK" ] && [ -f "$WORK/server.pid" ] || return 0
    local pid
    pid=$(cat "$WORK/server.pid")
    # SIGINT makes gunicorn stop at once instead of draining workers for 30 s.
    kill -INT "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do
        alive "$pid" || return 0
        sleep 0.1
    done
    say "Bugsink (pid $pid) did not stop; killing it and its worker"
    pkill -KILL -P "$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? pid f
    trap - EXIT INT TERM
    for pid in "${FAKE_PIDS[@]}"; do
        stop_pid "$pid"
    done
    stop_bugsink
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "$rc" -ne 0 ]; then
            for f in "$WORK"/logs/*.err; do
                [ -f "$f" ] || continue
                say "stderr of run $(basename "$f" .err), without debug lines (last 15):"
                grep -v '"level":"\(debug\|trace\)"' "$f" | tail -n 15 >&2 || true
            done
            if [ -f "$WORK/server.log" ]; then
                say "Bugsink server log (last 40 lines):"
                tail -n 40 "$WORK/server.log" >&2
            fi
            say "work directory kept: $WORK"
        elif [ "${E2E_KEEP:-}" = 1 ]; then
            say "work directory kept: $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'say "failed at line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

build() {
    [ "${E2E_SKIP_BUILD:-}" = 1 ] && return 0
    say "building the binary and the fake Hasura"
    (cd "$ROOT" && cargo build --quiet && cargo build --quiet --example fake-hasura)
}

ensure_bugsink() {
    if [ -f "$VENV/.e2e-installed" ] && [ "$(cat "$VENV/.e2e-installed")" = "$PIP_SPEC" ] \
        && [ -x "$VENV/bin/gunicorn" ]; then
        return 0
    fi
    say "installing $PIP_SPEC into $VENV"
    [ -f "$VENV/pyvenv.cfg" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$PIP_SPEC"
    printf '%s\n' "$PIP_SPEC" >"$VENV/.e2e-installed"
}

mark() {
    "$VENV/bin/python" "$HERE/bugsink_read.py" mark "$WORK/db.sqlite3"
}

# start_fake NAME ARGS...: start a fake Hasura, set FAKE_URL to its base URL.
start_fake() {
    local name=$1 line=
    shift
    # Created here: the background job may open them after the first read.
    : >"$WORK/fake/$name.out"
    "$FAKE" --bind 127.0.0.1 --port 0 "$@" \
        >"$WORK/fake/$name.out" 2>"$WORK/fake/$name.err" &
    FAKE_PIDS+=("$!")
    for _ in $(seq 1 100); do
        line=$(head -n 1 "$WORK/fake/$name.out")
        [ -n "$line" ] && break
        alive "$!" || break
        sleep 0.1
    done
    if [ -z "$line" ]; then
        say "fake Hasura '$name' did not print its URL"
        cat "$WORK/fake/$name.err" >&2
        exit 1
    fi
    FAKE_URL=${line%/}
}

# record NAME KIND ENDPOINT OBJECTS BEFORE AFTER: one line for bugsink_check.py.
record() {
    printf '{"name":"%s","kind":"%s","endpoint":"%s","objects":%s,"before":%s,"after":%s}\n' \
        "$1" "$2" "$3" "$4" "$5" "$6" >>"$WORK/runs.jsonl"
}

# reload NAME KIND ENDPOINT EXPECTED_EXIT: run the binary once and record it.
reload() {
    local name=$1 kind=$2 endpoint=$3 expected=$4 before after rc=0 objects=null
    before=$(mark)
    # A clean environment: no SENTRY_*, SLACK_* or HASURA_* from the caller.
    timeout 60 env -i PATH="$PATH" HOME="${HOME:-/}" RUST_BACKTRACE=1 \
        RUST_LOG="${E2E_RUST_LOG:-debug}" \
        "$RELOADER" reload --hasura-endpoint "$endpoint" \
        --hasura-admin-secret "$SECRET" --sentry-dsn "$DSN" --sentry-env e2e \
        --sentry-monitor "$MONITOR" --retries 1 --retry-interval 10ms \
        >"$WORK/logs/$name.out" 2>"$WORK/logs/$name.err" || rc=$?
    after=$(mark)
    if [ "$kind" = inconsistent ]; then
        objects="\"$WORK/objects-$name.json\""
    fi
    record "$name" "$kind" "$endpoint" "$objects" "$before" "$after"
    if [ "$rc" -eq "$expected" ]; then
        ok "$name: reload exits $expected"
    elif [ "$rc" -eq 124 ]; then
        not_ok "$name: reload exits $expected" "still running after 60 s"
    else
        not_ok "$name: reload exits $expected" "exit code $rc"
    fi
}

# fetch_objects NAME ENDPOINT: what the fake says is inconsistent, as Hasura
# words it; bugsink_check.py compares the reports with it.
fetch_objects() {
    curl -fsS -H "X-Hasura-Admin-Secret: $SECRET" -H 'Content-Type: application/json' \
        -d '{"type":"get_inconsistent_metadata","args":{}}' \
        "$2/v1/metadata" >"$WORK/objects-$1.json"
}

build
for bin in "$RELOADER" "$FAKE"; do
    if [ ! -x "$bin" ]; then
        say "missing $bin (run cargo build && cargo build --example fake-hasura)"
        exit 1
    fi
done
ensure_bugsink

started=$SECONDS
mkdir -p "$TARGET/e2e"
WORK=$(mktemp -d "$TARGET/e2e/run.XXXXXX")
mkdir -p "$WORK/logs" "$WORK/fake"
SECRET="e2e-admin-secret-do-not-leak-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$SECRET" >"$WORK/secret"
"$VENV/bin/python" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["package"]["version"])' \
    "$ROOT/Cargo.toml" >"$WORK/version"

say "starting Bugsink"
bash "$HERE/bugsink-up.sh" "$VENV" "$WORK"
DSN=$(cat "$WORK/dsn")

# lasting: one inconsistency that outlives several runs (one Sentry issue).
# other: a different set, whose objects 4 and 5 have no `name` (a new issue).
# denied: expects another secret, so the binary fails with access denied.
# healthy: consistent from the first reload.
start_fake lasting --admin-secret "$SECRET" --inconsistent-reloads always --objects 3
URL_LASTING=$FAKE_URL
start_fake other --admin-secret "$SECRET" --inconsistent-reloads always --objects 5
URL_OTHER=$FAKE_URL
start_fake denied --admin-secret "e2e-another-secret" --inconsistent-reloads always --objects 3
URL_DENIED=$FAKE_URL
start_fake healthy --admin-secret "$SECRET" --inconsistent-reloads 0
URL_HEALTHY=$FAKE_URL

# The harness itself: a known event from Python's SDK must come back.
before=$(mark)
"$VENV/bin/python" "$HERE/bugsink_probe.py" "$DSN"
record probe probe "" null "$before" "$(mark)"

say "running the binary against $URL_LASTING, $URL_OTHER, $URL_DENIED, $URL_HEALTHY"
reload first inconsistent "$URL_LASTING" 1
reload second inconsistent "$URL_LASTING" 1
reload other inconsistent "$URL_OTHER" 1
reload denied failed "$URL_DENIED" 3
reload healthy consistent "$URL_HEALTHY" 0
fetch_objects first "$URL_LASTING"
cp "$WORK/objects-first.json" "$WORK/objects-second.json"
fetch_objects other "$URL_OTHER"

rc=0
(cd "$HERE" && "$VENV/bin/python" -B bugsink_check.py "$WORK") >"$WORK/checks.txt" || rc=$?
cat "$WORK/checks.txt"
passed=$((passed + $(grep -c '^ok - ' "$WORK/checks.txt" || true)))
failed=$((failed + $(grep -c '^not ok - ' "$WORK/checks.txt" || true)))
if [ "$rc" -ne 0 ] && ! grep -q '^not ok - ' "$WORK/checks.txt"; then
    not_ok "read-back" "bugsink_check.py exited $rc"
fi

echo "bugsink e2e: $passed passed, $failed failed ($((SECONDS - started)) s)"
if [ "$failed" -ne 0 ]; then
    exit 1
fi
