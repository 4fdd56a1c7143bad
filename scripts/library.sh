#!/bin/sh
# Runs every scenario of the library that warren can run here (all but the external ones)
# at full length, one after the other, on private nodes, and prints each one's verdict and
# key figures: how scenarios/README.md's verdict columns are made.
#
#   scripts/library.sh [--rabbitmq VERSION] [OUT]     (OUT: default target/library-<version>)
#
# --rabbitmq 4.0 runs them on RabbitMQ 4.0.5 nodes from the root scripts/rabbitmq.sh builds
# (as root). Takes about 17 minutes on two cores; a release build of warren is made first.
set -eu
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--rabbitmq" ]; then
    [ $# -ge 2 ] || { echo "usage: scripts/library.sh [--rabbitmq VERSION] [OUT]" >&2; exit 2; }
    eval "$(scripts/rabbitmq.sh "$2")"
    export WARREN_RABBITMQ_ROOT
    label="$2"
    shift 2
else
    label="default"
fi
out="${1:-target/library-$label}"
. scripts/env.sh
cargo build --quiet --release --bin warren
warren="$(pwd)/target/release/warren"
mkdir -p "$out"
printf '%-28s %-5s %s\n' scenario exit "verdict and figures (summary.csv)"
for scenario in scenarios/*.toml; do
    name="$(basename "$scenario" .toml)"
    if grep -q '^mode = "external"' "$scenario"; then
        continue
    fi
    rm -rf "${out:?}/$name"
    code=0
    "$warren" run "$scenario" --out "$out/$name" --progress=plain > "$out/$name.log" 2>&1 || code=$?
    figures="$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        NR == 2 { printf "%s broker %s; %s msg/s published; confirmed %s of %s; lost %s confirmed, %s unconfirmed; dead-lettered %s; duplicated %s; confirm p99 %.1f ms; e2e p99 %.1f ms",
            toupper($col["verdict"]), $col["broker_version"], $col["published_per_s"], $col["confirmed"], $col["attempted"],
            $col["lost_confirmed"], $col["lost_unconfirmed"], $col["dead_lettered"], $col["duplicated"],
            $col["confirm_p99_us"] / 1000, $col["e2e_p99_us"] / 1000 }' "$out/$name/summary.csv" 2>/dev/null || true)"
    if [ -z "$figures" ]; then
        figures="$(tail -n 1 "$out/$name.log")"
    fi
    printf '%-28s %-5s %s\n' "$name" "$code" "$figures"
done
