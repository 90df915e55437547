#!/usr/bin/env bash
# Screenshot a run report in headless Chromium (Debian package `chromium`).
# Usage: bench/screenshot_report.sh [reports/run/index.html] [bench/results/report.png] [WIDTHxHEIGHT]
set -euo pipefail
html=${1:-reports/run/index.html}
out=${2:-bench/results/report.png}
size=${3:-1280,2400}
[ -f "$html" ] || { echo "no such report: $html" >&2; exit 1; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "chromium not found (apt-get install -y chromium)" >&2; exit 1; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
mkdir -p "$(dirname "$out")"
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --window-size="${size/x/,}" \
  --screenshot="$(realpath -m "$out")" "file://$(realpath "$html")" 2>/dev/null
[ -s "$out" ] || { echo "screenshot failed: $out not written" >&2; exit 1; }
echo "$out"
