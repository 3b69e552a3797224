-- The database read's one statement for pgbench (docs/profiling.md item 22):
-- `GET /v1/findings?limit=50` without filters calls findings_page, which
-- binds the tenant for the statement's own transaction. As the app role, so
-- row-level security applies, against a database kept by `bash bench/run.sh
-- --keep-database` with the bench_tenants table of findings-page.sql, which
-- the app role must be able to read:
--
--   psql -h 127.0.0.1 -U postgres -d <db> -c "GRANT SELECT ON bench_tenants TO posture_app"
--   pgbench -h 127.0.0.1 -U posture_app -n -M prepared -c 8 -j 2 -T 10 \
--     -f bench/pgbench/findings-page-function.sql <db>
\set n random(1, 1000)
SELECT id, asset_id, fingerprint, tool_name, rule_id, title, description, severity, cwe_ids,
       vulnerability_ids, location_uri, location_line, package_purl, package_name,
       package_version, status, status_reason, accepted_until, first_seen_at, last_seen_at,
       resolved_at, sla_due_at, last_scan_id
FROM findings_page((SELECT id FROM bench_tenants WHERE n = :n), NULL, 51);
