#!/usr/bin/env bash
# Many-clients benchmark: warren with many publishers and consumers against one private
# RabbitMQ node on loopback, for what each client costs warren.
#
# Prints, per run: delivered msg/s, warren's peak resident memory (VmHWM) in all and per
# client, its CPU per delivered message ((user + system CPU during the workload) /
# deliveries), and the ledgers' memory in all and per message.
#
# Usage: benches/clients.sh PUBLISHERS CONSUMERS RATE [DURATION] [CONNECTIONS] [QUEUES] [THREADS]
#   RATE: msg/s over all publishers; DURATION: 20s; CONNECTIONS: per role (default: one per
#   client); QUEUES: 1; THREADS: 1. Example, the issue-17 figures:
#     benches/clients.sh 500 500 5000 20s
#     benches/clients.sh 5000 5000 10000 20s 500 50
# WARREN=path/to/warren measures that binary instead of this tree's release build (an
# older one: leave QUEUES and THREADS at 1, which it may not know).
# Every run's folder stays under target/clients-bench/.
set -euo pipefail

publishers=${1:?publishers}
consumers=${2:?consumers}
rate=${3:?rate}
duration=${4:-20s}
connections=${5:-}
queues=${6:-1}
threads=${7:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
work="$root/target/clients-bench"
warren=${WARREN:-$root/target/release/warren}

[[ -n "${WARREN:-}" ]] || cargo build --release --quiet --manifest-path "$root/Cargo.toml"
mkdir -p "$work"
chmod 755 "$work"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# A state file of this run's own: two runs at once each stop the node they started (one
# shared file kept only the later node, and the earlier one outlived its run).
export WARREN_STATE_FILE="$work/broker-$$.json"
stop_node() { "$warren" broker down >/dev/null 2>&1 || true; }
trap stop_node EXIT
stop_node
"$warren" broker up --detach >"$work/broker-up.log"
uri=$(grep -o 'amqp://[^ ]*' "$work/broker-up.log" | head -1)
uri=${uri/guest:\*\*\*\*@/guest:guest@}

name="clients-${publishers}x${consumers}-${rate}"
extra_topology=""
[[ $queues == 1 ]] || extra_topology="queues = $queues"
extra_threads=""
[[ $threads == 1 ]] || extra_threads="threads = $threads"
pub_connections=""
cons_connections=""
if [[ -n $connections ]]; then
    pub_connections="connections = $connections"
    cons_connections="connections = $connections"
fi
cat >"$work/$name.toml" <<EOF
name = "$name"
duration = "$duration"
drain_timeout = "60s"
$extra_threads
[broker]
mode = "external"
uris = ["$uri"]
[topology]
queue = { type = "classic", durable = true }
$extra_topology
[publishers]
count = $publishers
rate = $rate
size = 100
max_in_flight = 64
$pub_connections
[consumers]
count = $consumers
prefetch = 50
multiple_ack_every = 10
$cons_connections
[report]
formats = ["csv", "json"]
EOF

out="$work/$name-$(date +%s)"
"$warren" run "$work/$name.toml" --quiet --out "$out" &
pid=$!
peak_kb=0
while kill -0 "$pid" 2>/dev/null; do
    kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    [[ -n $kb && $kb -gt $peak_kb ]] && peak_kb=$kb
    sleep 0.5
done
wait "$pid" || true

json="$out/summary.json"
python3 - "$json" "$peak_kb" "$publishers" "$consumers" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
peak_kb, publishers, consumers = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
clients = publishers + consumers
t = summary["verdict"]["totals"]
h = summary["harness"]
delivered = max(t["delivered"], 1)
print(f"{publishers} + {consumers} clients: delivered {summary['throughput']['delivered_per_s']:.0f} msg/s "
      f"({t['delivered']} messages, lost confirmed {t['lost_confirmed']}); "
      f"peak RSS {peak_kb / 1024:.1f} MB ({peak_kb / clients:.1f} KB per client); "
      f"CPU {h['cpu_us_per_delivery']:.1f} µs per delivered message "
      f"({h['cpu_user_s']:.1f} s user, {h['cpu_system_s']:.1f} s system); "
      f"ledgers {h['ledger_bytes'] / 1e6:.2f} MB ({h['ledger_bytes'] / delivered:.2f} bytes per message)")
PY
