#!/usr/bin/env bash
# Solve time of the placement program at scale: 2,000 services over the 22 priced regions,
# first without a capacity limit (one program per service), then with every region's vCPUs
# capped at 80% of what the busiest region used in that plan (one fleet program, 1% gap).
# Needs `make build`. Prints the figures; the JSON stays in $BENCH_DIR (default: a
# temporary directory, removed at the end). BENCH_SERVICES and BENCH_DAYS change the size.
set -euo pipefail

export RUST_LOG=warn
services=${BENCH_SERVICES:-2000}
days=${BENCH_DAYS:-7}
limit=${BENCH_TIME_LIMIT:-60}
work=${BENCH_DIR:-$(mktemp -d)}
[ -n "${BENCH_DIR:-}" ] || trap 'rm -rf "$work"' EXIT
binary=target/release/placewise
db="$work/fleet.db"

"$binary" --db "$db" generate --services "$services" --days "$days" --regions all-priced >/dev/null
"$binary" --db "$db" train --folds 0 --out "$work/out" >/dev/null

/usr/bin/time -f "%e s %M KB" -o "$work/free.time" \
    "$binary" --db "$db" optimize --out "$work/out" --json > "$work/free.json"
capacity=$(sqlite3 "$db" "SELECT CAST(0.8 * MAX(used) AS INTEGER) FROM (
    SELECT SUM(h.instances * s.cores) AS used FROM plan_hosts h
    JOIN services s USING (service_id)
    WHERE h.plan_id = (SELECT MAX(plan_id) FROM plans WHERE kind = 'optimizer')
    GROUP BY h.region)")
status=0
/usr/bin/time -f "%e s %M KB" -o "$work/capacity.time" \
    "$binary" --db "$db" optimize --out "$work/out" --json --capacity-vcpus "$capacity" \
    --mip-gap 0.01 --time-limit "$limit" > "$work/capacity.json" 2> "$work/capacity.err" \
    || status=$?

python3 - "$work" "$services" "$capacity" "$status" <<'PY'
import json, sys
work, services, capacity, status = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
free = json.load(open(f"{work}/free.json"))
print(f"{services} services x 22 regions")
print(f"without capacity: {open(work + '/free.time').read().strip()} for the whole command, "
      f"solve {free['timings']['solve_seconds']:.1f} s over {free['solver']['programs']} programs, "
      f"status {free['solver']['status']}, gap {free['solver']['gap']:.2e}")
if status == 0:
    capped = json.load(open(f"{work}/capacity.json"))
    print(f"with {capacity} vCPUs per region: {open(work + '/capacity.time').read().strip()}, "
          f"solve {capped['timings']['solve_seconds']:.1f} s, status {capped['solver']['status']}, "
          f"gap {capped['solver']['gap']:.2e}")
else:
    print(f"with {capacity} vCPUs per region: exit {status}, {open(work + '/capacity.time').read().strip()}")
    print(open(f"{work}/capacity.err").read().strip().splitlines()[-1])
PY
