#!/usr/bin/env bash
# Orders per second of a whole `svc dev` cluster, on disk and on tmpfs, at several
# concurrencies: the figures of docs/MEASUREMENTS.md ("Orders through the gateway").
#
#   scripts/bench-orders.sh [--svc BIN] [--bench BIN] [--concurrency "4 16 64"]
#                           [--duration 15s] [--rounds 1] [--where "disk tmpfs"]
#
# --svc is the binary that runs the cluster (default: the release build of this
# checkout, built if missing), --bench the one that runs `svc bench` (default: the
# same). Passing an older svc as --svc and this one as --bench compares versions with
# the same load generator. Each (where, concurrency) gets a fresh cluster in a fresh
# data dir: "disk" under $TMPDIR (or /tmp), "tmpfs" under /dev/shm, where a sync costs
# nothing. Besides what `svc bench` prints (per role CPU and syncs, if the cluster
# exports them), the script prints the CPU of every process of the cluster, read from
# /proc, per confirmed order: comparable across versions.
set -euo pipefail
cd "$(dirname "$0")/.."

svc=target/release/svc
bench=
concurrency="4 16 64"
duration=15s
rounds=1
places="disk tmpfs"
while [ $# -gt 0 ]; do
  case $1 in
    --svc) svc=$2; shift 2 ;;
    --bench) bench=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --where) places=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
if [ "$svc" = target/release/svc ] && [ ! -x "$svc" ]; then
  cargo build --release
fi
bench=${bench:-$svc}

dev_pid=
cleanup() {
  if [ -n "$dev_pid" ]; then
    kill -TERM "$dev_pid" 2>/dev/null || true
    wait "$dev_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

# Sum of utime + stime, in clock ticks, of every process whose parent is $1, and $1.
cluster_ticks() {
  local total=0 pid
  for pid in "$1" $(pgrep -P "$1"); do
    if [ -r "/proc/$pid/stat" ]; then
      # Fields 14 and 15 after the command name, which may hold spaces: cut at ") ".
      total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
    fi
  done
  echo "$total"
}

ticks_per_s=$(getconf CLK_TCK)
echo "svc: $svc   bench: $bench   duration: $duration   cores: $(nproc)"
for round in $(seq 1 "$rounds"); do
  for place in $places; do
    for c in $concurrency; do
      case $place in
        disk) base=${TMPDIR:-/tmp} ;;
        tmpfs) base=/dev/shm ;;
        *) echo "unknown place: $place" >&2; exit 2 ;;
      esac
      dir=$(mktemp -d "$base/svc-bench-XXXXXX")
      "$svc" dev --data-dir "$dir/dev" >"$dir/dev.log" 2>&1 &
      dev_pid=$!
      for _ in $(seq 1 200); do
        grep -q "ready in" "$dir/dev.log" 2>/dev/null && break
        sleep 0.1
      done
      if ! grep -q "ready in" "$dir/dev.log"; then
        echo "the cluster did not start; its output:" >&2
        cat "$dir/dev.log" >&2
        exit 1
      fi
      before=$(cluster_ticks "$dev_pid")
      out=$("$bench" bench --api-key-file "$dir/dev/api-key" --tls-dir "$dir/dev/tls" \
        --concurrency "$c" --duration "$duration" 2>&1)
      after=$(cluster_ticks "$dev_pid")
      confirmed=$(echo "$out" | sed -n 's/^confirmed \([0-9]*\) .*/\1/p')
      echo
      echo "== round $round, $place, concurrency $c"
      echo "$out" | grep -v '^placing orders'
      if [ -n "$confirmed" ] && [ "$confirmed" -gt 0 ]; then
        awk -v t=$((after - before)) -v hz="$ticks_per_s" -v n="$confirmed" \
          'BEGIN { printf "cluster CPU from /proc: %.2f ms per confirmed order\n", t * 1000 / hz / n }'
      fi
      cleanup
      dev_pid=
      rm -rf "$dir"
    done
  done
done
