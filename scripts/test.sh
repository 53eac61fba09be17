#!/usr/bin/env bash
# The test command: starts what the tests need (Redis on 127.0.0.1), runs the
# linter and the whole suite. `.ci/run` runs exactly this (via `make test`).
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

ruff check .
# Dependencies point one way (pyproject.toml [tool.importlinter]).
lint-imports --no-cache
# One intra-op thread per process: small models on a busy 2-core machine are
# many times slower with torch's default thread count.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
python -m pytest "$@"
