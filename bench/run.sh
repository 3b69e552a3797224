#!/usr/bin/env bash
#
# The load harness (issue 8), one command:
#
#   bash bench/run.sh [--tenants 1000] [--seconds 10] [--warm-up 2] [--connections 64] [--threads 2]
#                     [--findings 1700] [--big-tenants 3] [--big-findings 100000] [--other-tenants 30]
#                     [--spike-scans 1000] [--spike-tenants 50] [--spike-findings 100]
#                     [--spike-read-rate 1000] [--spike-concurrency 64]
#                     [--no-reference] [--reference-dir /work/shared/reference-stack]
#                     [--no-ingest] [--ingest-sizes 10000,100000] [--ingest-runs N]
#                     [--keep-database]
#
# Installs wrk (Debian's package) if it is missing, checks PostgreSQL, Redis and
# the roles (scripts/setup.sh), builds the release `posture` binary, then:
#
# 1. runs the ingestion benchmark (`cargo bench -p posture --bench ingest`, a
#    10,000- and a 100,000-result report through the worker's path; its JSON
#    goes to $CARGO_TARGET_DIR/bench/ingest.json), unless --no-ingest;
#    --ingest-sizes and --ingest-runs are its --sizes and --runs;
# 2. runs the load harness (`cargo bench -p posture --bench load`), which
#    - runs the stack we replace first (the FastAPI reference's run.sh, copied
#      to /var/tmp/posture-reference-stack, results in
#      $CARGO_TARGET_DIR/bench/reference/) with the same wrk settings, unless
#      --no-reference; its SKIP_SETUP, QUIET_WAIT and MAX_TRIES knobs pass
#      through from the environment. Beware: it flushes Redis before each of
#      its runs, and the first time raises PostgreSQL's max_connections to 200
#      and restarts PostgreSQL;
#    - seeds a database of its own (dropped at the end): 1,000 enterprise load
#      tenants, a free tenant for the 429 path, 30 free/basic/premium tenants;
#    - starts `posture serve` against it and measures each scenario with wrk
#      beside a bare axum "hello" measured the same way (alone first, then
#      again just before each read scenario, for its ratio);
#    - runs the scan spike: 1,000 scans of 100 findings from 50 tenants while
#      cached reads go out at a fixed 1,000/s (--spike-scans 0 skips it);
#    - prints Markdown tables (with the ingestion rows and Posture's figures as
#      ratios to the reference's); the JSON goes to
#      $CARGO_TARGET_DIR/bench/load.json.
#
# Takes 7 to 14 minutes with the defaults once built, as fast as the machine is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/posture-target}

# The ingestion flags are this script's; everything else goes to the harness.
ingest=1
ingest_args=(--sizes 10000,100000)
load_args=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --no-ingest) ingest=0 ;;
        --ingest-sizes) ingest_args[1]=${2:?--ingest-sizes needs a value}; shift ;;
        --ingest-runs) ingest_args+=(--runs "${2:?--ingest-runs needs a value}"); shift ;;
        *) load_args+=("$1") ;;
    esac
    shift
done

if ! command -v wrk >/dev/null 2>&1; then
    echo "+ apt-get install -y wrk"
    if [[ $(id -u) -eq 0 ]]; then
        apt-get install -y wrk >/dev/null
    else
        sudo apt-get install -y wrk >/dev/null
    fi
fi

bash scripts/setup.sh
echo "+ cargo build --release --bin posture"
cargo build --release --bin posture
export POSTURE_BIN=$CARGO_TARGET_DIR/release/posture

if [[ $ingest == 1 ]]; then
    ingest_json=$CARGO_TARGET_DIR/bench/ingest.json
    rm -f "$ingest_json"
    echo "+ cargo bench -p posture --bench ingest -- ${ingest_args[*]}"
    POSTURE_BENCH_OUT=$ingest_json cargo bench -p posture --bench ingest -- "${ingest_args[@]}"
    load_args+=(--ingest-json "$ingest_json")
fi

echo "+ cargo bench -p posture --bench load -- ${load_args[*]}"
cargo bench -p posture --bench load -- "${load_args[@]}"
