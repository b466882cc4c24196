#!/usr/bin/env bash
# Start a throw-away Bugsink (a Sentry-compatible server) on loopback.
#
# usage: bugsink-up.sh VENV_DIR WORK_DIR
#
# VENV_DIR must hold an installed Bugsink (see bugsink.sh). WORK_DIR is created
# and receives the instance: bugsink_conf.py, db.sqlite3, snappea.sqlite3, the
# ingest directory, server.log, and the files `dsn`, `port` and `server.pid`.
# Stop it with `kill "$(cat WORK_DIR/server.pid)"`.
#
# Migrating an empty database takes about 8 s, so a migrated database with one
# project is kept next to the venv, per Bugsink version, and copied into each
# instance. BUGSINK_DB_TEMPLATE overrides where that copy lives.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 VENV_DIR WORK_DIR" >&2
    exit 2
fi
VENV=$(cd "$1" && pwd)
mkdir -p "$2"
WORK=$(cd "$2" && pwd)
PY="$VENV/bin/python"

version=$("$VENV/bin/bugsink-show-version")
TEMPLATE=${BUGSINK_DB_TEMPLATE:-"$VENV/db-template-$version"}

# Settings shared by the template and the instances, appended to the
# generated configuration (a Python file, so later assignments win).
overrides() { # DIR PORT
    cat <<CONF

# --- overrides for the end-to-end test ---
BUGSINK["BASE_URL"] = "http://127.0.0.1:$2"
DATABASES["default"]["NAME"] = "$1/db.sqlite3"
DATABASES["snappea"]["NAME"] = "$1/snappea.sqlite3"
BUGSINK["INGEST_STORE_BASE_DIR"] = "$1/ingestion"
# No calls to bugsink.com: the test machines have no network.
BUGSINK["PHONEHOME"] = False
# Keep raw envelopes: attachments and check-ins are visible only there.
BUGSINK["KEEP_ENVELOPES"] = 1000
# Digest inside the ingest request, so a 200 means the event is stored.
SNAPPEA["TASK_ALWAYS_EAGER"] = True
CONF
}

manage() { # DIR ARGS...
    local dir=$1
    shift
    (cd "$dir" && DJANGO_SETTINGS_MODULE=bugsink_conf PYTHONPATH="$dir" \
        "$VENV/bin/bugsink-manage" "$@")
}

build_template() {
    # Global, not local: the EXIT trap reads it after the function returned.
    tmp=$(mktemp -d "$TEMPLATE.tmp.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && "$VENV/bin/bugsink-create-conf" --template=local \
        --host=127.0.0.1 --port=1 >/dev/null)
    mv "$tmp/bugsink_conf.py" "$tmp/bugsink_conf.base.py"
    { cat "$tmp/bugsink_conf.base.py"; overrides "$tmp" 1; } >"$tmp/bugsink_conf.py"
    manage "$tmp" migrate --no-input -v 0 --skip-checks
    manage "$tmp" migrate snappea --database=snappea --no-input -v 0 --skip-checks
    manage "$tmp" shell --no-imports -v 0 -c '
from projects.models import Project
Project.objects.create(name="e2e")
'
    rm -rf "$tmp/ingestion" "$tmp/__pycache__"
    # Another run may have built it meanwhile; either copy is good.
    mv -T "$tmp" "$TEMPLATE" 2>/dev/null || rm -rf "$tmp"
}

if [ ! -f "$TEMPLATE/db.sqlite3" ]; then
    echo "bugsink-up: migrating a template database into $TEMPLATE" >&2
    build_template
fi
cp "$TEMPLATE/db.sqlite3" "$TEMPLATE/snappea.sqlite3" "$WORK/"

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_ready() { # PORT PID
    for _ in $(seq 1 300); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$1/health/ready" 2>/dev/null; then
            return 0
        fi
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# A free port may be taken again before gunicorn binds it: try a few.
for attempt in 1 2 3; do
    port=$(free_port)
    { cat "$TEMPLATE/bugsink_conf.base.py"; overrides "$WORK" "$port"; } >"$WORK/bugsink_conf.py"

    # --no-control-socket: gunicorn 26 otherwise shares ~/.gunicorn/gunicorn.ctl
    # between all instances of the same user.
    (cd "$WORK" && DJANGO_SETTINGS_MODULE=bugsink_conf PYTHONPATH="$WORK" \
        exec "$VENV/bin/gunicorn" --bind "127.0.0.1:$port" --workers 1 \
        --threads 2 --no-control-socket --access-logfile - bugsink.wsgi \
        >>"$WORK/server.log" 2>&1) &
    pid=$!
    echo "$pid" >"$WORK/server.pid"
    if wait_ready "$port" "$pid"; then
        echo "$port" >"$WORK/port"
        "$PY" - "$WORK/db.sqlite3" "$port" >"$WORK/dsn" <<'PYEOF'
import sqlite3, sys
pk, key = sqlite3.connect(sys.argv[1]).execute(
    "SELECT id, sentry_key FROM projects_project WHERE name = 'e2e'").fetchone()
print(f"http://{key.replace('-', '')}@127.0.0.1:{sys.argv[2]}/{pk}")
PYEOF
        exit 0
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "bugsink-up: server on port $port did not become ready (try $attempt)" >&2
done
tail -n 40 "$WORK/server.log" >&2
exit 1
