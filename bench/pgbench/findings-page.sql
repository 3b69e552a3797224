-- The database read's transaction for pgbench: the ceiling PostgreSQL alone
-- reaches for `GET /v1/findings?limit=50` on this machine (README,
-- Performance). Against a database kept by `bash bench/run.sh
-- --keep-database`, as the superuser (row-level security does not apply to
-- it, so the page filters on the tenant itself):
--
--   psql -h 127.0.0.1 -U postgres -d <db> -c "CREATE TABLE bench_tenants AS
--     SELECT row_number() OVER (ORDER BY id) AS n, id FROM tenants
--     WHERE tier = 'enterprise' ORDER BY id LIMIT 1000;
--     CREATE UNIQUE INDEX ON bench_tenants (n)"
--   pgbench -h 127.0.0.1 -U postgres -n -M prepared -c 8 -j 2 -T 10 \
--     -f bench/pgbench/findings-page.sql <db>
--
-- and `DROP TABLE bench_tenants` afterwards.
\set n random(1, 1000)
BEGIN;
SELECT set_config('app.tenant_id', (SELECT id::text FROM bench_tenants WHERE n = :n), true);
SELECT * FROM findings WHERE tenant_id = (SELECT id FROM bench_tenants WHERE n = :n) ORDER BY id DESC LIMIT 50;
ROLLBACK;
