#!/bin/bash
# Runs a scenario as N warren worker processes on this machine and merges their results:
# what a Kubernetes Indexed Job does on many machines (deploy/kubernetes/), tried locally.
#
#   scripts/workers.sh SCENARIO N [extra `warren run` flags...]
#
# A scenario with private nodes: worker 0 starts them (on a free port) and injects the node
# faults; the other workers are pointed at them with --broker-uri once they answer. An
# external scenario: every worker uses its broker. Each worker writes its folder under
# $WARREN_WORKERS_OUT (default reports/workers-RUNID/worker-I, its console in worker-I.log);
# `warren merge` writes the whole run to .../merged and the script exits with merge's code.
# WARREN=path/to/warren uses that binary instead of building one.
set -eu
if [ $# -lt 2 ]; then
    echo "usage: scripts/workers.sh SCENARIO N [warren run flags...]" >&2
    exit 2
fi
scenario="$1"
count="$2"
shift 2
case "$count" in
    ''|*[!0-9]*) echo "workers.sh: N must be a number, not '$count'" >&2; exit 2 ;;
esac
if [ "$count" -lt 1 ]; then echo "workers.sh: N must be at least 1" >&2; exit 2; fi
cd "$(dirname "$0")/.."
if [ -z "${WARREN:-}" ]; then
    . scripts/env.sh
    cargo build --release --quiet --bin warren
    WARREN="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/warren"
fi
"$WARREN" validate "$scenario" >/dev/null
run_id="${WARREN_RUN_ID:-local-$(date +%s)-$$}"
out="${WARREN_WORKERS_OUT:-reports/workers-$run_id}"
mkdir -p "$out"

# Private nodes (the default broker) are started by worker 0 on a free port.
broker_args=()
leader_args=()
if ! grep -Eq '^[[:space:]]*mode[[:space:]]*=[[:space:]]*"external"' "$scenario"; then
    nodes="$(sed -n 's/^[[:space:]]*nodes[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p' "$scenario" | head -n 1)"
    nodes="${nodes:-1}"
    port=""
    for _ in $(seq 1 50); do
        candidate=$(( 20000 + RANDOM % 20000 ))
        free=yes
        for i in $(seq 0 $(( nodes - 1 ))); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$(( candidate + i ))") 2>/dev/null; then free=no; fi
        done
        if [ "$free" = yes ]; then port="$candidate"; break; fi
    done
    if [ -z "$port" ]; then echo "workers.sh: no free port found" >&2; exit 3; fi
    leader_args=(--port "$port")
    for i in $(seq 0 $(( nodes - 1 ))); do
        broker_args+=(--broker-uri "amqp://guest:guest@127.0.0.1:$(( port + i ))/%2F")
    done
fi

pids=()
stop_all() { for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done; }
# Ctrl-C stops every worker and waits for them: worker 0 stops the nodes it started.
trap 'stop_all; wait; exit 130' INT TERM
run_worker() {
    local index="$1"
    shift
    "$WARREN" run "$scenario" --worker "$index/$count" --run-id "$run_id" \
        --out "$out/worker-$index" --progress plain "$@" > "$out/worker-$index.log" 2>&1 &
    pids+=("$!")
}
run_worker 0 "${leader_args[@]}" "$@"
if [ "${#broker_args[@]}" -gt 0 ] && [ "$count" -gt 1 ]; then
    # The others need worker 0's nodes: wait until they answer (or worker 0 ends).
    for _ in $(seq 1 240); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
        if ! kill -0 "${pids[0]}" 2>/dev/null; then break; fi
        sleep 0.5
    done
fi
for index in $(seq 1 $(( count - 1 ))); do
    run_worker "$index" "${broker_args[@]}" "$@"
done
status=0
for index in "${!pids[@]}"; do
    code=0
    wait "${pids[$index]}" || code=$?
    echo "worker $index/$count exited with $code ($out/worker-$index.log)"
    if [ "$code" -ne 0 ]; then status=$code; fi
done
# The folder of worker folders: the merge expects worker-0 to worker-(N-1) in it.
code=0
"$WARREN" merge "$out" --out "$out/merged" || code=$?
if [ "$code" -eq 0 ] && [ "$status" -ne 0 ]; then code=$status; fi
exit "$code"
