#!/usr/bin/env bash
# Makes tests/fixtures/latency_reference.json: the test RMSE of Python LightGBM and XGBoost
# (hist) on the matrix and split that `placewise train` uses for the default fleet. Run
# from the repository root after `make build`, with the packages of requirements.txt:
#   python3 -m pip install -r scripts/reference/requirements.txt
#   bash scripts/reference/make_latency_fixture.sh
set -euo pipefail

binary=target/release/placewise
export RUST_LOG=warn
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$binary" --db "$work/fleet.db" generate >/dev/null
"$binary" --db "$work/fleet.db" train --out "$work/out" --export-matrix "$work/matrix.csv" >/dev/null
python3 scripts/reference/latency_reference.py "$work/matrix.csv" tests/fixtures/latency_reference.json
echo "wrote tests/fixtures/latency_reference.json" >&2
