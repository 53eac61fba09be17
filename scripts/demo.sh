#!/usr/bin/env bash
# The main job on embedded defaults: simulate transactions, train a VAE and a
# GAN as MLflow runs (SQLite store under .gendetect/), register the better one
# as `champion`, then serve it on 127.0.0.1:8000 with a local API key
# (.gendetect/secrets/api.key, made once).
set -euo pipefail
cd "$(dirname "$0")/.."

export GENDETECT_HOME="${GENDETECT_HOME:-.gendetect}"
DAYS="${DEMO_DAYS:-75}"
DATA="$GENDETECT_HOME/data/transactions.parquet"
HOST="${GENDETECT_HOST:-127.0.0.1}"
PORT="${GENDETECT_PORT:-8000}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

# --age-groups: a protected attribute the model card reports flag and false-positive
# rates for (never a model input).
gendetect simulate --days "$DAYS" --seed 0 --age-groups --out "$DATA"
# Exit codes: 0 promoted, 3 the champion was kept (a rerun of the demo), else failed.
status=0
gendetect retrain --data "$DATA" --models vae,gan || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 3 ]; then
  exit "$status"
fi

# The API refuses to start without a key (or an explicit GENDETECT_AUTH=disabled):
# unless the caller configured auth, the demo makes a local key once, readable by
# the owner only, and serves with it (one key with every scope).
mkdir -p "$GENDETECT_HOME"
KEY_FILE="$(cd "$GENDETECT_HOME" && pwd)/secrets/api.key"
KEY_HEADER="-H 'X-API-Key: <your key>' "
if [ "${GENDETECT_AUTH:-required}" = disabled ]; then
  KEY_HEADER=""
elif [ -z "${GENDETECT_API_KEY:-}${GENDETECT_API_KEYS:-}" ]; then
  if [ ! -s "$KEY_FILE" ]; then
    mkdir -p "$(dirname "$KEY_FILE")"
    chmod 700 "$(dirname "$KEY_FILE")"
    (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > "$KEY_FILE")
    echo "A new API key for this demo, kept in $KEY_FILE (mode 0600): $(cat "$KEY_FILE")"
  fi
  GENDETECT_API_KEY="$(cat "$KEY_FILE")"
  export GENDETECT_API_KEY
  KEY_HEADER="-H \"X-API-Key: \$(cat '$KEY_FILE')\" "
fi

cat <<MSG

------------------------------------------------------------------------------
The champion model is registered. Starting the API on http://$HOST:$PORT
(OpenAPI docs at http://$HOST:$PORT/docs). In another terminal, try:

  curl -s -X POST http://$HOST:$PORT/v1/score -H 'Content-Type: application/json' $KEY_HEADER\\
    -d '{"transaction_id": 1, "timestamp": "2024-02-15T03:12:00", "customer_id": 42, "terminal_id": 977, "amount": 1250.0}'

MLflow UI on the same store (runs, metrics, plots, registry):

  $(pwd)/.venv/bin/mlflow ui --backend-store-uri sqlite:///$(cd "$GENDETECT_HOME" && pwd)/mlflow.db --port 5000

Stop the API with Ctrl-C.
------------------------------------------------------------------------------
MSG
exec gendetect serve --host "$HOST" --port "$PORT"
