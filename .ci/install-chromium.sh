#!/bin/sh
# Install headless Chromium for the report test (tests/test_report.py opens the run's report.html,
# takes a screenshot and reads the rendered page). Run as root; idempotent: safe to run again.
#  - apt-installs Debian's `chromium` and a font (fonts-dejavu-core: without any font the page renders
#    as empty boxes) when missing;
#  - checks that it starts headless with the flags the test uses (no sandbox: CI runs as root).
set -eu
[ "$(id -u)" -eq 0 ] || { echo "install-chromium.sh: run as root" >&2; exit 1; }

missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$missing fonts-dejavu-core"
if [ -n "$missing" ]; then
    echo "install-chromium.sh: apt-installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends $missing
else
    echo "install-chromium.sh: chromium and a font already installed"
fi

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
if out=$(timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$profile" --dump-dom 'data:text/html,<p id="ok">ok</p>' 2>/dev/null) \
        && printf '%s' "$out" | grep -q 'id="ok"'; then
    echo "install-chromium.sh: $(chromium --version 2>/dev/null) renders headless"
else
    echo "install-chromium.sh: warning: headless chromium did not render a test page" >&2
fi
