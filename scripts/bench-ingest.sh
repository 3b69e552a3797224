#!/usr/bin/env bash
#
# Ingestion benchmark: make sure PostgreSQL and the roles exist
# (scripts/setup.sh), build in release mode and process a synthetic SARIF
# report of 10,000 and of 100,000 results end to end (parse, fingerprint, bulk
# upsert, lifecycle) in a database of its own, created and dropped by the
# benchmark. Prints a Markdown table; the JSON of every run goes to
# $CARGO_TARGET_DIR/bench/ingest.json (or $POSTURE_BENCH_OUT).
#
# Arguments go to the benchmark, e.g.:
#   bash scripts/bench-ingest.sh --sizes 10000 --runs 9
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/posture-target}

bash scripts/setup.sh
echo "+ cargo bench -p posture --bench ingest -- $*"
cargo bench -p posture --bench ingest -- "$@"
