#!/usr/bin/env bash
#
# Cached read benchmark: make sure PostgreSQL and Redis answer and the roles
# exist (scripts/setup.sh), build in release mode and measure GET /v1/posture
# (throughput, p50/p90/p99) with the view cache's L1 on (L1 + L2), L1 off
# (Redis only) and Redis down (circuit breaker open), then with rate limits on,
# and the 429 path (a free tenant over its limit), in a database of its own,
# created and dropped by the benchmark. The server runs in the benchmark's
# process, driven by a closed-loop client in the same process. Prints a
# Markdown table; the JSON goes to $CARGO_TARGET_DIR/bench/cached_read.json.
#
# Arguments go to the benchmark, e.g.:
#   bash scripts/bench-cached-read.sh --seconds 10 [--warm-up 2] [--tenants 2000] [--concurrency 64]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/posture-target}

bash scripts/setup.sh
echo "+ cargo bench -p posture --bench cached_read -- $*"
cargo bench -p posture --bench cached_read -- "$@"
