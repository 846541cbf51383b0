#!/usr/bin/env bash
# Reproduces the third-party files of assets/vendor/ from the npm registry at pinned
# versions and checks them against assets/vendor/SHA256SUMS. The dashboard embeds these
# files in the binary, so a build needs neither npm nor the network; run this script only
# to check the committed files or to upgrade a version (then update SHA256SUMS and
# assets/vendor/README.md).
#
#   bash scripts/vendor_assets.sh           # fetch, compare, and report any difference
#   bash scripts/vendor_assets.sh --write   # fetch and overwrite assets/vendor/
set -euo pipefail
cd "$(dirname "$0")/.."

ECHARTS=6.1.0
TOPOJSON_CLIENT=3.1.0
WORLD_ATLAS=2.0.2

write=0
if [ "${1:-}" = "--write" ]; then
    write=1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(
    cd "$work"
    npm init -y >/dev/null
    npm install --no-audit --no-fund --ignore-scripts --silent \
        "echarts@$ECHARTS" "topojson-client@$TOPOJSON_CLIENT" "world-atlas@$WORLD_ATLAS"
)
modules="$work/node_modules"
fetched="$work/vendor"
mkdir -p "$fetched"
cp "$modules/echarts/dist/echarts.min.js" "$fetched/echarts.min.js"
cp "$modules/echarts/LICENSE" "$fetched/echarts.LICENSE"
cp "$modules/echarts/NOTICE" "$fetched/echarts.NOTICE"
cp "$modules/echarts/licenses/LICENSE-d3" "$fetched/echarts-d3.LICENSE"
# echarts.min.js bundles zrender, the version that echarts pins.
cp "$modules/zrender/LICENSE" "$fetched/zrender.LICENSE"
cp "$modules/topojson-client/dist/topojson-client.min.js" "$fetched/topojson-client.min.js"
cp "$modules/topojson-client/LICENSE" "$fetched/topojson-client.LICENSE"
cp "$modules/world-atlas/countries-110m.json" "$fetched/countries-110m.json"
cp "$modules/world-atlas/LICENSE" "$fetched/world-atlas.LICENSE"

if [ $write -eq 1 ]; then
    cp "$fetched"/* assets/vendor/
    (cd assets/vendor && sha256sum -- *.js *.json *.LICENSE *.NOTICE > SHA256SUMS)
    echo "vendor: wrote assets/vendor/ and its SHA256SUMS"
    exit 0
fi
(cd "$fetched" && sha256sum --check --quiet "$OLDPWD/assets/vendor/SHA256SUMS")
echo "vendor: assets/vendor/ matches npm (echarts $ECHARTS, topojson-client $TOPOJSON_CLIENT, world-atlas $WORLD_ATLAS)"
