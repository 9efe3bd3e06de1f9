#!/usr/bin/env bash
# Checks the unit files in systemd/ with `systemd-analyze verify`, against a built svc
# binary, as an instance for every role. Prints the problems and exits non-zero on any.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# verify wants ExecStart's binary to exist at its path; point it at the built one.
for role in $(./target/release/svc roles | awk 'NR>1 && NF==0 {exit} NR>1 {print $1}'); do
  sed "s#/usr/local/bin/svc#$PWD/target/release/svc#" systemd/svc@.service > "$work/svc@.service"
  cp systemd/svc.target "$work/"
  cp "$work/svc@.service" "$work/svc@$role.service"
  out=$(cd "$work" && { systemd-analyze verify --man=no "./svc@$role.service" ./svc.target 2>&1 || true; })
  # Lines about the host (no svc user on a build machine) are not unit errors.
  problems=$(printf '%s\n' "$out" | grep -v -e 'User=svc' -e '^$' || true)
  if [ -n "$problems" ]; then
    echo "svc@$role.service:"; printf '%s\n' "$problems"; exit 1
  fi
  echo "svc@$role.service: ok"
done
