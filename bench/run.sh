#!/usr/bin/env bash
#
# The load harness (issue 8), one command:
#
#   bash bench/run.sh [--tenants 1000] [--seconds 15] [--warm-up 3] [--connections 64] [--threads 2]
#                     [--findings 1700] [--big-tenants 3] [--big-findings 100000] [--keep-database]
#
# Installs wrk (Debian's package) if it is missing, checks PostgreSQL, Redis and
# the roles (scripts/setup.sh), builds the release `posture` binary and the
# harness, then seeds a database of its own (dropped at the end), starts
# `posture serve` against it and measures each scenario with wrk beside a bare
# axum "hello" measured the same way. Prints a Markdown table; the JSON goes to
# $CARGO_TARGET_DIR/bench/load.json. Takes about 5 minutes with the defaults.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/posture-target}

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
echo "+ cargo bench -p posture --bench load -- $*"
cargo bench -p posture --bench load -- "$@"
