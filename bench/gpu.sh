#!/usr/bin/env bash
# LightGCN and GF-CF on Gowalla with --device cuda, sized for a GPU machine lent for ~15 min:
# ~8 min in all (LightGCN: as many epochs as fit in LIGHTGCN_S = 300 s, each with its time and
# test recall@20; then one GF-CF fit + evaluation), then a summary table.
#
#   bench/gpu.sh                       # on the GPU machine, in the repo root
#   DEVICE=cpu LIGHTGCN_S=20 GFCF_S=60 bench/gpu.sh   # a short CPU check of the arguments
#
# Data: $GOWALLA (a folder with train.txt and test.txt), else ../shared/data/gowalla, else
# .gpu-data/gowalla (../shared does not travel to a lent machine: copy the two files into
# .gpu-data/gowalla, ignore it in .git/info/exclude and carry it). Python: $PYTHON, else
# .venv/bin/python, else python3, whichever imports torch, scipy and rich (the GPU image's
# python3 does; engine.models.benchmark needs nothing else, so no polars/duckdb there). With
# none, a venv with system packages is made and wheels in .whl/ (if any) installed offline.
# Results: "$OUT" if set, else bench/results/gpu-<time>/ (lightgcn.jsonl, gfcf.json, logs).
set -euo pipefail
cd "$(dirname "$0")/.."

START=$SECONDS
TOTAL_S=${TOTAL_S:-480}          # hard budget for the whole script
LIGHTGCN_S=${LIGHTGCN_S:-300}    # LightGCN training budget (stops after the epoch that passes it)
GFCF_S=${GFCF_S:-120}            # GF-CF fit + evaluation limit
DEVICE=${DEVICE:-cuda}
RESULTS=${OUT:-bench/results/gpu-$(date -u +%Y%m%dT%H%M%S)}
mkdir -p "$RESULTS"

left() { echo $((TOTAL_S - (SECONDS - START))); }

DATA=${GOWALLA:-}
for d in ../shared/data/gowalla .gpu-data/gowalla; do
    [ -n "$DATA" ] && break
    [ -f "$d/train.txt" ] && DATA=$d
done
if [ -z "$DATA" ] || [ ! -f "$DATA/train.txt" ] || [ ! -f "$DATA/test.txt" ]; then
    echo "gpu.sh: no Gowalla train.txt/test.txt (set GOWALLA=DIR or copy them to .gpu-data/gowalla)" >&2
    exit 1
fi

usable() { "$1" -c 'import torch, scipy, rich, numpy' >/dev/null 2>&1; }
PY=""
for p in ${PYTHON:-} .venv/bin/python python3; do
    if command -v "$p" >/dev/null 2>&1 && usable "$p"; then PY=$p; break; fi
done
if [ -z "$PY" ]; then
    echo "gpu.sh: no python with torch+scipy+rich; making .venv-gpu (offline, wheels from .whl/)"
    python3 -m venv --system-site-packages .venv-gpu
    if ls .whl/*.whl >/dev/null 2>&1; then
        .venv-gpu/bin/pip install -q --no-index --no-deps .whl/*.whl
    fi
    PY=.venv-gpu/bin/python
    usable "$PY" || { echo "gpu.sh: .venv-gpu still lacks torch/scipy/rich" >&2; exit 1; }
fi
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
echo "gpu.sh: python $PY, data $DATA, device $DEVICE, results $RESULTS, budget ${TOTAL_S}s"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
    torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

# one model through engine.models.benchmark.run (what `bookrec bench lightgcn` calls), each
# evaluation printed and appended to a JSON-lines file as it happens; a trained model stops
# after the first epoch that ends past its time budget
cat > "$RESULTS/run_model.py" <<'PY'
import json, sys, time
from pathlib import Path
from engine.models import benchmark

data, model, budget, out, device = sys.argv[1:6]
budget, t0 = float(budget), time.perf_counter()
overrides = {"device": device}
if model == "lightgcn":  # paper settings; epochs is a ceiling, the budget stops it
    overrides |= {"epochs": 1000, "eval_every": 1, "patience": 10**6, "progress": False}

class Budget(Exception):
    pass

def on_eval(e):
    e = {**e, "wall_s": time.perf_counter() - t0}
    print(f"{model} epoch {e['epoch']:>3}  recall@20 {e['recall@20']:.4f}  "
          f"ndcg@20 {e['ndcg@20']:.4f}  train {e.get('seconds', 0):.2f}s  "
          f"eval {e.get('eval_seconds', 0):.2f}s  wall {e['wall_s']:.0f}s", flush=True)
    with open(out, "a") as f:
        f.write(json.dumps(e, default=str) + "\n")
    if model == "lightgcn" and e["wall_s"] > budget:
        raise Budget

try:
    r = benchmark.run(Path(data) / "train.txt", Path(data) / "test.txt", model, overrides,
                      on_eval=on_eval)
    print(f"{model}: fit {r['fit_seconds']:.1f}s total {r['total_seconds']:.1f}s "
          f"peak RSS {r['peak_rss_gb']:.2f} GB", flush=True)
except Budget:
    print(f"{model}: stopped at the {budget:.0f}s budget", flush=True)
PY

rc_l=0
L_S=$(( $(left) - GFCF_S - 30 < LIGHTGCN_S ? $(left) - GFCF_S - 30 : LIGHTGCN_S ))
timeout -k 10 $((L_S + 60)) "$PY" "$RESULTS/run_model.py" "$DATA" lightgcn "$L_S" \
    "$RESULTS/lightgcn.jsonl" "$DEVICE" 2>&1 | tee "$RESULTS/lightgcn.log" || rc_l=$?
rc_g=0
G_S=$(( $(left) - 10 < GFCF_S ? $(left) - 10 : GFCF_S ))
if [ "$G_S" -gt 10 ]; then
    timeout -k 10 "$G_S" "$PY" "$RESULTS/run_model.py" "$DATA" gfcf "$G_S" \
        "$RESULTS/gfcf.jsonl" "$DEVICE" 2>&1 | tee "$RESULTS/gfcf.log" || rc_g=$?
else
    echo "gpu.sh: no time left for GF-CF" | tee "$RESULTS/gfcf.log"
fi

"$PY" - "$RESULTS" "$rc_l" "$rc_g" <<'PY' | tee "$RESULTS/summary.md"
import json, statistics, sys
from pathlib import Path
res, rc_l, rc_g = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
def rows(name):
    p = res / f"{name}.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []
lg, gf = rows("lightgcn"), rows("gfcf")
print("| model | epochs | median s/epoch (train) | median eval s | last recall@20 | best recall@20 (epoch) | exit |")
print("|---|---:|---:|---:|---:|---:|---:|")
if lg:
    best = max(lg, key=lambda e: e["recall@20"])
    print(f"| lightgcn | {len(lg)} | {statistics.median(e['seconds'] for e in lg):.2f} | "
          f"{statistics.median(e['eval_seconds'] for e in lg):.2f} | {lg[-1]['recall@20']:.4f} | "
          f"{best['recall@20']:.4f} ({best['epoch']}) | {rc_l} |")
else:
    print(f"| lightgcn | 0 | - | - | - | - | {rc_l} |")
if gf:
    e = gf[-1]
    print(f"| gfcf | - | fit {e['seconds']:.2f} | {e['eval_seconds']:.2f} | {e['recall@20']:.4f} | "
          f"(published 0.1849) | {rc_g} |")
else:
    print(f"| gfcf | - | - | - | - | - | {rc_g} |")
PY
echo "gpu.sh: done in $((SECONDS - START))s; results in $RESULTS"
