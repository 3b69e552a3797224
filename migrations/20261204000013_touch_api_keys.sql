-- Recording API keys' use for every tenant a server saw in one statement.
-- The last-used recorder wrote one transaction per tenant (tenant setting and
-- BEGIN, UPDATE, COMMIT: three round trips and a WAL flush each), so a server
-- that had just served 1,000 tenants' keys ran 1,000 transactions in a row,
-- each holding one of its few pooled connections (docs/profiling.md item 21).
-- Runs as the owner, like add_api_usage: it takes (tenant, key) pairs the
-- server read from verified credentials, sets nothing but last_used_at, and
-- dates it by the database's clock, so a caller can neither touch another
-- column nor move a key's last use into the future or the past.
CREATE FUNCTION touch_api_keys(tenant_ids uuid[], key_ids text[]) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    touched bigint;
BEGIN
    -- The server sends at most 1,000 pairs a statement.
    IF cardinality(tenant_ids) IS DISTINCT FROM cardinality(key_ids)
       OR cardinality(tenant_ids) > 10000 THEN
        RAISE EXCEPTION 'touch_api_keys takes equally many tenants and keys, at most 10000';
    END IF;
    -- As before, a key written within the last minute is skipped: at most one
    -- row version a key and minute, however many servers report it.
    UPDATE api_keys k SET last_used_at = now()
    FROM unnest(tenant_ids, key_ids) AS d (tenant_id, key_id)
    WHERE k.tenant_id = d.tenant_id AND k.key_id = d.key_id
      AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute');
    GET DIAGNOSTICS touched = ROW_COUNT;
    RETURN touched;
END;
$$;
REVOKE ALL ON FUNCTION touch_api_keys(uuid[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION touch_api_keys(uuid[], text[]) TO posture_app;
