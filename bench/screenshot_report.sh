#!/usr/bin/env bash
# Open a report page in headless Chromium (Debian package `chromium`) with networking disabled, the
# way a reader on a locked-down cluster or with a CI artifact sees it, and screenshot it (or print its
# DOM after scripts ran, with OUT = -).
# Usage: bench/screenshot_report.sh [reports/run/index.html] [bench/results/report.png | -] [WIDTHxHEIGHT]
#   e.g. bench/screenshot_report.sh reports/validation/data_docs/index.html bench/results/data_docs_offline.png 1280x900
# Offline = a fresh network namespace with no interfaces but loopback (unshare -n, when permitted),
# plus a resolver that resolves nothing and a proxy that refuses, so no request leaves the machine.
set -euo pipefail
html=${1:-reports/run/index.html}
out=${2:-bench/results/report.png}
size=${3:-1280,2400}
[ -f "$html" ] || { echo "no such report: $html" >&2; exit 1; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "chromium not found (apt-get install -y chromium)" >&2; exit 1; }
netns=()
if unshare -n true 2>/dev/null; then netns=(unshare -n); fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
if [ "$out" = "-" ]; then
  mode=(--dump-dom)
else
  mkdir -p "$(dirname "$out")"
  mode=(--screenshot="$(realpath -m "$out")")
fi
"${netns[@]}" "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --proxy-server=127.0.0.1:9 --host-resolver-rules="MAP * ~NOTFOUND" --virtual-time-budget=5000 \
  --user-data-dir="$profile" --window-size="${size/x/,}" \
  "${mode[@]}" "file://$(realpath "$html")" 2>/dev/null
[ "$out" = "-" ] && exit 0
[ -s "$out" ] || { echo "screenshot failed: $out not written" >&2; exit 1; }
echo "$out"
