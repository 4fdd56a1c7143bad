#!/bin/sh
# A newcomer's first run: installs what is missing, builds warren, runs the quickstart
# scenario on a private RabbitMQ node it starts and stops itself.
set -eu
cd "$(dirname "$0")/.."
scripts/install.sh
. scripts/env.sh
cargo run --release --quiet -- run scenarios/quickstart.toml "$@"
