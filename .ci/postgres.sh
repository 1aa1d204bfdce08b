#!/usr/bin/env bash
# A throwaway PostgreSQL server for the storage tests.
#
#   eval "$(.ci/postgres.sh start)"   # prints: export PROBESEG_TEST_POSTGRES_URL=postgresql+psycopg://...
#   python -m pytest tests/storage
#   .ci/postgres.sh stop
#
# Installs nothing: it expects Debian's `postgresql` package (initdb and pg_ctl in
# /usr/lib/postgresql/*/bin; `.ci/run` installs it with apt). The cluster lives in a fresh temporary
# folder owned by the `postgres` user, listens on 127.0.0.1 only, on a free port, with trust auth for
# local connections; `stop` shuts it down and deletes the folder. Only the export line goes to stdout.
set -euo pipefail

STATE_FILE="${PROBESEG_PG_STATE:-${TMPDIR:-/tmp}/probeseg-postgres.state}"
DB_NAME="probeseg_test"

log() { echo "postgres.sh: $*" >&2; }
die() { log "$*"; exit 1; }

pg_bin() {
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    [ -n "$dir" ] && [ -x "$dir/initdb" ] || die "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin; install them with: apt-get install -y postgresql"
    echo "$dir"
}

# Run a command as the cluster owner: `postgres` when we are root (initdb refuses root), else ourselves.
as_owner() {
    if [ "$(id -u)" = "0" ]; then
        if command -v runuser >/dev/null 2>&1; then
            runuser -u postgres -- "$@"
        else
            su -s /bin/sh postgres -c "$(printf '%q ' "$@")"
        fi
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
    if [ -f "$STATE_FILE" ]; then
        die "a server from an earlier start is recorded in $STATE_FILE; run '$0 stop' first"
    fi
    local bin dir port
    bin="$(pg_bin)"
    if [ "$(id -u)" = "0" ]; then
        id postgres >/dev/null 2>&1 || die "user 'postgres' does not exist; install the postgresql package"
    fi
    dir="$(mktemp -d "${TMPDIR:-/tmp}/probeseg-pg.XXXXXX")"
    chmod 700 "$dir"
    if [ "$(id -u)" = "0" ]; then chown postgres:postgres "$dir"; fi
    port="$(free_port)"
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; rm -rf "$dir"; die "initdb failed"; }
    # fsync off: a throwaway test cluster need not survive an OS crash (client crashes are still safe).
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c full_page_writes=off -c max_connections=300" start >&2 \
        || { cat "$dir/server.log" >&2 || true; rm -rf "$dir"; die "pg_ctl start failed"; }
    printf 'DIR=%q\nPORT=%q\nBIN=%q\n' "$dir" "$port" "$bin" >"$STATE_FILE"
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres "$DB_NAME" >&2 \
        || { stop; die "createdb failed"; }
    log "PostgreSQL running on 127.0.0.1:$port (data in $dir)"
    echo "export PROBESEG_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:$port/$DB_NAME"
}

stop() {
    if [ ! -f "$STATE_FILE" ]; then
        log "no running test server recorded ($STATE_FILE missing); nothing to stop"
        return 0
    fi
    local DIR PORT BIN
    # shellcheck disable=SC1090
    . "$STATE_FILE"
    if [ -d "$DIR/data" ]; then
        as_owner "$BIN/pg_ctl" -D "$DIR/data" -m fast -w -t 60 stop >&2 || log "pg_ctl stop failed (already stopped?)"
    fi
    rm -rf "$DIR"
    rm -f "$STATE_FILE"
    log "stopped and removed $DIR"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
