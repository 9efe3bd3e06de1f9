#!/usr/bin/env bash
# Runs svc under the real units (systemd/svc@.service, svc.target), installed by
# scripts/install.sh, in a throwaway Debian system booted with systemd as PID 1 (in a
# container, systemd-nspawn -b; or with --vm in a QEMU virtual machine with Debian's
# kernel), and checks that the hardening lets it work:
#
#   - svc@registry and every other role start: Type=notify, READY=1 reached, running as
#     user svc with no capabilities, NoNewPrivileges, a seccomp filter, / read-only;
#   - orders placed through the gateway (svc bench) all succeed;
#   - no system call made by svc is refused by the hardening: with SystemCallErrorNumber=
#     EPERM a filtered call fails quietly, so svc is traced with strace, from its fork by
#     PID 1, through a start, traffic, `systemctl reload` and a stop, and any call of svc
#     answered EPERM, EACCES, EROFS, ENOSYS (but clone3's, which systemd answers ENOSYS on
#     purpose) or ENOENT on a /proc file that ProcSubset=pid hides is reported;
#   - the watchdog does not fire in steady state (a wait longer than WatchdogSec), and
#     does fire on a hung instance (SIGSTOP), which is then restarted;
#   - `systemctl kill -s SIGKILL svc@orders` is followed by a restart (Restart=on-failure);
#   - `systemctl stop svc.target` stops every instance cleanly (exit 0, Result=success);
#   - the journal of the units has no seccomp / permission errors.
#
# It prints PASS or FAIL per check and a summary, and exits 0 only if all passed.
# Operator/developer tool, not CI. Needs root; installs debootstrap and
# systemd-container (and for --vm qemu-system-x86) with apt-get if missing. Usage, from
# the repository:
#
#   sudo scripts/verify-under-systemd.sh                 # builds: cargo build --release
#                                                        # (needs cargo in root's PATH)
#   sudo scripts/verify-under-systemd.sh path/to/svc     # a binary built elsewhere
#   sudo scripts/verify-under-systemd.sh --vm ...        # in a VM: real kernel, cgroup v2
#   sudo scripts/verify-under-systemd.sh --no-cache ...  # keep no Debian tree or image
#
# The container shares this machine's kernel (and its cgroup layout) and adds its own
# seccomp filter; the VM is what a Debian VM is (kernel 6.1, cgroup v2) but is slow
# under software emulation (SVC_VERIFY_ACCEL=kvm uses KVM where it works; it does not
# in a Firecracker guest without nested virtualisation: the kernel hangs at boot).
#
# The Debian tree (debootstrap --variant=minbase, about 270 MB, from the mirror this
# machine's apt uses, or SVC_VERIFY_MIRROR) and the VM's disk image (about 1 GB) are
# kept in /var/tmp/svc-verify-cache (SVC_VERIFY_CACHE) for the next run; both are booted
# with a throwaway overlay (tmpfs, or QEMU's snapshot), so nothing a run does persists.
# Everything else goes to a temporary directory under /var/tmp, removed at exit.
# Measured on a 2-CPU machine: container about 40 s (plus 1 minute to debootstrap the
# first time); VM about 2 minutes (plus 2 minutes for the image the first time),
# everything being emulated.

# The single-quoted $ are for the guest's sh and awk (run through g), not this shell.
# shellcheck disable=SC2016
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
suite=${SVC_VERIFY_SUITE:-bookworm}
cache=${SVC_VERIFY_CACHE:-/var/tmp/svc-verify-cache}
# procps: /bin/kill, which the unit's ExecReload runs (as on any Debian but minbase).
packages=systemd,systemd-sysv,dbus,passwd,procps,strace
started_at=$SECONDS

say() { printf '\n== %s\n' "$*"; }
die() { printf 'verify: error: %s\n' "$*" >&2; exit 1; }

use_cache=1
mode=container
while [ "$#" -gt 0 ]; do
  case $1 in
    --no-cache) use_cache=0; shift ;;
    --vm) mode=vm; shift ;;
    -*) die "usage: $0 [--vm] [--no-cache] [path/to/svc]" ;;
    *) break ;;
  esac
done
[ "$#" -le 1 ] || die "usage: $0 [--vm] [--no-cache] [path/to/svc]"
[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0 $*)"

# --- the host's tools ----------------------------------------------------------------
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
command -v nsenter >/dev/null || missing+=(util-linux)
if [ "$mode" = vm ]; then
  command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
  command -v ssh >/dev/null || missing+=(openssh-client)
  command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

work=$(mktemp -d /var/tmp/svc-verify.XXXXXX)
machine=svc-verify-$$
nspawn_pid=
qemu_pid=
ssh_opts=()
cleanup() {
  local rc=$?
  if [ -n "$qemu_pid" ]; then
    ssh "${ssh_opts[@]}" -O exit 2>/dev/null || true
    kill -TERM "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
  fi
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    # nspawn asks the container's systemd to power off; a second SIGTERM, or SIGKILL
    # after 30 s, ends it at once.
    kill -TERM "$nspawn_pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$nspawn_pid" 2>/dev/null || true
    wait "$nspawn_pid" 2>/dev/null || true
  fi
  rm -rf "/run/systemd/nspawn/propagate/$machine" "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- svc and what install.sh needs, as the guest will see them under /opt/svc-src ------
stage=$work/src
mkdir -p "$stage/scripts" "$stage/systemd" "$stage/config" "$work/out"
if [ "$#" -eq 1 ]; then
  binary=$1
else
  say "building svc (cargo build --release)"
  (cd "$repo" && cargo build --release --quiet)
  binary=$repo/target/release/svc
fi
[ -x "$binary" ] || die "$binary is not an executable"
# A copy: target/ may be rebuilt while this runs.
cp "$binary" "$stage/svc"
cp "$repo/scripts/install.sh" "$stage/scripts/"
cp "$repo/systemd/svc@.service" "$repo/systemd/svc.target" "$stage/systemd/"
cp "$repo/config/vm-example.yaml" "$stage/config/"
cp "$repo/README.md" "$stage/"
roles=$("$stage/svc" roles | awk 'NR > 1 && NF == 0 { exit } NR > 1 { print $1 }')
[ -n "$roles" ] || die "$binary roles printed no roles"
others=$(printf '%s\n' "$roles" | grep -vx registry || true)
units=()
for r in $roles; do units+=("svc@$r.service"); done
echo "svc: $("$stage/svc" --version); roles: $(printf '%s\n' "$roles" | paste -sd' ' -)"

# The guest's /etc/svc/svc.yaml: every role on this one host, on loopback. With mutual
# TLS (internal URLs must be https://) the certificates go to /etc/svc/tls. A binary
# whose gateway wants API keys (`svc keys`) gets one made here, for svc bench, in
# /etc/svc/api-keys.yaml as in config/vm-example.yaml.
api_key=
gateway_config=
if "$stage/svc" keys new --help >/dev/null 2>&1; then
  "$stage/svc" keys new --name svc-verify --scopes products:read,products:write,orders:read,orders:write \
    --rate-per-second 100000 --burst 100000 2>/dev/null >"$work/key.txt"
  api_key=$(sed -n 1p "$work/key.txt")
  sed 1d "$work/key.txt" >"$stage/api-keys.yaml"
  gateway_config="gateway:
  api_keys_file: /etc/svc/api-keys.yaml"
fi
base_config="bind_host: 127.0.0.1
advertise_host: 127.0.0.1
data_dir: /var/lib/svc
log_format: json
workers: 2
$gateway_config"
# Checked here with the key file's path as it is here.
config_ok() {
  sed "s#/etc/svc/api-keys.yaml#$stage/api-keys.yaml#" "$stage/svc.yaml" >"$work/check.yaml"
  "$stage/svc" config check --config "$work/check.yaml" >>"$work/check.txt" 2>&1
}
printf '%s\nregistries: [http://127.0.0.1:7700]\n' "$base_config" >"$stage/svc.yaml"
tls=0
if ! config_ok; then
  printf '%s\nregistries: [https://127.0.0.1:7700]\ntls:\n  dir: /etc/svc/tls\n' \
    "$base_config" >"$stage/svc.yaml"
  config_ok || die "no guest config validates (adapt this script to the config): $(cat "$work/check.txt")"
  tls=1
fi
registry_url=http://127.0.0.1:7700
[ "$tls" -eq 0 ] || registry_url=https://127.0.0.1:7700
echo "internal traffic: $([ "$tls" -eq 1 ] && echo 'mutual TLS' || echo 'plain HTTP')"

# --- a Debian tree with systemd ---------------------------------------------------------
# The mirror this machine's apt uses for $suite (one-line or deb822 sources).
apt_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    awk -v s="$suite" '$1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) == s) print $i
      }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk -v s="$suite" '
      function flush() {
        if ((" " types " ") ~ / deb / && (" " suites " ") ~ (" " s " ") && uri != "") print uri
        types = suites = uri = ""
      }
      /^[[:space:]]*$/ { flush(); next }
      /^[[:space:]]*#/ { next }
      tolower($1) == "types:" { $1 = ""; types = $0 }
      tolower($1) == "suites:" { $1 = ""; suites = $0 }
      tolower($1) == "uris:" { uri = $2 }
      END { flush() }' "$f"
  done
}

if [ "$use_cache" -eq 1 ]; then
  rootfs=$cache/$suite-rootfs
else
  rootfs=$work/rootfs
fi
if [ "$(cat "$rootfs.done" 2>/dev/null || true)" != "$packages" ]; then
  mirror=${SVC_VERIFY_MIRROR:-$(apt_mirror | sed -n 1p)}
  [ -n "$mirror" ] || die "no apt source for $suite found; set SVC_VERIFY_MIRROR to a Debian mirror URL"
  say "debootstrap $suite (minbase + $packages) into $rootfs"
  mkdir -p "$(dirname "$rootfs")"
  rm -rf "$rootfs" "$rootfs.done"
  debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; die "debootstrap failed"; }
  printf '%s' "$packages" >"$rootfs.done"
fi

# --- boot it --------------------------------------------------------------------------
boot_container() {
  say "booting $suite with systemd as PID 1 (systemd-nspawn -b)"
  local args=(--quiet --directory="$rootfs" --volatile=overlay --machine="$machine"
    --private-network --bind-ro="$stage:/opt/svc-src" --console=passive --boot)
  # Without a systemd on the host there is no bus to register the machine or make a scope.
  [ -d /run/systemd/system ] || args=(--register=no --keep-unit "${args[@]}")
  systemd-nspawn "${args[@]}" >"$work/nspawn.log" 2>&1 &
  nspawn_pid=$!
  guest_pid=
  for _ in $(seq 1 100); do
    guest_pid=$(pgrep -P "$nspawn_pid" | head -n1 || true)
    [ -n "$guest_pid" ] && break
    kill -0 "$nspawn_pid" 2>/dev/null || { cat "$work/nspawn.log"; die "systemd-nspawn exited"; }
    sleep 0.2
  done
  [ -n "$guest_pid" ] || { cat "$work/nspawn.log"; die "no container process"; }
  # systemctl needs PID 1's private socket, which appears a moment after the start.
  for _ in $(seq 1 100); do g test -S /run/systemd/private 2>/dev/null && break; sleep 0.2; done
}

# The VM's disk: the Debian tree plus a kernel, sshd (root, by a key made here) and DHCP
# on the NIC; /opt/svc-src is a second disk made for each run.
vm_packages=linux-image-amd64,openssh-server,initramfs-tools
build_vm_image() {
  local tree=$work/vm-tree
  say "building the VM disk image ($vm_packages) in $vm"
  rm -rf "$vm" "$tree"
  mkdir -p "$vm" "$tree"
  cp -a "$rootfs/." "$tree/"
  unshare --mount sh -c 'set -e; t=$1
    mount -t proc proc "$t/proc"; mount --rbind /dev "$t/dev"; mount -t sysfs sysfs "$t/sys"
    chroot "$t" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive chroot "$t" apt-get install -y -qq --no-install-recommends \
      $(echo "$2" | tr , " ")' sh "$tree" "$vm_packages" >"$work/vm-apt.log" 2>&1 ||
    { tail -20 "$work/vm-apt.log"; die "installing $vm_packages in the VM tree failed"; }
  ssh-keygen -q -t ed25519 -N '' -C svc-verify -f "$vm/key"
  install -d -m 0700 "$tree/root/.ssh"
  install -m 0600 "$vm/key.pub" "$tree/root/.ssh/authorized_keys"
  install -d "$tree/opt/svc-src"
  printf '/dev/vda / ext4 rw 0 1\n/dev/vdb /opt/svc-src ext4 ro,nofail 0 2\n' >"$tree/etc/fstab"
  printf '[Match]\nName=en*\n\n[Network]\nDHCP=yes\n' >"$tree/etc/systemd/network/50-dhcp.network"
  chroot "$tree" systemctl enable --quiet systemd-networkd.service
  echo svc-verify >"$tree/etc/hostname"
  # The kernel package's symlinks name the kernel it installed.
  cp -L "$tree/vmlinuz" "$vm/vmlinuz"
  cp -L "$tree/initrd.img" "$vm/initrd.img"
  truncate -s 3G "$vm/disk.img"
  mkfs.ext4 -q -F -d "$tree" "$vm/disk.img"
  rm -rf "$tree"
  printf '%s+%s' "$packages" "$vm_packages" >"$vm.done"
}

boot_vm() {
  if [ "$use_cache" -eq 1 ]; then vm=$cache/$suite-vm; else vm=$work/vm; fi
  [ "$(cat "$vm.done" 2>/dev/null || true)" = "$packages+$vm_packages" ] || build_vm_image
  truncate -s "$(($(du -sm "$stage" | cut -f1) + 32))M" "$work/src.img"
  mkfs.ext4 -q -F -d "$stage" "$work/src.img"
  local port cpus accel=()
  for _ in $(seq 1 20); do
    port=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
  done
  case ${SVC_VERIFY_ACCEL:-tcg} in
    kvm) accel=(-accel kvm -cpu host) ;;
    *) accel=(-accel "tcg,thread=multi" -cpu max) ;;
  esac
  cpus=$(nproc); [ "$cpus" -le 4 ] || cpus=4
  say "booting $suite with systemd as PID 1 in QEMU (${SVC_VERIFY_ACCEL:-tcg}, $cpus CPUs; a minute or two)"
  qemu-system-x86_64 "${accel[@]}" -m 2048 -smp "$cpus" -no-reboot \
    -kernel "$vm/vmlinuz" -initrd "$vm/initrd.img" -append 'root=/dev/vda rw console=ttyS0' \
    -drive "file=$vm/disk.img,if=virtio,format=raw,snapshot=on" \
    -drive "file=$work/src.img,if=virtio,format=raw,readonly=on" \
    -nic "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:$port-:22" \
    -serial "file:$work/serial.log" -monitor none -display none >"$work/qemu.log" 2>&1 &
  qemu_pid=$!
  # One connection for all the commands: a new one costs seconds under emulation.
  ssh_opts=(-T -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o LogLevel=ERROR -o ConnectTimeout=5 -o ControlMaster=auto -o "ControlPath=$work/ssh.%C"
    -o ControlPersist=yes -i "$vm/key" -p "$port" root@127.0.0.1)
  local end=$((SECONDS + 600))
  until g true 2>/dev/null; do
    kill -0 "$qemu_pid" 2>/dev/null || { cat "$work/qemu.log"; die "qemu exited"; }
    [ "$SECONDS" -lt "$end" ] || { tail -c 3000 "$work/serial.log"; die "the VM did not answer ssh"; }
    sleep 3
  done
  echo "  booted in $((SECONDS - end + 600)) s"
}

# g command...: runs a command in the guest, as root, with this stdin and stdout.
g() {
  if [ "$mode" = vm ]; then
    # One string for the guest's shell (bash), each word quoted.
    # shellcheck disable=SC2029
    ssh "${ssh_opts[@]}" "$(printf '%q ' "$@")"
  else
    nsenter --target "$guest_pid" --all -- "$@"
  fi
}
prop() { g systemctl show -p "$2" --value "$1"; }

if [ "$mode" = vm ]; then boot_vm; else boot_container; fi
state=$(g timeout 120 systemctl is-system-running --wait || true)
echo "guest: $(g sh -c '. /etc/os-release; echo "$PRETTY_NAME"'), kernel $(g uname -r), $(g systemctl --version | head -n1), PID 1: $(g cat /proc/1/comm), /sys/fs/cgroup: $(g stat -fc %T /sys/fs/cgroup), state: $state"
case $state in
  running) ;;
  degraded) g systemctl --failed --no-pager || true ;;
  *) die "the guest did not boot (state: ${state:-none}); see journalctl in the guest" ;;
esac
g mkdir -p /opt/svc-out

# --- checks bookkeeping ------------------------------------------------------------
results=()
failed=0
pass() { results+=("PASS  $*"); printf 'PASS  %s\n' "$*"; }
fail() { results+=("FAIL  $*"); printf 'FAIL  %s\n' "$*"; failed=1; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
# wait_for SECONDS command...: until the command succeeds, at most SECONDS.
wait_for() {
  local end=$((SECONDS + $1)); shift
  until "$@"; do [ "$SECONDS" -lt "$end" ] || return 1; sleep 0.5; done
}
running() { [ "$(prop "$1" ActiveState)/$(prop "$1" SubState)" = active/running ]; }
all_running() { local u; for u in "${units[@]}"; do running "$u" || return 1; done; }
all_inactive() { local u; for u in "${units[@]}"; do [ "$(prop "$u" ActiveState)" = inactive ] || return 1; done; }
show() {
  local u p line
  for u in "$@"; do
    declare -A v=()
    while IFS='=' read -r p line; do v[$p]=$line; done < <(g systemctl show -p ActiveState,SubState,NRestarts,Result "$u")
    printf '  %-28s ActiveState=%s SubState=%s NRestarts=%s Result=%s\n' "$u" \
      "${v[ActiveState]:-}" "${v[SubState]:-}" "${v[NRestarts]:-}" "${v[Result]:-}"
    unset v
  done
}
snapshots=()
snapshot() {
  local out
  out=$(show "${@:2}")
  snapshots+=("$1:" "$out")
  printf '%s\n' "$out"
}

# --- install ------------------------------------------------------------------------
say "scripts/install.sh in the guest"
g install -D -m 0644 /opt/svc-src/svc.yaml /etc/svc/svc.yaml
[ -z "$api_key" ] || g install -m 0600 /opt/svc-src/api-keys.yaml /etc/svc/api-keys.yaml
check "install.sh ran" g /opt/svc-src/scripts/install.sh /opt/svc-src/svc
# svc runs as user svc: what it reads must be readable by group svc.
[ -z "$api_key" ] || g sh -c 'chgrp svc /etc/svc/api-keys.yaml && chmod 0640 /etc/svc/api-keys.yaml'

if [ "$tls" -eq 1 ]; then
  say "certificates for mutual TLS in /etc/svc/tls"
  # Made in /root/svc-pki, as an operator would elsewhere; the instances get all but
  # ca.key.
  made=0
  if g svc certs --help >/dev/null 2>&1; then
    echo "with svc certs init / issue"
    if g svc certs init --dir /root/svc-pki; then
      made=1
      for r in $roles; do
        g svc certs issue --role "$r" --host localhost --host 127.0.0.1 --dir /root/svc-pki || made=0
      done
      g svc certs issue --role operator --dir /root/svc-pki || echo "(no operator certificate)"
    fi
    [ "$made" -eq 0 ] ||
      g sh -c 'install -d -m 0750 /etc/svc/tls && for f in /root/svc-pki/*; do
        [ "${f##*/}" = ca.key ] || cp "$f" /etc/svc/tls/; done'
  fi
  if [ "$made" -eq 0 ]; then
    # No (working) `svc certs`: take the CA and loopback certificates svc dev makes
    # for itself (every role and operator), then stop it.
    echo "with the PKI svc dev makes"
    g env ROLES="$roles" sh -s <<'EOF'
set -eu
d=/var/tmp/svc-devpki
svc dev --data-dir "$d" </dev/null >/var/tmp/svc-devpki.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  ok=1
  for r in $ROLES operator; do [ -s "$d/tls/$r.crt" ] || ok=0; done
  [ "$ok" -eq 1 ] && break
  sleep 0.2
done
kill -INT "$pid"
wait "$pid" || true
[ "$ok" -eq 1 ] || { tail -20 /var/tmp/svc-devpki.log; exit 1; }
install -d -m 0750 /etc/svc/tls
for f in "$d"/tls/*; do [ "${f##*/}" = ca.key ] || cp "$f" /etc/svc/tls/; done
rm -rf "$d"
EOF
  fi
  # svc runs as user svc: its key must be readable by group svc (svc certs / svc dev
  # write keys 0600 root).
  g sh -c 'chown root:svc /etc/svc/tls && chmod 0750 /etc/svc/tls && chmod 0644 /etc/svc/tls/*.crt &&
    for k in /etc/svc/tls/*.key; do
      case $k in */ca.key) chmod 0600 "$k" ;; *) chgrp svc "$k" && chmod 0640 "$k" ;; esac
    done && ls -l /etc/svc/tls'
  check "guest config validates with its certificates" g svc config check --config /etc/svc/svc.yaml
fi

# --- start ---------------------------------------------------------------------------
say "starting svc@registry, then every role, then svc.target"
t0=$SECONDS
check "systemctl start svc@registry returned (READY=1)" g systemctl start svc@registry.service
echo "  took $((SECONDS - t0)) s; status: $(prop svc@registry.service StatusText)"
for r in $others; do g systemctl enable --quiet "svc@$r.service"; done
g systemctl enable --quiet svc@registry.service svc.target
for r in $others; do
  t0=$SECONDS
  check "systemctl start svc@$r returned (READY=1)" g systemctl start "svc@$r.service"
  echo "  took $((SECONDS - t0)) s; status: $(prop "svc@$r.service" StatusText)"
done
check "systemctl start svc.target" g systemctl start svc.target
check "every svc@ unit active (running)" wait_for 30 all_running
snapshot "after start" "${units[@]}" svc.target
g systemctl status --no-pager --lines=4 svc@orders.service || true

say "the hardening as applied to svc@orders"
pid=$(prop svc@orders.service MainPID)
svc_uid=$(g id -u svc)
g grep -E '^(Uid|Gid|NoNewPrivs|Seccomp|Seccomp_filters|CapEff|CapBnd):' "/proc/$pid/status" | sed 's/^/  /'
proc_ok() {
  g awk -v uid="$svc_uid" '
    /^Uid:/ { u = ($2 == uid) } /^NoNewPrivs:/ { n = ($2 == 1) } /^Seccomp:/ { s = ($2 == 2) }
    /^CapEff:/ { c = ($2 == "0000000000000000") } END { exit !(u && n && s && c) }' "/proc/$pid/status"
}
check "svc@orders runs as svc, no capabilities, NoNewPrivs, seccomp filter" proc_ok
# Its mount namespace as the unit made it: read-only /usr, /etc; its state dir writable.
ns() { g nsenter --target "$pid" --mount -- "$@"; }
ro_ok() { ! ns touch /usr/.svc-verify 2>/dev/null && ! ns touch /etc/.svc-verify 2>/dev/null; }
check "svc@orders sees /usr and /etc read-only (ProtectSystem=strict)" ro_ok
proc_opts=$(ns awk '$5 == "/proc" { print $NF }' /proc/self/mountinfo | tail -n1)
echo "  /proc for svc@orders: $proc_opts"
check "svc@orders has /proc with subset=pid, hidepid=invisible" \
  grep -q 'subset=pid' <<<"$proc_opts"
g systemd-analyze security --no-pager svc@orders.service | tail -n1 | sed 's/^/  /' || true

say "orders through the gateway (svc bench, 5 s)"
bench_ok() {
  local out
  out=$(g env SVC_API_KEY="$api_key" svc bench --duration 5s --concurrency 8 2>&1) || { printf '%s\n' "$out"; return 1; }
  printf '%s\n' "$out" | sed 's/^/  /'
  grep -Eq 'confirmed [1-9]' <<<"$out" && grep -Eq 'errors 0' <<<"$out"
}
check "svc bench: orders confirmed, no errors" bench_ok
if [ "$tls" -eq 1 ]; then
  g svc status --registry "$registry_url" --tls-dir /etc/svc/tls 2>&1 | sed 's/^/  /' || true
else
  g svc status --registry "$registry_url" 2>&1 | sed 's/^/  /' || true
fi

# --- traced -------------------------------------------------------------------------
# strace -f on PID 1 follows each svc it forks from the start. Under emulation (--vm)
# tracing is slow enough to come near TimeoutStartSec, so only two roles are traced there.
traced_units=("${units[@]}")
[ "$mode" = container ] || [ "${SVC_VERIFY_TRACE_ALL:-0}" = 1 ] ||
  traced_units=(svc@orders.service svc@gateway.service)
say "strace from PID 1: restart of ${traced_units[*]}, orders, a reload, a stop and a start"
g sh -c 'strace -f -qq -s 64 -o /opt/svc-out/strace.txt -p 1 </dev/null >/dev/null 2>/opt/svc-out/strace.err & echo $! >/opt/svc-out/strace.pid'
strace_pid=$(g cat /opt/svc-out/strace.pid)
traced() { [ "$(g awk '/^TracerPid:/ { print $2 }' /proc/1/status)" != 0 ]; }
wait_for 10 traced || die "strace did not attach to the guest's PID 1: $(g cat /opt/svc-out/strace.err)"
t0=$SECONDS
check "systemctl restart (traced) returned" g systemctl restart "${traced_units[@]}"
check "every svc@ unit active (running)" wait_for 30 all_running
echo "  took $((SECONDS - t0)) s"
g env SVC_API_KEY="$api_key" svc bench --duration 2s --concurrency 2 2>&1 | sed 's/^/  /' || true
if [ -n "$(prop svc@orders.service ExecReload)" ]; then
  old=$(prop svc@orders.service MainPID)
  check "systemctl reload svc@orders (ExecReload)" g systemctl reload svc@orders.service
  sleep 1
  same_process() { running svc@orders.service && [ "$(prop svc@orders.service MainPID)" = "$old" ]; }
  check "svc@orders still running, same process, after the reload" same_process
  g journalctl --no-pager -o cat -u svc@orders.service -n 3 | sed 's/^/  /'
elif [ "$tls" -eq 1 ]; then
  g systemctl kill -s HUP --kill-whom=main svc@orders.service
  sleep 1
  check "svc@orders still running after SIGHUP (certificate reload)" running svc@orders.service
fi
check "systemctl restart svc@orders (a stop and a start)" g systemctl restart svc@orders.service
steady_since=$SECONDS
g sh -c "kill -INT $strace_pid"
wait_for 10 eval '! traced' || true
g cat /opt/svc-out/strace.txt >"$work/out/strace.txt"

say "system calls of svc refused under the unit (strace)"
# Follow what PID 1 forks from the execve of /usr/local/bin/svc on (systemd's own calls
# before it are not svc's), and the threads svc makes; keep refusals (EPERM, EACCES,
# EROFS), ENOENT on /proc files other than a process's (ProcSubset=pid hides them), and
# ENOSYS other than clone3's (systemd answers clone3 ENOSYS on purpose so that glibc
# falls back to clone, whose flags seccomp can check).
awk '
  { pid = $1 }
  /execve\("\/usr\/local\/bin\/svc"/ { if (/<unfinished \.\.\.>/) pending[pid] = 1; else if (/ = 0$/) svc[pid] = 1 }
  /<\.\.\. execve resumed>/ && / = 0$/ && pending[pid] { svc[pid] = 1 }
  svc[pid] && /clone3?(\(| resumed>)/ && match($0, /= [0-9]+$/) { svc[substr($0, RSTART + 2)] = 1 }
  !svc[pid] { next }
  / = -1 E(PERM|ACCES|ROFS) / || (/ = -1 ENOSYS / && !/clone3/) ||
  (/ = -1 ENOENT / && /"\/proc\// && !/"\/proc\/(self|thread-self|[0-9]+)(\/|")/) {
    line = $0; sub(/^[0-9]+ +/, "", line); print line
  }
  END { n = 0; for (p in svc) n++; print n " svc processes and threads traced" > "/dev/stderr" }
' "$work/out/strace.txt" >"$work/refused.txt" 2>"$work/traced.txt" || true
echo "  $(cat "$work/traced.txt"), $(wc -l <"$work/out/strace.txt") lines of trace"
traced_some() { grep -Eq '^[1-9]' "$work/traced.txt"; }
check "strace followed svc" traced_some
# Known and harmless: glibc's malloc reads overcommit_memory when it shrinks a thread's
# heap; hidden by ProcSubset=pid it assumes "not strict (2)", which is what it is on a
# default system, so it behaves the same.
benign='"/proc/sys/vm/overcommit_memory"'
if grep -F "$benign" "$work/refused.txt" >"$work/benign.txt"; then
  echo "  harmless: $(sed -E 's/^(<\.\.\. )?([a-z0-9_]+).*= -1 ([A-Z]+).*/\2 \3/' "$work/benign.txt" | sort | uniq -c | paste -sd' ') $benign (glibc malloc)"
  grep -vF "$benign" "$work/refused.txt" >"$work/refused2.txt" || true
  mv "$work/refused2.txt" "$work/refused.txt"
fi
if [ -s "$work/refused.txt" ]; then
  sed -E 's/^(<\.\.\. )?([a-z0-9_]+).*= -1 ([A-Z]+).*/\2 \3/' "$work/refused.txt" | sort | uniq -c | sed 's/^/  /'
  head -n 20 "$work/refused.txt" | sed 's/^/  /'
  fail "no system call of svc refused by the hardening"
else
  pass "no system call of svc refused by the hardening"
fi

# --- watchdog, restarts ---------------------------------------------------------------
watchdog=$(prop svc@orders.service WatchdogUSec)
case $watchdog in
  *min*) wd=60 ;;
  *ms) wd=1 ;;
  *s) wd=${watchdog%s} ;;
  *) wd=10 ;;
esac
say "steady state: no watchdog timeout over $((wd + 3)) s (WatchdogSec=$watchdog)"
declare -A ping0
for u in "${units[@]}"; do ping0[$u]=$(prop "$u" WatchdogTimestampMonotonic); done
# Long enough for every unit to have run WatchdogSec + 3 s (svc@orders since its restart),
# and for one more ping (every WatchdogSec/2) since the timestamps above.
wait_s=$((steady_since + wd + 3 - SECONDS))
[ "$wait_s" -ge $((wd / 2 + 1)) ] || wait_s=$((wd / 2 + 1))
sleep "$wait_s"
steady_ok() {
  local u ok=0
  for u in "${units[@]}"; do
    if ! running "$u" || [ "$(prop "$u" NRestarts)" != 0 ]; then
      echo "  $u restarted or not running"; ok=1
    fi
    if [ "$(prop "$u" WatchdogTimestampMonotonic)" -le "${ping0[$u]}" ]; then
      echo "  $u: no watchdog ping"; ok=1
    fi
  done
  if g journalctl --no-pager -q -u 'svc@*' | grep 'Watchdog timeout'; then ok=1; fi
  return "$ok"
}
check "every unit running, pinging the watchdog, none restarted" steady_ok
echo "  svc@orders last watchdog ping: $(prop svc@orders.service WatchdogTimestamp)"

say "systemctl kill -s SIGKILL svc@orders"
old=$(prop svc@orders.service MainPID)
g systemctl kill -s SIGKILL svc@orders.service
restarted() { [ "$(prop "$1" NRestarts)" -ge 1 ] && running "$1" && [ "$(prop "$1" MainPID)" != "$2" ]; }
check "svc@orders restarted after SIGKILL (Restart=on-failure)" wait_for 15 restarted svc@orders.service "$old"
snapshot "after SIGKILL of svc@orders" svc@orders.service
g journalctl --no-pager -o short-precise -u svc@orders.service --since=-20s |
  grep -E 'KILL|signal|Scheduled restart|Started|"event":"ready"' | tail -n 6 | sed 's/^/  /' || true

say "a hung svc@inventory (SIGSTOP): the watchdog must kill and restart it"
old=$(prop svc@inventory.service MainPID)
g systemctl kill -s SIGSTOP --kill-whom=main svc@inventory.service
check "svc@inventory killed by the watchdog and restarted" \
  wait_for $((wd + 15)) restarted svc@inventory.service "$old"
snapshot "after the watchdog on svc@inventory" svc@inventory.service
g journalctl --no-pager -o short-precise -u svc@inventory.service --since=-40s |
  grep -E 'Watchdog|ABRT|watchdog|Scheduled restart|Started' | tail -n 6 | sed 's/^/  /' || true

# --- stop -------------------------------------------------------------------------
say "systemctl stop svc.target"
t0=$SECONDS
stop_since=$(g date +%s)
g systemctl stop svc.target
check "every svc@ unit stopped" wait_for 40 all_inactive
echo "  took $((SECONDS - t0)) s"
stopped_ok() {
  local u ok=0
  for u in "${units[@]}"; do
    if [ "$(prop "$u" Result)" != success ] || [ "$(prop "$u" ExecMainStatus)" != 0 ]; then
      echo "  $u: Result=$(prop "$u" Result) ExecMainStatus=$(prop "$u" ExecMainStatus)"; ok=1
    fi
  done
  return "$ok"
}
check "stops were clean (exit 0, Result=success, no SIGKILL)" stopped_ok
# The registry stops last (install.sh's drop-in), so every role deregistered from it.
deregistered() {
  ! g journalctl --no-pager -q -o cat -u 'svc@*' --since "@$stop_since" | grep 'deregistration failed'
}
check "every role deregistered before the registry stopped" deregistered
snapshot "after stop" "${units[@]}" svc.target
g journalctl --no-pager -o cat -u svc@orders.service -n 4 | sed 's/^/  /'

say "the units' journal: seccomp and permission errors"
pattern='SIGSYS|status=31|seccomp|[Oo]peration not permitted|[Pp]ermission denied|[Rr]ead-only file system|EPERM|EACCES|EROFS'
g journalctl --no-pager -q -o short-precise -u 'svc@*' >"$work/journal.txt" || true
if grep -E "$pattern" "$work/journal.txt" >"$work/bad.txt"; then
  head -n 20 "$work/bad.txt" | sed 's/^/  /'
  fail "no seccomp/permission errors in journalctl -u 'svc@*'"
else
  pass "no seccomp/permission errors in journalctl -u 'svc@*' ($(wc -l <"$work/journal.txt") lines)"
fi
errors=$(grep -c '"level":"ERROR"' "$work/journal.txt" || true)
echo "  ERROR-level lines from svc: $errors"
grep '"level":"ERROR"' "$work/journal.txt" | head -n 5 | sed 's/^/  /' || true

# --- summary ----------------------------------------------------------------------
say "summary ($((SECONDS - started_at)) s in a $mode; svc $("$stage/svc" --version | awk '{ print $2 }'), $([ "$tls" -eq 1 ] && echo 'mutual TLS' || echo 'plain HTTP'), $(g systemctl --version | head -n1))"
printf '%s\n' "${snapshots[@]}"
echo
printf '%s\n' "${results[@]}"
if [ "$failed" -eq 0 ]; then
  echo "PASS: svc runs under systemd/svc@.service as installed by scripts/install.sh"
else
  echo "FAIL: see the FAIL lines above"
  exit 1
fi
