#!/usr/bin/env bash
# Start Redis, PostgreSQL and an S3-compatible object store (moto's server, from the dev
# dependencies) on loopback for the tests (when installed) and print the `export` lines the
# test suite reads. Idempotent: services already up are reused.
#   eval "$(scripts/services.sh)"
set -euo pipefail
state=${TFTSWEEP_SERVICES_DIR:-/tmp/tftsweep-services}
redis_port=${TFTSWEEP_TEST_REDIS_PORT:-6391}
pg_port=${TFTSWEEP_TEST_PG_PORT:-5441}
s3_port=${TFTSWEEP_TEST_S3_PORT:-5451}
python=${TFTSWEEP_PYTHON:-.venv/bin/python}
mkdir -p "$state"

if command -v redis-server >/dev/null 2>&1; then
  if ! redis-cli -h 127.0.0.1 -p "$redis_port" ping >/dev/null 2>&1; then
    redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
      --daemonize yes --dir "$state" --logfile "$state/redis.log" >/dev/null
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  echo "export TFTSWEEP_TEST_REDIS_URL=redis://127.0.0.1:$redis_port/0"
fi

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -n "$pgbin" ] && [ -x "$pgbin/initdb" ]; then
  pgdata="$state/pg"
  as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    mkdir -p "$pgdata"
    [ "$(id -u)" = 0 ] && chown postgres "$pgdata"
    as_pg "$pgbin/initdb" -D "$pgdata" -A trust -U tftsweep >/dev/null
  fi
  if ! as_pg "$pgbin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    as_pg "$pgbin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w \
      -o "-p $pg_port -k $pgdata -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
  fi
  echo "export TFTSWEEP_TEST_DATABASE_URL=postgresql+psycopg://tftsweep@127.0.0.1:$pg_port/postgres"
fi

up() { "$python" -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" "$1" 2>/dev/null; }
# A working S3 server answers GET / (its bucket list) with 200. One started from another
# checkout whose virtual environment was deleted still listens but answers 500 (its lazy
# imports fail): every S3 test would then fail, so it is stopped and started again from here.
healthy() {
  "$python" -c "import http.client,sys; c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=5); c.request('GET', '/'); sys.exit(c.getresponse().status != 200)" "$1" 2>/dev/null
}
listener() { ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n 1; }
if [ -x "$python" ] && "$python" -c "import moto.server, flask_cors" 2>/dev/null; then
  if up "$s3_port" && ! healthy "$s3_port"; then
    stale=$(listener "$s3_port" || true)  # ss may be missing: the pid file is the fallback
    [ -n "$stale" ] || stale=$(cat "$state/moto.pid" 2>/dev/null || true)
    if [ -n "$stale" ]; then kill "$stale" 2>/dev/null || true; fi
    for _ in $(seq 50); do up "$s3_port" || break; sleep 0.1; done
    if up "$s3_port"; then
      echo "services.sh: port $s3_port answers but is not a working S3 server; stop it or set TFTSWEEP_TEST_S3_PORT" >&2
      exit 1
    fi
  fi
  if ! up "$s3_port"; then
    # Detached (its own session, no inherited output): the caller's $(...) returns at once.
    setsid "$python" -m moto.server -H 127.0.0.1 -p "$s3_port" </dev/null >"$state/moto.log" 2>&1 &
    echo $! >"$state/moto.pid"
    for _ in $(seq 100); do healthy "$s3_port" && break; sleep 0.1; done
  fi
  echo "export TFTSWEEP_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port"
fi
