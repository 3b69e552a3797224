#!/usr/bin/env bash
#
# Run Posture locally with a demo tenant: make sure PostgreSQL and Redis are up
# and the database and roles exist (scripts/setup.sh), build the release
# binary, migrate, create the demo tenant and print its API key, then serve.
# Stop with Ctrl-C (graceful shutdown).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# One build directory outside the checkout, shared by every clone and CI.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/posture-target}

# The binary's defaults match scripts/setup.sh's defaults; follow any override
# of the server or database name (an explicit URL wins).
pg=${POSTURE_PG_HOST:-127.0.0.1}:${POSTURE_PG_PORT:-5432}/${POSTURE_PG_DB:-posture}
export POSTURE_ADMIN_DATABASE_URL=${POSTURE_ADMIN_DATABASE_URL:-postgres://posture_owner:posture_owner@$pg}
export DATABASE_URL=${DATABASE_URL:-postgres://posture_app:posture_app@$pg}

bash scripts/setup.sh
cargo build --release --bin posture
posture=$CARGO_TARGET_DIR/release/posture
"$posture" migrate
"$posture" demo
exec "$posture" serve
