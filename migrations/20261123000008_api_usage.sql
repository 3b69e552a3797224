-- Rate limits and quotas (issue 6): the durable record of API-key requests
-- admitted per tenant per UTC day and month. Redis holds the live counters;
-- every server adds what it admitted here every few seconds, so a Redis loss
-- or flush does not reset a tenant's usage, and counters are re-seeded from
-- these rows (a counter never reads below them).
CREATE TABLE api_usage (
    tenant_id    uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- 'day' or 'month'; period_start is the day, or the first of the month.
    period       text        NOT NULL CHECK (period IN ('day', 'month')),
    period_start date        NOT NULL,
    requests     bigint      NOT NULL CHECK (requests >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, period, period_start)
);

ALTER TABLE api_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_usage FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_usage
    USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid));
GRANT SELECT ON api_usage TO posture_app;

-- Flushing and seeding are cross-tenant by nature (one statement for every
-- tenant a server saw), so they run as the owner (SECURITY DEFINER) with
-- nothing but counts passing in and out.

-- Adds admitted requests: one element per (tenant, period, start, count).
-- Additive, so servers flushing concurrently never lose each other's counts.
CREATE FUNCTION add_api_usage(
    tenant_ids uuid[], periods text[], period_starts date[], counts bigint[]
) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    INSERT INTO api_usage AS u (tenant_id, period, period_start, requests)
    SELECT d.tenant_id, d.period, d.period_start, sum(d.requests)
    FROM unnest(tenant_ids, periods, period_starts, counts)
             AS d (tenant_id, period, period_start, requests)
    -- A tenant deleted since its requests were counted has nothing to add to.
    WHERE EXISTS (SELECT 1 FROM tenants t WHERE t.id = d.tenant_id)
    GROUP BY d.tenant_id, d.period, d.period_start
    ON CONFLICT (tenant_id, period, period_start)
    DO UPDATE SET requests = u.requests + EXCLUDED.requests, updated_at = now();
$$;
REVOKE ALL ON FUNCTION add_api_usage(uuid[], text[], date[], bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION add_api_usage(uuid[], text[], date[], bigint[]) TO posture_app;

-- The usage of the given day and month of the given tenants (NULL: every
-- tenant, as a starting server asks): the counters' floors.
CREATE FUNCTION current_api_usage(day date, month date, tenant_ids uuid[])
RETURNS TABLE (tenant_id uuid, period text, requests bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT u.tenant_id, u.period, u.requests
    FROM api_usage u
    WHERE ((u.period = 'day' AND u.period_start = day)
           OR (u.period = 'month' AND u.period_start = month))
      AND (tenant_ids IS NULL OR u.tenant_id = ANY (tenant_ids));
$$;
REVOKE ALL ON FUNCTION current_api_usage(date, date, uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION current_api_usage(date, date, uuid[]) TO posture_app;

-- Old days are of no use to the limiter; months are kept for a year.
CREATE FUNCTION prune_api_usage(keep_days_after date, keep_months_after date)
RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    WITH pruned AS (
        DELETE FROM api_usage
        WHERE (period = 'day' AND period_start < keep_days_after)
           OR (period = 'month' AND period_start < keep_months_after)
        RETURNING 1
    )
    SELECT count(*) FROM pruned;
$$;
REVOKE ALL ON FUNCTION prune_api_usage(date, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION prune_api_usage(date, date) TO posture_app;
