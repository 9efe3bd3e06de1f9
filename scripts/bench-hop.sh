#!/usr/bin/env bash
# Measures one hop through the gateway side by side with haproxy in front of the same
# inventory instance, and prints the figures.
#
# Two clusters run at once (svc dev, release binary, log files written as usual):
#   plain  tls.insecure: every internal connection is plain HTTP;
#   mtls   the default: every internal connection is mutual TLS. haproxy reaches
#          inventory with a certificate of its own, issued by `svc certs` for the
#          gateway role (the role inventory lets read a product).
# wrk drives GET <prefix>/products/<sku> against
#   direct   inventory itself (plain cluster only: wrk cannot present a client
#            certificate, so the mtls rows compare with the plain direct figure),
#   gateway  the gateway's public listener (plain HTTP, with the dev API key),
#   haproxy  haproxy on plain HTTP, forwarding to inventory (path /api prefix removed).
# Variants are interleaved over the rounds; each figure is the median of the rounds.
# Per variant it prints requests/s at 32 connections, p50/p99 latency at 1 connection,
# the added p50 versus direct, and the CPU milliseconds per request of the proxy
# process and of inventory (utime+stime from /proc/<pid>/stat over the 32-connection run).
#
# Usage: scripts/bench-hop.sh [--rounds N] [--seconds S] [--no-build]
# haproxy and wrk are installed with apt-get when missing; when that is not possible
# the script says so and exits 0 without measuring.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${SVC_BIN:-$ROOT/target/release/svc}
ROUNDS=3
SECONDS_PER_RUN=5
BUILD=1
SKU=tea
THREADS=2
CONNECTIONS=32

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

while [[ $# -gt 0 ]]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2 ;;
        --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

log() { echo "bench-hop: $*" >&2; }

# Installs the tools that are missing, or explains why the benchmark is skipped.
ensure_tools() {
    local missing=()
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v wrk >/dev/null || missing+=(wrk)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing ${missing[*]} with apt-get"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            log "cannot install ${missing[*]} (not root, no sudo): skipping the hop benchmark"
            exit 0
        fi
    fi
    if ! command -v apt-get >/dev/null \
        || ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2; then
        log "cannot install ${missing[*]} with apt-get: skipping the hop benchmark"
        exit 0
    fi
}

ensure_tools
if [[ $BUILD -eq 1 ]]; then
    log "building the release binary"
    (cd "$ROOT" && cargo build --release --quiet)
fi
[[ -x $BIN ]] || { echo "no binary at $BIN" >&2; exit 1; }

WORK=$(mktemp -d -t svc-bench-hop.XXXXXX)
STARTED_PIDS=()
cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# The pid of the `svc run` child of a cluster, by role and data dir.
role_pid() {
    local role=$1 dir=$2
    pgrep -f -- "--role $role --instance-id $role-0 .*--data-dir $dir " | head -n 1
}

# Addresses and pids by "mode.process"; the dev API key by mode.
declare -A ADDRESS PID KEY

# Starts `svc dev` for MODE on the given ports; records the addresses and pids of its
# gateway and inventory, and its API key.
start_cluster() {
    local mode=$1 registry_port=$2 gateway_port=$3
    local dir=$WORK/$mode
    mkdir -p "$dir"
    local args=(dev --data-dir "$dir" --registry-port "$registry_port" --gateway-port "$gateway_port")
    if [[ $mode == plain ]]; then
        printf 'tls:\n  insecure: true\nregistries: [http://127.0.0.1:%s]\n' \
            "$registry_port" >"$WORK/plain.yaml"
        args+=(--config "$WORK/plain.yaml")
    fi
    "$BIN" "${args[@]}" >"$WORK/$mode.out" 2>"$WORK/$mode.err" &
    local dev=$!
    STARTED_PIDS+=("$dev")
    local waited=0
    until grep -q 'instances ready' "$WORK/$mode.out" 2>/dev/null; do
        sleep 0.2
        waited=$((waited + 1))
        if [[ $waited -gt 300 ]] || ! kill -0 "$dev" 2>/dev/null; then
            echo "svc dev ($mode) did not get ready; its stderr:" >&2
            tail -n 20 "$WORK/$mode.err" >&2
            exit 1
        fi
    done
    local inventory
    inventory=$(awk '$1 == "inventory" { print $3; exit }' "$WORK/$mode.out")
    ADDRESS[$mode.inventory]=${inventory#*://}
    ADDRESS[$mode.gateway]=127.0.0.1:$gateway_port
    PID[$mode.gateway]=$(role_pid gateway "$dir")
    PID[$mode.inventory]=$(role_pid inventory "$dir")
    KEY[$mode]=$(cat "$dir/api-key")
}

# Starts haproxy for MODE on PORT in front of that cluster's inventory.
start_haproxy() {
    local mode=$1 port=$2
    local dir=$WORK/$mode
    local server="server inventory ${ADDRESS[$mode.inventory]}"
    if [[ $mode == mtls ]]; then
        "$BIN" certs issue --role gateway --name haproxy --host 127.0.0.1 --dir "$dir/tls" >/dev/null
        cat "$dir/tls/haproxy.crt" "$dir/tls/haproxy.key" >"$dir/tls/haproxy.pem"
        server+=" ssl verify required ca-file $dir/tls/ca.crt crt $dir/tls/haproxy.pem"
    fi
    # As many threads as the gateway has workers (config: workers: 2); connections to
    # inventory are kept and shared, as the gateway's pool does.
    cat >"$WORK/haproxy-$mode.cfg" <<EOF
global
    nbthread 2
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    http-reuse always
frontend public
    bind 127.0.0.1:$port
    default_backend inventory
backend inventory
    http-request replace-path /api(/.*) \1
    $server
EOF
    haproxy -db -f "$WORK/haproxy-$mode.cfg" >"$WORK/haproxy-$mode.log" 2>&1 &
    STARTED_PIDS+=($!)
    PID[$mode.haproxy]=$!
    ADDRESS[$mode.haproxy]=127.0.0.1:$port
}

# utime + stime of PID in clock ticks.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# Latency in wrk's notation (85.00us, 1.20ms, 2.00s) in microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) print n
        else if (v ~ /ms$/) print n * 1000
        else if (v ~ /s$/) print n * 1000000
        else print n
    }'
}

TICK_MS=$(awk -v hz="$(getconf CLK_TCK)" 'BEGIN { print 1000 / hz }')
# One round of one variant: appends "mode variant rps p50 p99 proxy_ms inventory_ms".
measure() {
    local mode=$1 variant=$2 address=$3 prefix=$4 proxy_pid=$5 inventory_pid=$6
    local url="http://$address$prefix/products/$SKU"
    local header="authorization: Bearer ${KEY[$mode]}"
    local out=$WORK/wrk.out
    local proxy0=0 inventory0 proxy1=0 inventory1
    [[ -n $proxy_pid ]] && proxy0=$(cpu_ticks "$proxy_pid")
    inventory0=$(cpu_ticks "$inventory_pid")
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" -H "$header" "$url" >"$out"
    [[ -n $proxy_pid ]] && proxy1=$(cpu_ticks "$proxy_pid")
    inventory1=$(cpu_ticks "$inventory_pid")
    if grep -q 'Non-2xx' "$out"; then
        log "$mode $variant: some answers were not 2xx:"
        cat "$out" >&2
    fi
    local rps requests
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    requests=$(awk '/requests in/ { print $1 }' "$out")
    wrk -t1 -c1 -d"${SECONDS_PER_RUN}s" --latency -H "$header" "$url" >"$out"
    local p50 p99
    p50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$out")")
    p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$out")")
    awk -v m="$mode" -v v="$variant" -v rps="$rps" -v p50="$p50" -v p99="$p99" \
        -v n="$requests" -v tick="$TICK_MS" -v pp="$proxy_pid" \
        -v pc=$((proxy1 - proxy0)) -v ic=$((inventory1 - inventory0)) 'BEGIN {
            proxy = (pp == "") ? "-" : sprintf("%.4f", pc * tick / n)
            printf "%s %s %.0f %.0f %.0f %s %.4f\n", m, v, rps, p50, p99, proxy, ic * tick / n
        }' >>"$WORK/results"
    log "$(tail -n 1 "$WORK/results")"
}

log "starting two clusters (plain and mutual TLS) in $WORK"
start_cluster plain 17811 18811
start_cluster mtls 17812 18812
start_haproxy plain 18821
start_haproxy mtls 18822
sleep 1

# One line per variant: mode, variant, address, path prefix, proxy pid (- for none),
# inventory pid.
variants() {
    echo "plain direct ${ADDRESS[plain.inventory]} /v1 - ${PID[plain.inventory]}"
    local mode proxy
    for mode in plain mtls; do
        for proxy in gateway haproxy; do
            echo "$mode $proxy ${ADDRESS[$mode.$proxy]} /api/v1 ${PID[$mode.$proxy]} ${PID[$mode.inventory]}"
        done
    done
}

# Warm-up: every path once, connections and pools made, nothing recorded.
while read -r mode variant address prefix _ _; do
    wrk -t1 -c"$CONNECTIONS" -d1s -H "authorization: Bearer ${KEY[$mode]}" \
        "http://$address$prefix/products/$SKU" >/dev/null
done < <(variants)

: >"$WORK/results"
for round in $(seq 1 "$ROUNDS"); do
    log "round $round of $ROUNDS"
    while read -r mode variant address prefix proxy_pid inventory_pid; do
        [[ $proxy_pid == - ]] && proxy_pid=
        measure "$mode" "$variant" "$address" "$prefix" "$proxy_pid" "$inventory_pid"
    done < <(variants)
done

echo
echo "hop benchmark: GET /products/$SKU, $ROUNDS rounds of ${SECONDS_PER_RUN} s per run, medians;"
echo "$(nproc) cores; req/s at $CONNECTIONS connections ($THREADS wrk threads), latency at 1 connection;"
echo "CPU: ms per request of the proxy process and of inventory, over the $CONNECTIONS-connection runs."
echo "mtls: proxy -> inventory over mutual TLS; its added p50 is versus the plain direct p50."
echo
awk '
    function median(list,    a, n, i, j, t) {
        n = split(list, a, " ")
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
        if (a[1] == "-") return "-"
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    {
        k = $1 " " $2
        if (!(k in rps)) order[++count] = k
        rps[k] = rps[k] " " $3; p50[k] = p50[k] " " $4; p99[k] = p99[k] " " $5
        proxy[k] = proxy[k] " " $6; inv[k] = inv[k] " " $7
    }
    END {
        direct = median(p50["plain direct"])
        printf "%-6s %-8s %9s %9s %9s %11s %12s %14s\n", "mode", "variant", "req/s@32", "p50 us", "p99 us", "added p50", "proxy ms/req", "inventory ms/req"
        for (i = 1; i <= count; i++) {
            k = order[i]; split(k, mv, " ")
            m = median(p50[k])
            added = (mv[2] == "direct") ? "-" : sprintf("%d", m - direct)
            pr = median(proxy[k]); if (pr != "-") pr = sprintf("%.4f", pr)
            printf "%-6s %-8s %9d %9d %9d %11s %12s %14.4f\n", mv[1], mv[2], median(rps[k]), m, median(p99[k]), added, pr, median(inv[k])
        }
    }' "$WORK/results"
