#!/usr/bin/env bash
# End-to-end load benchmark: warren against one private RabbitMQ node on loopback.
#
# Setups (the issue-8 reference setup): 100-byte persistent messages, a durable classic
# queue, confirm window 64, prefetch 200, a multiple ack every 50 deliveries;
#   1+1 and 4+4 publishers+consumers as fast as possible, with and without --no-verify;
#   1+1 at a fixed 5,000 msg/s, for the end-to-end latency the harness adds.
# Each run lasts DURATION (20 s) and is repeated RUNS (3) times, the setups taking turns
# (forward, then backward; SETTLE seconds between runs, 5 by default);
# the table gives the median and the spread (min..max) of delivered msg/s, of the client's CPU per delivered message
# ((user + system CPU of the warren process during the workload) / deliveries) and of the
# p50 end-to-end latency.
#
# Usage: benches/e2e.sh [DURATION] [RUNS] [SETUP...]   (needs rabbitmq-server: scripts/install.sh)
#   SETUP: b1x1, b1x1:--no-verify, b4x4, b4x4:--no-verify, b1x1-5k (default: all five);
#   b1x1-tls, b4x4-tls: the same over amqps, against a second private node that speaks
#   TLS only (`broker up --tls`: TLS 1.3, ECDSA P-256), started beside the plain one;
#   java1x1, java4x4, java1x1-5k: the same setups driven by the Java reference client
#   (benches/java-reference/Reference.java: the RabbitMQ Java client with PerfTest's loop),
#   on the same node, for a same-machine reference; it needs a JDK and Debian's
#   librabbitmq-client-java (installed through apt when missing and run as root).
# Every run's folder stays under target/e2e-bench/ (summary.json, report.html, ...).
# A flag --metrics-listen=ADDR (say b4x4:--metrics-listen=127.0.0.1:19464) serves live
# metrics during the run, scraped every second by curl: the cost of --metrics-listen.
# WARREN=path/to/warren measures that binary instead of this tree's release build (to
# compare two versions on the same node in one sitting).
set -euo pipefail

duration=${1:-20s}
runs=${2:-3}
setups=("${@:3}")
[[ ${#setups[@]} -gt 0 ]] || setups=("b1x1:" "b1x1:--no-verify" "b4x4:" "b4x4:--no-verify" "b1x1-5k:")
root=$(cd "$(dirname "$0")/.." && pwd)
work="$root/target/e2e-bench"
warren=${WARREN:-$root/target/release/warren}
state="$work/broker.json"

[[ -n "${WARREN:-}" ]] || cargo build --release --quiet --manifest-path "$root/Cargo.toml"
rm -rf "$work"
mkdir -p "$work"
chmod 755 "$work"

# One node for every run (the same broker, so runs differ only in the client).
export WARREN_STATE_FILE="$state"
stop_node() { "$warren" broker down >/dev/null 2>&1 || true; }
trap stop_node EXIT
"$warren" broker up --detach >"$work/broker-up.log"
uri=$(grep -o 'amqp://[^ ]*' "$work/broker-up.log" | head -1)
uri=${uri/guest:\*\*\*\*@/guest:guest@}
# The TLS node, when a -tls setup is asked for: its own state file, the same settings.
tls_uri="" tls_ca=""
stop_tls_node() { WARREN_STATE_FILE="$work/broker-tls.json" "$warren" broker down >/dev/null 2>&1 || true; }
if [[ " ${setups[*]} " == *"-tls"* ]]; then
    trap 'stop_node; stop_tls_node' EXIT
    WARREN_STATE_FILE="$work/broker-tls.json" "$warren" broker up --detach --tls >"$work/broker-up-tls.log"
    tls_uri=$(grep -o 'amqps://[^ ]*' "$work/broker-up-tls.log" | head -1)
    tls_ca=$(sed -n 's/^TLS CA.*: //p' "$work/broker-up-tls.log")
fi

scenario() { # name publishers consumers [rate] [tls]
    local rate_line="" broker_uri=$uri tls_table=""
    [[ -n "${4:-}" ]] && rate_line="rate = $4"
    if [[ -n "${5:-}" ]]; then
        broker_uri=$tls_uri
        tls_table=$'[broker.tls]\nca_file = "'"$tls_ca"'"'
    fi
    cat >"$work/$1.toml" <<EOF
name = "$1"
duration = "$duration"
[broker]
mode = "external"
uris = ["$broker_uri"]
$tls_table
[topology]
queue = { type = "classic", durable = true }
[publishers]
count = $2
confirm = true
max_in_flight = 64
persistent = true
mandatory = true
size = 100
$rate_line
[consumers]
count = $3
ack = "manual"
prefetch = 200
multiple_ack_every = 50
[report]
formats = ["csv", "json"]
EOF
}

scenario b1x1 1 1
scenario b4x4 4 4
scenario b1x1-5k 1 1 5000
if [[ -n $tls_uri ]]; then
    scenario b1x1-tls 1 1 "" tls
    scenario b4x4-tls 4 4 "" tls
fi

# The Java reference client, compiled once when a java setup is asked for.
java_cp=/usr/share/java/amqp-client.jar:/usr/share/java/slf4j-api.jar:/usr/share/java/slf4j-nop.jar:$work/java
if [[ " ${setups[*]} " == *" java"* ]]; then
    if ! command -v javac >/dev/null || [[ ! -f /usr/share/java/amqp-client.jar ]]; then
        [[ $(id -u) == 0 ]] || { echo "e2e.sh: the java setups need: apt-get install openjdk-17-jdk-headless librabbitmq-client-java" >&2; exit 2; }
        apt-get install -y -q openjdk-17-jdk-headless librabbitmq-client-java >"$work/apt.log"
    fi
    mkdir -p "$work/java"
    javac -d "$work/java" -cp "$java_cp" "$root/benches/java-reference/Reference.java"
fi

# Runs setup NAME (FLAG: a warren option) once, leaving summary.csv in folder OUT.
run_setup() { # name flag out
    case $1 in
    java*)
        local shape=${1#java} rate=0 seconds
        [[ $shape == *-5k ]] && rate=5000
        shape=${shape%-5k}
        seconds=$(awk -v d="$duration" 'BEGIN { n = d + 0; if (d ~ /ms$/) n /= 1000; else if (d ~ /m$/) n *= 60; print n }')
        mkdir -p "$3"
        java -cp "$java_cp" Reference "$uri" "${shape%x*}" "${shape#*x}" "$rate" "$seconds" "$3/summary.csv" || true
        ;;
    *)
        # With --metrics-listen=ADDR, something scrapes /metrics every second during the
        # run, as Prometheus would (the cost of serving metrics, not of an idle listener).
        local scraper=""
        if [[ $2 == *--metrics-listen=* ]]; then
            local addr=${2#*--metrics-listen=}
            addr=${addr%% *}
            (while :; do curl -s -o /dev/null "http://$addr/metrics" || true; sleep 1; done) &
            scraper=$!
        fi
        # shellcheck disable=SC2086
        "$warren" run "$work/$1.toml" --quiet --out "$3" $2 || true
        [[ -z $scraper ]] || kill "$scraper" 2>/dev/null || true
        ;;
    esac
}

# column NAME of a summary.csv row
column() {
    awk -F, -v name="$1" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i } NR == 2 { print $c }' "$2"
}

# median and min..max of numbers on stdin
stats() {
    sort -g | awk '{ v[NR] = $1 } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%s (%s..%s)", m, v[1], v[NR] }'
}

results="$work/results.md"
echo "| setup | delivered msg/s | client CPU µs per delivered msg | e2e p50 ms (from intended send) | e2e p50 ms (from actual send) |" >"$results"
echo "|---|---|---|---|---|" >>"$results"
# Runs are interleaved, in turn forward and backward (A B, B A, A B, ...), with SETTLE
# seconds (5) between runs: a drift of the machine or the node over the sitting, and the
# node still tidying up after the run before (a deleted queue's message store), fall on
# every setup alike instead of always on the one that comes second.
settle=${SETTLE:-5}
label_of() { local setup=$1; [[ $setup == *:* ]] || setup="$setup:"; local flag=${setup#*:}; echo "${setup%%:*}${flag:+ $flag}"; }
file_of() { local setup=$1; [[ $setup == *:* ]] || setup="$setup:"; echo "$work/${setup%%:*}${setup#*:}"; }
for setup in "${setups[@]}"; do
    f=$(file_of "$setup")
    : >"$f.rates"; : >"$f.cpu"; : >"$f.p50"; : >"$f.sent50"
done
for run in $(seq 1 "$runs"); do
    order=("${setups[@]}")
    if (( run % 2 == 0 )); then
        order=()
        for (( i = ${#setups[@]} - 1; i >= 0; i-- )); do order+=("${setups[$i]}"); done
    fi
    for setup in "${order[@]}"; do
        sleep "$settle"
        [[ $setup == *:* ]] || setup="$setup:"
        name=${setup%%:*}
        flag=${setup#*:}
        f=$(file_of "$setup")
        out="$f-$run"
        run_setup "$name" "$flag" "$out"
        csv="$out/summary.csv"
        rate=$(column delivered_per_s "$csv")
        cpu=$(column cpu_us_per_delivery "$csv")
        p50=$(awk -v us="$(column e2e_p50_us "$csv")" 'BEGIN { printf "%.3f", us / 1000 }')
        sent50=$(awk -v us="$(column e2e_sent_p50_us "$csv")" 'BEGIN { printf "%.3f", us / 1000 }')
        echo "$(label_of "$setup") run $run: $rate msg/s, $cpu µs CPU per delivered message, e2e p50 $p50 ms ($sent50 ms from actual send)"
        echo "$rate" >>"$f.rates"
        echo "$cpu" >>"$f.cpu"
        echo "$p50" >>"$f.p50"
        echo "$sent50" >>"$f.sent50"
    done
done
for setup in "${setups[@]}"; do
    f=$(file_of "$setup")
    printf '| %s | %s | %s | %s | %s |\n' "$(label_of "$setup")" \
        "$(stats <"$f.rates")" \
        "$(stats <"$f.cpu")" \
        "$(stats <"$f.p50")" \
        "$(stats <"$f.sent50")" >>"$results"
done
echo
echo "$runs run(s) of $duration each; median (min..max):"
cat "$results"
echo
echo "machine: $(nproc) CPU(s), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
first=$(find "$work" -name summary.json | head -1)
echo "broker: RabbitMQ $(grep -m1 -o '"version": *"[^"]*"' "$first" | cut -d'"' -f4), one node, private, on loopback"
