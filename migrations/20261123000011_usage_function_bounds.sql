-- Defence in depth for the usage functions of 0008 (issue 6 review): they run
-- as the owner, so they take no more from their caller than they must.
-- Pruning decides its own cutoffs (a week of days, a year of months) rather
-- than taking dates that could erase current usage; adding refuses counts no
-- single flush could hold.
DROP FUNCTION prune_api_usage(date, date);
CREATE FUNCTION prune_api_usage() RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    WITH pruned AS (
        DELETE FROM api_usage
        WHERE (period = 'day' AND period_start < current_date - 7)
           OR (period = 'month' AND period_start < (date_trunc('month', now()) - interval '12 months')::date)
        RETURNING 1
    )
    SELECT count(*) FROM pruned;
$$;
REVOKE ALL ON FUNCTION prune_api_usage() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION prune_api_usage() TO posture_app;

CREATE OR REPLACE FUNCTION add_api_usage(
    tenant_ids uuid[], periods text[], period_starts date[], counts bigint[]
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    -- A server flushes every few seconds; no tenant admits this many requests
    -- in between (enterprise: 1,000 a minute).
    IF EXISTS (SELECT 1 FROM unnest(counts) AS c (n) WHERE n < 0 OR n > 1000000) THEN
        RAISE EXCEPTION 'usage counts must be between 0 and 1000000';
    END IF;
    INSERT INTO api_usage AS u (tenant_id, period, period_start, requests)
    SELECT d.tenant_id, d.period, d.period_start, sum(d.requests)
    FROM unnest(tenant_ids, periods, period_starts, counts)
             AS d (tenant_id, period, period_start, requests)
    WHERE EXISTS (SELECT 1 FROM tenants t WHERE t.id = d.tenant_id)
    GROUP BY d.tenant_id, d.period, d.period_start
    ON CONFLICT (tenant_id, period, period_start)
    DO UPDATE SET requests = u.requests + EXCLUDED.requests, updated_at = now();
END;
$$;
