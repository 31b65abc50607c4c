#!/usr/bin/env bash
# A quick A/B of whole builds, between full bench runs: for each round and each DIR (holding
# `catalog`, `order`, `frontend`), a fresh bazaar (`./run.sh up` with BAZAAR_BIN_DIR=DIR), a
# warm-up, then 16 client sessions at p = 1 placing NREQ orders each (default 400), and the CPU
# each service used per acknowledged order (utime + stime from /proc/PID/stat, read before and
# after). DIRs alternate within a round, so each round is a pair measured within a minute.
#
#   benches/ab.sh ROUNDS DIR...        e.g. benches/ab.sh 5 /tmp/before target/release
#
# Caveats: the figures include the client's read-back at the end of each session, as the
# bench's do. Its bazaar keeps its data and PIDs in a temporary directory of its own
# (OUTPUT_DIR, BAZAAR_RUN_DIR), but listens on the configured ports: stop yours first.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap './run.sh down >/dev/null 2>&1 || true; rm -rf -- "$scratch"' EXIT
export OUTPUT_DIR=$scratch/data BAZAAR_RUN_DIR=$scratch/run
rounds=${1:?usage: benches/ab.sh ROUNDS DIR...}
shift
nreq=${NREQ:-400}
orders=$((16 * nreq))
client=target/release/client
services=(frontend catalog order-1 order-2 order-3)
ticks=$(getconf CLK_TCK)
cpu_of() { awk '{print $14 + $15}' "/proc/$(cat "$BAZAAR_RUN_DIR/pids/$1.pid")/stat"; }
for round in $(seq "$rounds"); do
  for dir in "$@"; do
    export BAZAAR_BIN_DIR=$dir
    ./run.sh down >/dev/null 2>&1 || true
    rm -rf -- "$OUTPUT_DIR"
    ./run.sh up >/dev/null
    "$client" --clients 4 --prob 1 --n-request 20 >/dev/null
    declare -A before=()
    for s in "${services[@]}"; do before[$s]=$(cpu_of "$s"); done
    json=$("$client" --clients 16 --prob 1 --n-request "$nreq" --json)
    line="" total=0
    for s in "${services[@]}"; do
      used=$(($(cpu_of "$s") - before[$s]))
      total=$((total + used))
      line+=" $s $((used * 1000000 / ticks / orders))"
    done
    rate=$(grep -o '"orders_per_s":[0-9.]*' <<<"$json" | cut -d: -f2)
    p50=$(grep -o '"order_ms":{[^}]*' <<<"$json" | grep -o '"p50":[0-9.]*' | cut -d: -f2)
    printf '%s round %s: %.0f orders/s, order p50 %.2f ms; CPU µs per order:%s; all five %s\n' \
      "$dir" "$round" "$rate" "$p50" "$line" "$((total * 1000000 / ticks / orders))"
    ./run.sh down >/dev/null 2>&1 || true
  done
done
