#!/bin/sh
# Re-vendor the UI's JavaScript dependencies from web/package-lock.json (the one command to rebuild):
#   sh web/vendor.sh
# There is no bundler: the UI is plain ES modules; this only copies uPlot's files out of the npm package.
# tests/integration/test_ui_assets.py checks the copies match the locked package byte for byte.
set -eu
cd "$(dirname "$0")"
npm ci --ignore-scripts --no-audit --no-fund
cp node_modules/uplot/dist/uPlot.esm.js node_modules/uplot/dist/uPlot.min.css ../server/ui_assets/vendor/
cp node_modules/uplot/LICENSE ../server/ui_assets/vendor/uPlot.LICENSE
