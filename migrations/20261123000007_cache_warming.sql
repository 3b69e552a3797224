-- Cache warming (issue 5): a starting server loads the posture views of the
-- most recently active tenants before it accepts requests. Which tenants those
-- are is a cross-tenant question, so it is answered by the owner (SECURITY
-- DEFINER), and the answer is nothing but tenant ids; each view is then read in
-- its own tenant transaction.
CREATE FUNCTION recently_active_tenants(max_tenants integer)
RETURNS TABLE (tenant_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT p.tenant_id
    FROM posture_summaries p JOIN tenants t ON t.id = p.tenant_id
    WHERE t.status = 'active'
    ORDER BY p.computed_at DESC
    LIMIT greatest(max_tenants, 0);
$$;
REVOKE ALL ON FUNCTION recently_active_tenants(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION recently_active_tenants(integer) TO posture_app;
