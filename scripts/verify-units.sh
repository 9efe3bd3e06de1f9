#!/usr/bin/env bash
# Checks the unit files in systemd/ with `systemd-analyze verify`, against a built svc
# binary, as an instance for every role, in the form scripts/install.sh installs for
# this systemd (scripts/unit-for-host.sh). Prints the problems and exits non-zero on any.
# SVC_BIN=path/to/svc uses that binary instead of building a release one.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SVC_BIN:-}" ]; then
  cargo build --release --quiet
  SVC_BIN=./target/release/svc
fi
bin=$(cd "$(dirname "$SVC_BIN")" && pwd)/$(basename "$SVC_BIN")
version=$(systemd-analyze --version | awk 'NR == 1 { print $2 }')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# verify wants ExecStart's binary to exist at its path; point it at the built one.
for role in $("$bin" roles | awk 'NR>1 && NF==0 {exit} NR>1 {print $1}'); do
  scripts/unit-for-host.sh "$version" | sed "s#/usr/local/bin/svc#$bin#" > "$work/svc@.service"
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
