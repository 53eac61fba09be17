#!/usr/bin/env bash
# The test command: starts what the tests need (Redis on 127.0.0.1), makes
# sure PostgreSQL on 127.0.0.1:5432 answers and has the test database, runs
# the linters and the whole suite. `.ci/run` runs exactly this (via `make test`).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "starting redis-server on 127.0.0.1:6379"
  mkdir -p /tmp/gendetect-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/gendetect-redis --logfile /tmp/gendetect-redis/redis.log
  for _ in $(seq 1 50); do
    redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break
    sleep 0.1
  done
fi

# PostgreSQL: the store tests run against it and must fail, not skip, when it
# is missing (GENDETECT_REQUIRE_POSTGRES). The machine runs one (trust auth,
# user postgres); start it if it has stopped.
PG_HOST=127.0.0.1 PG_PORT=5432 PG_USER=postgres PG_TEST_DB=gendetect_test
if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 50); do
      pg_isready -q -h "$PG_HOST" -p "$PG_PORT" && break
      sleep 0.2
    done
  fi
fi
if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then
  echo "error: PostgreSQL is not reachable on $PG_HOST:$PG_PORT (the store tests need it)" >&2
  exit 1
fi
if ! psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$PG_TEST_DB'" | grep -q 1; then
  createdb -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$PG_TEST_DB"
fi
export GENDETECT_TEST_POSTGRES_URL="postgresql://$PG_USER@$PG_HOST:$PG_PORT/$PG_TEST_DB"
export GENDETECT_REQUIRE_POSTGRES=1

# Chromium: the analyst console's browser tests drive Debian's package
# through Playwright (never a browser download) and fail, not skip, without it.
export GENDETECT_CHROMIUM="${GENDETECT_CHROMIUM:-/usr/bin/chromium}" PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if [ ! -x "$GENDETECT_CHROMIUM" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium (the console's browser tests need it)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
if [ ! -x "$GENDETECT_CHROMIUM" ]; then
  echo "error: no Chromium at $GENDETECT_CHROMIUM (apt-get install -y chromium; the console tests need it)" >&2
  exit 1
fi

ruff check .
# Dependencies point one way (pyproject.toml [tool.importlinter]).
lint-imports --no-cache
# One intra-op thread per process: small models on a busy 2-core machine are
# many times slower with torch's default thread count.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# The slowest tests are listed at the end, to keep the suite within ~15 min.
python -m pytest --durations=25 "$@"
