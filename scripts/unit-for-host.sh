#!/usr/bin/env bash
# Prints systemd/svc@.service as it fits this host's systemd: unchanged from systemd 253
# on; before that (no Type=notify-reload), Type=notify with ExecReload=kill -HUP, where
# `systemctl reload` returns as soon as the signal is sent rather than when svc says
# READY=1 again. Used by install.sh and verify-units.sh, so both see the same unit.
#
#   scripts/unit-for-host.sh [SYSTEMD_VERSION]     # default: `systemctl --version`'s
set -euo pipefail
unit="$(cd "$(dirname "$0")/.." && pwd)/systemd/svc@.service"
version=${1:-$(systemctl --version 2>/dev/null | awk 'NR == 1 { print $2 }')}
version=${version:-0}
if [ "${version%%.*}" -ge 253 ] 2>/dev/null; then
  cat "$unit"
else
  # $MAINPID is for systemd to expand, not this shell.
  # shellcheck disable=SC2016
  sed -e 's#^Type=notify-reload$#Type=notify\nExecReload=/bin/kill -HUP $MAINPID#' "$unit"
fi
