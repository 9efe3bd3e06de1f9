#!/usr/bin/env bash
# Installs svc on this machine for systemd: the binary, the units, an example
# /etc/svc/svc.yaml and the `svc` system user. Run as root, from the repository:
#
#   cargo build --release && sudo scripts/install.sh            # target/release/svc
#   sudo scripts/install.sh /path/to/svc                         # a binary built elsewhere
#
# Idempotent: running it again upgrades the binary and units and changes nothing else;
# an existing /etc/svc/svc.yaml is never overwritten. It enables nothing: it prints the
# commands that do. DESTDIR=/some/dir stages the files under that directory instead (no
# user is created and systemd is not reloaded), which is how it is tested.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
binary=${1:-$repo/target/release/svc}
destdir=${DESTDIR:-}

say() { printf 'install: %s\n' "$*"; }
die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }

[ "$#" -le 1 ] || die "usage: $0 [path/to/svc]"
[ -x "$binary" ] || die "$binary is not an executable; build it first (cargo build --release) or pass its path"
if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then
  die "run as root (sudo $0 ${1:-}), or set DESTDIR to stage the files"
fi
# The binary must run here before anything is copied: a wrong architecture or a
# missing library would otherwise surface only as a failing unit.
roles=$("$binary" roles | awk 'NR > 1 && NF == 0 { exit } NR > 1 { print $1 }') ||
  die "$binary does not run on this machine"
[ -n "$roles" ] || die "$binary roles printed no roles"

install -D -m 0755 "$binary" "$destdir/usr/local/bin/svc"
say "binary      -> /usr/local/bin/svc ($("$destdir/usr/local/bin/svc" --version))"

for unit in svc@.service svc.target; do
  install -D -m 0644 "$repo/systemd/$unit" "$destdir/etc/systemd/system/$unit"
  say "unit        -> /etc/systemd/system/$unit"
done

# The registry starts before, so stops after, every other role on this host: they
# deregister from it as they stop (written from `svc roles`, so no list is kept here).
others=$(printf '%s\n' "$roles" | grep -vx registry | sed 's/.*/svc@&.service/' | tr '\n' ' ')
dropin=$destdir/etc/systemd/system/svc@registry.service.d/10-stop-last.conf
mkdir -p "$(dirname "$dropin")"
printf '%s\n' "# Written by svc's install.sh: the registry stops after the roles that register with it." \
  "[Unit]" "Before=${others% }" >"$dropin"
say "drop-in     -> /etc/systemd/system/svc@registry.service.d/10-stop-last.conf"

install -D -m 0644 "$repo/README.md" "$destdir/usr/local/share/doc/svc/README.md"

config=$destdir/etc/svc/svc.yaml
if [ -e "$config" ]; then
  say "config      =  /etc/svc/svc.yaml exists; left as it is"
else
  install -D -m 0644 "$repo/config/vm-example.yaml" "$config"
  say "config      -> /etc/svc/svc.yaml (from config/vm-example.yaml: edit registries and advertise_host)"
fi
# Validate whatever config is there, new or old, so a broken file is seen now.
if ! "$destdir/usr/local/bin/svc" config check --config "$config" >/dev/null; then
  say "warning: /etc/svc/svc.yaml does not validate; fix it before starting a unit"
fi

if [ -n "$destdir" ]; then
  say "staged under $destdir: no user created, systemd not reloaded"
else
  if id -u svc >/dev/null 2>&1; then
    say "user        =  svc exists"
  else
    nologin=$(command -v nologin || echo /usr/sbin/nologin)
    useradd --system --user-group --no-create-home --home-dir /var/lib/svc --shell "$nologin" svc
    say "user        -> svc (system user and group)"
  fi
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    say "systemd     -> daemon-reload done"
  else
    say "systemd is not running here: run 'systemctl daemon-reload' where it is"
  fi
fi

cat <<EOF

Next, on this machine, enable the roles it should run (roles: $(echo "$roles" | paste -sd ' ' -)):

  sudo systemctl enable --now svc@registry                  # on each of the registry hosts
  sudo systemctl enable --now svc@gateway svc@orders        # and so on, one unit per role
  sudo systemctl enable svc.target                          # start them all at boot

  systemctl status 'svc@*'          journalctl -u 'svc@*' -f          svc status

After an upgrade, restart what runs: sudo systemctl restart 'svc@*'
EOF
