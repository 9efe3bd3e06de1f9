#!/usr/bin/env python3
"""What a JSON log file costs a request, end to end over HTTP.

Starts a registry and two inventory instances of the release build, one with
--log-file and one without, and calls `GET /v1/products/tea` on them alternately, in the
same run and in alternating order, so machine load hits both alike. Prints the p50/p90
of each and the size of an access line in the file.

Usage: scripts/measure-logging.py [requests per instance, default 5000]
Needs target/release/svc (cargo build --release). The in-process breakdown (metrics,
span, log line, without network noise) is tests/it/observe_cost.rs:
  cargo test --release --test observe_cost -- --ignored --nocapture
"""
import http.client, json, os, shutil, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "svc")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def start(data, args):
    """Starts `svc run ARGS` and returns (process, address from its ready line)."""
    p = subprocess.Popen([BIN, "run", "--listen", "127.0.0.1:0", "--data-dir", data] + args,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return p, json.loads(p.stdout.readline())["address"]


def connect(address):
    host, port = address.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port))


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    data = tempfile.mkdtemp(prefix="svc-measure-logging-")
    log = os.path.join(data, "logs", "logged.jsonl")
    procs = []
    try:
        reg, reg_url = start(data, ["--role", "registry", "--instance-id", "r"])
        procs.append(reg)
        targets = []
        for name, extra in (("no log file", []), ("log file", ["--log-file", log])):
            p, url = start(data, ["--role", "inventory", "--instance-id", name.replace(" ", "-"),
                                  "--registry", reg_url] + extra)
            procs.append(p)
            targets.append((name, connect(url), []))
        body = json.dumps({"sku": "tea", "name": "Tea", "price_minor": 1, "stock": 1})
        for _, c, _ in targets:
            c.request("POST", "/v1/products", body, {"content-type": "application/json"})
            c.getresponse().read()
        for i in range(n):
            for _, c, times in (targets if i % 2 else targets[::-1]):
                t0 = time.perf_counter()
                c.request("GET", "/v1/products/tea", headers={"traceparent": TRACEPARENT})
                c.getresponse().read()
                times.append(time.perf_counter() - t0)
        for name, _, times in targets:
            times.sort()
            print(f"{name:12} p50 {times[len(times) // 2] * 1e6:6.1f} µs   "
                  f"p90 {times[int(len(times) * 0.9)] * 1e6:6.1f} µs   ({n} requests)")
        with open(log) as f:
            access = [line for line in f if '"svc::span"' in line]
        print(f"log file: {len(access)} access lines, "
              f"{sum(map(len, access)) / len(access):.0f} bytes each on average")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
