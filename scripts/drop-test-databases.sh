#!/usr/bin/env bash
#
# Drop the per-test databases that earlier test runs left behind, so a crashed
# or killed run cannot make the cluster fill up over time. Run by
# scripts/test.sh before the suite.
#
# Safe beside a suite running from another clone on the same server: a test
# database is named posture_test_<unix time>_<random>, and only those older
# than POSTURE_TEST_DB_MAX_AGE_SECS (default 2 hours) are dropped. Template
# databases (posture_tpl_<migrations hash>, rebuilt in about a second) are
# dropped only when no test database is younger than that, i.e. when no suite
# can be cloning them.
#
# It connects as posture_owner, which owns every test database, so it needs
# no superuser access.
set -euo pipefail

PROG=drop-test-databases
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

check_settings
max_age=${POSTURE_TEST_DB_MAX_AGE_SECS:-7200}
[[ $max_age =~ ^[0-9]+$ ]] || die "POSTURE_TEST_DB_MAX_AGE_SECS='$max_age' must be a number of seconds"

owner_psql() {
    PGPASSWORD=posture_owner PGCONNECT_TIMEOUT=5 psql "${PSQL_FLAGS[@]}" \
        -h "$POSTURE_PG_HOST" -p "$POSTURE_PG_PORT" -U posture_owner -d postgres "$@"
}
owner_psql -c 'SELECT 1' >/dev/null ||
    die "cannot connect as posture_owner to $POSTURE_PG_HOST:$POSTURE_PG_PORT; run scripts/setup.sh first"

# In LIKE, '_' matches any character: escape it so only these prefixes match.
# The creation time is the third '_'-separated field of a test database name.
# Names without a time (an older naming scheme) count as stale.
# CASE, not OR: SQL does not promise to skip the cast for a non-numeric name.
stale_tests="datname LIKE 'posture\\_test\\_%' AND CASE
    WHEN split_part(datname, '_', 3) ~ '^[0-9]{1,18}\$'
    THEN split_part(datname, '_', 3)::bigint < extract(epoch FROM now())::bigint - $max_age
    ELSE true END"
recent_tests="datname LIKE 'posture\\_test\\_%' AND NOT ($stale_tests)"
templates="datname LIKE 'posture\\_tpl\\_%'
    AND NOT EXISTS (SELECT 1 FROM pg_database WHERE $recent_tests)"
# Benchmark databases (posture_bench_<unix time>) left by an interrupted
# scripts/bench-ingest.sh go by the same age rule.
stale_tests="($stale_tests) OR (datname LIKE 'posture\\_bench\\_%' AND CASE
    WHEN split_part(datname, '_', 3) ~ '^[0-9]{1,18}\$'
    THEN split_part(datname, '_', 3)::bigint < extract(epoch FROM now())::bigint - $max_age
    ELSE true END)"

count=$(owner_psql -c "SELECT count(*) FROM pg_database WHERE ($stale_tests) OR ($templates)")
((count > 0)) || exit 0

# \gexec runs each generated DROP on its own, outside a transaction, as DROP
# DATABASE requires. WITH (FORCE) ends sessions a killed test process left.
owner_psql <<SQL
SET client_min_messages = warning;
SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', datname)
  FROM pg_database WHERE ($stale_tests) OR ($templates) \gexec
SQL

say "dropped $count stale test database(s)"
