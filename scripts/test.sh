#!/bin/sh
# Installs what is missing, then runs every test (unit and integration; the integration
# tests start private RabbitMQ nodes on free ports and remove them afterwards, and render
# the HTML report in headless Chromium, which is installed here when missing).
set -eu
cd "$(dirname "$0")/.."
scripts/install.sh
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    echo "test.sh: installing chromium (the HTML report test renders the page headless)"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium
fi
. scripts/env.sh
cargo test "$@"
