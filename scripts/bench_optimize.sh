#!/usr/bin/env bash
# Solve time of the placement program at scale: 2,000 services over the 22 priced regions.
# First each service alone (the set search, no capacity), then the fleet with every
# region's vCPUs capped at 80% and at 40% of what the busiest region used without a cap,
# solved by column generation to a 1% gap. Needs `make build`. Prints the figures; the
# JSON stays in $BENCH_DIR (default: a temporary directory, removed at the end).
# BENCH_SERVICES, BENCH_DAYS and BENCH_TIME_LIMIT change the size and the limit.
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
    "$binary" --db "$db" optimize --out "$work/out" --json --solver search > "$work/free.json"
busiest=$(sqlite3 "$db" "SELECT MAX(used) FROM (
    SELECT SUM(h.instances * s.cores) AS used FROM plan_hosts h
    JOIN services s USING (service_id)
    WHERE h.plan_id = (SELECT MAX(plan_id) FROM plans WHERE kind = 'optimizer')
    GROUP BY h.region)")
for share in 0.8 0.4; do
    capacity=$(python3 -c "import math; print(math.floor($share * $busiest))")
    status=0
    /usr/bin/time -f "%e s %M KB" -o "$work/capacity-$share.time" \
        "$binary" --db "$db" optimize --out "$work/out" --json --capacity-vcpus "$capacity" \
        --mip-gap 0.01 --time-limit "$limit" > "$work/capacity-$share.json" \
        2> "$work/capacity-$share.err" || status=$?
    echo "$share $capacity $status" >> "$work/capacities"
done

python3 - "$work" "$services" <<'PY'
import json, sys
work, services = sys.argv[1], sys.argv[2]
def line(name):
    return open(f"{work}/{name}.time").read().strip()
free = json.load(open(f"{work}/free.json"))
print(f"{services} services x 22 regions")
print(f"without capacity: whole command {line('free')}, "
      f"solve {free['timings']['solve_seconds']:.1f} s over {free['solver']['programs']} programs "
      f"({free['solver']['method']}), status {free['solver']['status']}")
for row in open(f"{work}/capacities"):
    share, capacity, status = row.split()
    if status != "0":
        print(f"{share} of the busiest region, {capacity} vCPUs: exit {status}, {line('capacity-' + share)}")
        print(open(f"{work}/capacity-{share}.err").read().strip().splitlines()[-1])
        continue
    capped = json.load(open(f"{work}/capacity-{share}.json"))
    solver = capped["solver"]
    search = solver["capacity_search"]
    optimizer = capped["plans"]["optimizer"]
    cost, world = optimizer["monthly_cost_usd"], optimizer["world"]["monthly_cost_usd"]
    print(f"{share} of the busiest region, {capacity} vCPUs: whole command {line('capacity-' + share)}, "
          f"solve {capped['timings']['solve_seconds']:.1f} s, {solver['columns']} columns, "
          f"{search['chosen']} chosen (callees first {search['callees_first_objective']}, "
          f"rounds {search['rounds_objective']:.0f} over {search['rounds']}, "
          f"settled: {search['rounds_settled']}), "
          f"status {solver['status']}, program objective {search['program_objective']:.0f}, "
          f"bound {solver['bound']:.0f}, gap {solver['gap']:.2e}, "
          f"objective with own callee hosts {solver['objective']:.0f}, "
          f"cost {cost:.0f} USD/month predicted and {world:.0f} in the world model")
PY
