#!/usr/bin/env python3
"""Measures the foundation's figures on this machine and prints them.

- release binary size;
- time from `svc dev` launch to every role ready and registered;
- RSS of each idle instance;
- time from SIGKILL of an instance to its eviction from the registry (median of N).

Usage: scripts/measure-foundation.py [--tries 5] [--config config/dev.yaml]
Builds the release binary first. Uses ports 17700/18080 and a temporary data dir.
"""
import argparse, json, os, signal, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "svc")
REGISTRY = "http://127.0.0.1:17700"


def catalog():
    with urllib.request.urlopen(REGISTRY + "/v1/catalog", timeout=2) as r:
        return json.load(r)


def instances():
    return {i["instance_id"]: i for role in catalog()["roles"].values() for i in role}


def pids_by_instance():
    out = subprocess.run(["pgrep", "-af", BIN + " run"], capture_output=True, text=True).stdout
    pids = {}
    for line in out.splitlines():
        parts = line.split()
        if "--instance-id" in parts:
            pids[parts[parts.index("--instance-id") + 1]] = int(parts[0])
    return pids


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tries", type=int, default=5)
    ap.add_argument("--config", default=None, help="config passed to svc dev (lease TTL etc.)")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    print(f"release binary: {os.path.getsize(BIN) / 1e6:.1f} MB")

    data = tempfile.mkdtemp(prefix="svc-measure-")
    cmd = [BIN, "dev", "--data-dir", data, "--registry-port", "17700", "--gateway-port", "18080"]
    if args.config:
        cmd += ["--config", args.config]
    t0 = time.monotonic()
    dev = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        # svc dev prints its table on stdout only once every instance is ready and registered.
        for line in dev.stdout:
            if line.startswith("ROLE"):
                break
        ready = time.monotonic() - t0
        print(f"svc dev launch -> every role ready and registered: {ready:.2f} s")
        time.sleep(2)
        pids = pids_by_instance()
        for inst, pid in sorted(pids.items()):
            print(f"idle RSS {inst:<18} {rss_kib(pid) / 1024:.1f} MiB")

    finally:
        dev.send_signal(signal.SIGTERM)
        try:
            dev.wait(timeout=30)
        except subprocess.TimeoutExpired:
            dev.kill()
    measure_eviction(args.tries, args.config)


def measure_eviction(tries, config):
    """SIGKILL an instance that nobody restarts and time its eviction from the registry.

    svc dev would restart the instance under the same id before the lease runs out, so
    this uses a registry and one instance started with `svc run`.
    """
    data = tempfile.mkdtemp(prefix="svc-measure-evict-")
    conf = ["--config", config] if config else []
    registry = subprocess.Popen([BIN, "run", "--role", "registry", "--listen", "127.0.0.1:17700",
                                 "--data-dir", data, "--instance-id", "registry-0"] + conf,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        registry.stdout.readline()
        times = []
        for n in range(tries):
            inst = f"payments-{n}"
            victim = subprocess.Popen([BIN, "run", "--role", "payments", "--listen", "127.0.0.1:0",
                                       "--data-dir", data, "--instance-id", inst,
                                       "--registry", REGISTRY],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            victim.stdout.readline()
            while inst not in instances():
                time.sleep(0.01)
            time.sleep(1.0)  # a few renewals in, like a real instance
            t_kill = time.monotonic()
            victim.kill()
            victim.wait()
            while inst in instances():
                time.sleep(0.005)
            times.append(time.monotonic() - t_kill)
        lease = "config " + config if config else "default lease (TTL 3s, renew 1s)"
        print(f"SIGKILL -> evicted from the registry ({lease}): "
              + ", ".join(f"{t:.2f}" for t in times)
              + f" s; median {statistics.median(times):.2f} s")
    finally:
        registry.send_signal(signal.SIGTERM)
        registry.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
