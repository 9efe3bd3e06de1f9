#!/usr/bin/env bash
# The registry at scale: registrations per second with 1,000 and 10,000 instances, then
# the CPU (fraction of a core) and resident memory of keeping 10,000 renewing each
# second. Real registry process, mutual TLS; see tests/it/registry_scale.rs for how it
# drives the load. The figures of docs/MEASUREMENTS.md ("The registry at scale").
#
#   scripts/bench-registry.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --release --test it bench_registry -- --ignored --nocapture --test-threads 1
