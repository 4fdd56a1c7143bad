#!/bin/sh
# The whole suite: installs what is missing, then runs every test, the fast tier and the
# broker tier (cargo's `broker-tests` feature). The broker tests start private RabbitMQ
# nodes on free loopback ports and remove them afterwards, render the HTML report in
# headless Chromium and scrape a run with a Prometheus server (both installed here when
# missing). The AMQP client's (crates/warren-amqp) own broker tests connect to one more private node,
# started here with `warren broker up` and stopped when the tests end, whatever their
# outcome. Before them, scripts/check-deploy.sh validates deploy/kubernetes/ and the
# Dockerfile's build stage. Plain `cargo test` is the fast tier alone: no broker needed.
#
#   scripts/test.sh [--rabbitmq VERSION] [cargo test arguments]
#
# --rabbitmq 4.0 is the version leg: every private node (the tests' and the client's) runs
# RabbitMQ 4.0.5 from a Debian 13 root that scripts/rabbitmq.sh builds once and caches
# (root only: the nodes run in it with chroot).
#
# The broker tests mostly wait on their timelines, so libtest gets a thread for each
# (RUST_TEST_THREADS, 64 unless set) and each test takes its share of the machine first:
# WARREN_TEST_UNITS (5 unless set) bounds the nodes running at once (tests/support).
set -eu
cd "$(dirname "$0")/.."
rabbitmq=""
if [ "${1:-}" = "--rabbitmq" ]; then
    [ $# -ge 2 ] || { echo "usage: scripts/test.sh [--rabbitmq VERSION] [cargo test arguments]" >&2; exit 2; }
    rabbitmq="$2"
    shift 2
fi
scripts/install.sh
if [ -n "$rabbitmq" ]; then
    exports="$(scripts/rabbitmq.sh "$rabbitmq")"
    eval "$exports"
    export WARREN_RABBITMQ_ROOT
    echo "test.sh: private nodes run RabbitMQ $(cat "$WARREN_RABBITMQ_ROOT/.warren-rabbitmq") from $WARREN_RABBITMQ_ROOT"
fi
# Test-only tools: chromium renders the HTML report headless; a Prometheus server scrapes
# `warren run --metrics-listen`.
test_tools=""
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    test_tools="$test_tools chromium"
fi
if [ ! -x /usr/bin/prometheus ] && ! command -v prometheus >/dev/null 2>&1; then
    test_tools="$test_tools prometheus"
fi
if [ -n "$test_tools" ]; then
    echo "test.sh: installing$test_tools (for the HTML report and live metrics tests)"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $test_tools
fi
. scripts/env.sh
# The broker tests run many at once, each with nodes and warren processes on pipes: the
# usual soft limit of 1,024 open files ran out for an ordinary user ("Too many open
# files"), so the soft limit is raised to the hard one, as warren raises its own.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Built as the tests build it (dev-dependencies' features unified), so nothing is built
# twice; the warren binary the tests run is among it.
cargo test --quiet --no-run --features broker-tests
# deploy/: the Kubernetes manifests validate, and the Dockerfile copies what the build needs.
scripts/check-deploy.sh
warren_bin="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug/warren"
state_dir="$(mktemp -d)"
broker() { WARREN_STATE_FILE="$state_dir/broker.json" "$warren_bin" broker "$@"; }
# How long each broker test held its share of the machine; the longest are printed at the
# end, whatever the outcome.
times="$state_dir/test-times.tsv"
export WARREN_TEST_TIMES="$times"
longest() {
    if [ -s "$times" ]; then
        echo "test.sh: the longest broker tests (seconds, load, test):"
        sort -rn "$times" | head -n 10 | sed 's/^/  /'
    fi
}
stop_broker() { longest; broker down >/dev/null 2>&1 || true; rm -rf "$state_dir"; }
trap stop_broker EXIT
trap 'exit 130' INT TERM
broker up --detach > "$state_dir/up.txt"
port="$(sed -n 's|.*amqp://[^@]*@127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$state_dir/up.txt" | head -n 1)"
if [ -z "$port" ]; then
    echo "test.sh: the private node for the AMQP client's tests did not start:" >&2
    cat "$state_dir/up.txt" >&2
    exit 3
fi
# The test account of the AMQP client's tests (amqprs's, upstream).
broker ctl -- add_user user bitnami >/dev/null
broker ctl -- set_permissions -p / user '.*' '.*' '.*' >/dev/null
echo "test.sh: the AMQP client's tests use a private node on 127.0.0.1:$port"

: "${RUST_TEST_THREADS:=64}"
export RUST_TEST_THREADS
AMQPRS_TEST_PORT="$port" cargo test --features broker-tests "$@"
