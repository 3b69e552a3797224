#!/usr/bin/env bash
#
# Run the whole test suite: make sure PostgreSQL and Redis are up and the
# database and roles exist (scripts/setup.sh), drop test databases a previous
# run left behind, then run every test of the workspace. Integration tests
# create their own databases (cloned from a migrated template) and connect as
# the restricted application role.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/posture-target}

bash scripts/setup.sh
# The caching tests start (and kill, and pause) a redis-server of their own,
# so the binary must be here even when the shared Redis runs elsewhere.
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
have redis-server || apt_install redis-server
bash scripts/drop-test-databases.sh

# Doc tests first (nextest cannot run them), so the suite's closing summary is
# the main runner's. Both always run; the script fails if either failed.
status=0
if cargo nextest --version >/dev/null 2>&1; then
    echo "+ cargo test --workspace --doc"
    cargo test --workspace --doc || status=$?
    echo "+ cargo nextest run --workspace --no-fail-fast"
    cargo nextest run --workspace --no-fail-fast || status=$?
else
    echo "+ cargo test --workspace --no-fail-fast"
    cargo test --workspace --no-fail-fast || status=$?
fi
exit "$status"
