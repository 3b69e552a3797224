#!/usr/bin/env bash
#
# Drop the per-test databases a previous test run left behind: every database
# named posture_test_%, and the template databases posture_tpl_% they are
# cloned from. Run by `make test` before the suite, so a crashed or killed run
# cannot make the cluster fill up over time. (It drops them all, so it must
# not run while another test suite is using the same server.)
#
# Uses the same server settings and superuser access as scripts/setup.sh.
set -euo pipefail

PROG=drop-test-databases
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

check_settings
pg_ready || die "no PostgreSQL answers at $POSTURE_PG_HOST:$POSTURE_PG_PORT; run scripts/setup.sh first"

# In LIKE, '_' matches any character: escape it (backslash is LIKE's default
# escape character) so only these exact prefixes match.
filter="datname LIKE 'posture\\_test\\_%' OR datname LIKE 'posture\\_tpl\\_%'"

count=$(as_superuser_psql postgres -c "SELECT count(*) FROM pg_database WHERE $filter")
((count > 0)) || exit 0

# \gexec runs each generated statement on its own, outside any transaction,
# which DROP DATABASE requires. A template database cannot be dropped until
# it is unmarked; WITH (FORCE) ends sessions still connected to it (e.g. from
# a test process that was killed mid-run). IF EXISTS: tolerate a database
# that disappeared meanwhile.
as_superuser_psql postgres <<SQL
SET client_min_messages = warning;
SELECT format('ALTER DATABASE %I IS_TEMPLATE false', datname)
  FROM pg_database WHERE datistemplate AND ($filter) \\gexec
SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', datname)
  FROM pg_database WHERE $filter \\gexec
SQL

say "dropped $count stale test database(s)"
