#!/usr/bin/env bash
# Fit time of the latency model against Python LightGBM and XGBoost (hist), on the same
# matrices in one run: the default fleet's exported matrix, and a 1,000,000-row matrix
# drawn from its rows with replacement. Needs `make build` and the packages of
# scripts/reference/requirements.txt. Prints one table; the JSON it reads stays in
# $BENCH_DIR (default: a temporary directory, removed at the end).
set -euo pipefail

export RUST_LOG=warn
threads=${BENCH_THREADS:-2}
work=${BENCH_DIR:-$(mktemp -d)}
[ -n "${BENCH_DIR:-}" ] || trap 'rm -rf "$work"' EXIT
binary=target/release/placewise

"$binary" --db "$work/fleet.db" generate >/dev/null
"$binary" --db "$work/fleet.db" train --folds 0 --out "$work/out" \
    --export-matrix "$work/default.csv" >/dev/null
python3 - "$work/default.csv" "$work/million.csv" <<'PY'
import csv, random, sys
source, target = sys.argv[1], sys.argv[2]
with open(source, newline="") as handle:
    rows = list(csv.reader(handle))
header, body = rows[0], rows[1:]
split = header.index("split")
rng = random.Random(42)
with open(target, "w", newline="") as handle:
    out = csv.writer(handle, lineterminator="\n")
    out.writerow(header)
    for k in range(1_000_000):
        row = list(rng.choice(body))
        row[split] = "test" if k % 5 == 0 else "train"
        out.writerow(row)
PY

for matrix in default million; do
    BENCH_MATRIX="$work/$matrix.csv" BENCH_THREADS=$threads \
        cargo bench --quiet --locked --bench latency_fit > "$work/$matrix-ours.json"
    python3 scripts/reference/latency_reference.py "$work/$matrix.csv" \
        "$work/$matrix-reference.json" --threads "$threads"
done

python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
print(f"{'matrix':<10} {'train rows':>10} {'placewise s':>12} {'LightGBM s':>11} {'XGBoost s':>10} {'vs LightGBM':>12} {'vs XGBoost':>11}")
for matrix in ("default", "million"):
    ours = json.load(open(f"{work}/{matrix}-ours.json"))
    ref = json.load(open(f"{work}/{matrix}-reference.json"))
    lgb = ref["lightgbm"]["fit_seconds"]
    xgb = ref["xgboost_hist"]["fit_seconds"]
    mine = ours["fit_seconds"]
    print(f"{matrix:<10} {ours['train_rows']:>10} {mine:>12.3f} {lgb:>11.3f} {xgb:>10.3f} {mine / lgb:>11.2f}x {mine / xgb:>10.2f}x")
PY
