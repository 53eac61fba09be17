#!/usr/bin/env bash
# Screenshots of the MLflow pages a training job makes (docs/mlflow/*.png):
# a tiny train + retrain on a local SQLite store, a real `mlflow server` on
# it, Debian's chromium headless. Usage: docs/mlflow/screenshots.sh [workdir]
# (run from the repository root, the project installed; ~2 minutes).
set -euo pipefail
out="$(cd "$(dirname "$0")" && pwd)"
work="${1:-$(mktemp -d)}"
port="${MLFLOW_PORT:-5057}"
export GENDETECT_HOME="$work/home" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$work" && cd "$work"
printf 'model: {max_epochs: 2, seed: 0}\n' > tiny.yaml
window=(--since 2024-01-10 --until 2024-01-24)
gendetect simulate --customers 150 --terminals 300 --days 30 --age-groups --out tx.parquet
gendetect train --model vae --data tx.parquet --config tiny.yaml "${window[@]}" --alias champion -q
gendetect retrain --data tx.parquet --models vae,gan --config tiny.yaml "${window[@]}" --seed 1 -q \
  || [ $? -eq 3 ]
mlflow server --backend-store-uri "sqlite:///$GENDETECT_HOME/mlflow.db" --workers 1 \
  --host 127.0.0.1 --port "$port" > server.log 2>&1 &
server=$!
trap 'kill $server' EXIT
until curl -sf "http://127.0.0.1:$port/health" > /dev/null; do sleep 2; done
ids=$(python - <<'PY'
from mlflow import MlflowClient
import os
c = MlflowClient(f"http://127.0.0.1:{os.environ.get('MLFLOW_PORT', '5057')}")
e = c.get_experiment_by_name("gendetect")
runs = c.search_runs([e.experiment_id], order_by=["attributes.start_time ASC"])
train = runs[0].info.run_id
parent = next(r.info.run_id for r in runs if r.data.tags.get("gendetect.job") == "retrain")
model = runs[0].outputs.model_outputs[0].model_id
print(e.experiment_id, train, parent, model)
PY
)
read -r exp train parent model <<< "$ids"
# MLflow 3.17's sidebar switch (GenAI / Model training) is per browser; the
# query parameter opens the classic view whatever the browser chose.
q="?workflowType=machine_learning"
base="http://127.0.0.1:$port/#/experiments/$exp"
shot() {  # name url height
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --virtual-time-budget=20000 \
    --window-size="1400,$3" --screenshot="$work/$1.png" "$2" > /dev/null 2>&1
  python -c "from PIL import Image; Image.open('$work/$1.png').convert('RGB').quantize(64)\
.save('$out/$1.png', optimize=True)"
}
shot run "$base/runs/$train$q" 1700
# More charts than one screen holds stay spinners in a headless window.
shot metrics "$base/runs/$train/model-metrics$q" 1400
shot model-card "$base/runs/$train/artifacts/model_card.md$q" 2600
shot roc "$base/runs/$train/artifacts/plots/roc.png$q" 1000
shot retrain-run "$base/runs/$parent$q" 1700
shot registered-model "http://127.0.0.1:$port/#/models/gendetect$q" 1400
shot logged-model "$base/models/$model$q" 1400
ls -la "$out"/*.png
