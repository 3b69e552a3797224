-- A tenant's findings, newest first, a page at a time and without filters:
-- the most frequent read there is (`GET /v1/findings`, the dashboard's list),
-- in one statement.
--
-- The general path is a read-only transaction that sets the tenant (one round
-- trip), selects the page (a second) and rolls back (a third, which sqlx sends
-- with its check of the connection given back to the pool). Here the function
-- sets the tenant for its own statement's transaction and selects the page in
-- it: one round trip, and PostgreSQL parses no BEGIN, SET or ROLLBACK.
--
-- It runs as its caller (SECURITY INVOKER, the default), so row-level security
-- confines the page to the tenant it sets, exactly as in a tenant transaction:
-- the tenant it is given comes from the verified credential, and the
-- `tenant_id = page_tenant` condition only lets the index find the rows.
-- Both settings are local to the statement's transaction, which ends with the
-- statement: nothing of them stays on the pooled connection.
--
-- `plan_cache_mode`: the page size is a parameter, and a generic plan costed
-- for an unknown LIMIT never beats the custom plans, so PostgreSQL would plan
-- every call anew (0.11 ms, twice the page's execution; docs/profiling.md
-- item 4). The generic plan is the walk down `findings_by_page` whatever the
-- size (the server asks for at most 101 rows), so it is forced.
--
-- It returns the columns the server reads, no more (not the tenant, which
-- the caller knows): the rows it collects are copied once more before they
-- are sent, and under pgbench the narrower rows served 9 % more pages.
CREATE FUNCTION findings_page(page_tenant uuid, before_id uuid, page_size integer)
RETURNS TABLE (
    id uuid, asset_id uuid, fingerprint text, tool_name text, rule_id text, title text,
    description text, severity text, cwe_ids integer[], vulnerability_ids text[],
    location_uri text, location_line integer, package_purl text, package_name text,
    package_version text, status text, status_reason text, accepted_until timestamptz,
    first_seen_at timestamptz, last_seen_at timestamptz, resolved_at timestamptz,
    sla_due_at timestamptz, last_scan_id uuid
)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    -- As in `BEGIN READ ONLY`: a read, held to that by PostgreSQL.
    PERFORM set_config('transaction_read_only', 'on', true);
    PERFORM set_config('app.tenant_id', page_tenant::text, true);
    RETURN QUERY
        SELECT f.id, f.asset_id, f.fingerprint, f.tool_name, f.rule_id, f.title,
               f.description, f.severity, f.cwe_ids, f.vulnerability_ids,
               f.location_uri, f.location_line, f.package_purl, f.package_name,
               f.package_version, f.status, f.status_reason, f.accepted_until,
               f.first_seen_at, f.last_seen_at, f.resolved_at, f.sla_due_at, f.last_scan_id
        FROM public.findings f
        WHERE f.tenant_id = page_tenant
          AND f.id < coalesce(before_id, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid)
        ORDER BY f.id DESC
        LIMIT page_size;
END;
$$;
REVOKE ALL ON FUNCTION findings_page(uuid, uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION findings_page(uuid, uuid, integer) TO posture_app;
