#!/bin/sh
# Installs what is missing, then runs every test (unit and integration; the integration
# tests start private RabbitMQ nodes on free ports and remove them afterwards).
set -eu
cd "$(dirname "$0")/.."
scripts/install.sh
. scripts/env.sh
cargo test "$@"
