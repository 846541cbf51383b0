#!/usr/bin/env bash
# Wall time and peak memory of `placewise run` on the default fleet, beside a reference run
# in the same script: the same four stages as four commands (generate, train, optimize,
# experiment), each reading what the one before stored. Both give the same results. The
# reference does not overlap the store with training, and it reads the database back.
# Each is run BENCH_RUNS times (default 5) in turn, and the medians are compared. Needs
# `make build`. Prints the figures and the load average before and after.
set -euo pipefail

export RUST_LOG=warn
runs=${BENCH_RUNS:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
binary=$PWD/target/release/placewise
cd "$work"

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -a -o run.time "$binary" --db run.db run >/dev/null 2>>log ||
        { cat log >&2; exit 1; }
    : > stages.time
    for stage in generate train optimize experiment; do
        /usr/bin/time -f "%e %M" -a -o stages.time "$binary" --db stages.db "$stage" \
            >/dev/null 2>>log || { cat log >&2; exit 1; }
    done
    awk '{ wall += $1; if ($2 > peak) peak = $2 } END { print wall, peak }' stages.time \
        >> reference.time
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - <<'PY'
import statistics
def read(name):
    rows = [line.split() for line in open(name)]
    return [float(wall) for wall, _ in rows], [int(peak) / 1024 for _, peak in rows]
run_wall, run_peak = read("run.time")
ref_wall, ref_peak = read("reference.time")
print(f"placewise run, {len(run_wall)} runs: median {statistics.median(run_wall):.2f} s "
      f"(min {min(run_wall):.2f}, max {max(run_wall):.2f}), peak {max(run_peak):.0f} MB")
print(f"four stage commands, {len(ref_wall)} runs: median {statistics.median(ref_wall):.2f} s "
      f"(min {min(ref_wall):.2f}, max {max(ref_wall):.2f}), peak {max(ref_peak):.0f} MB")
print(f"run / four commands: {statistics.median(run_wall) / statistics.median(ref_wall):.2f}")
PY
