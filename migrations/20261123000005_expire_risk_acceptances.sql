-- Accepted risk lapses: a finding whose acceptance has expired reopens by itself,
-- whether or not a scan sees it again. Workers call this periodically; like
-- claim_jobs() it is the owner's (SECURITY DEFINER, so it crosses tenants) and
-- does one narrow thing, recording each reopening in the finding's history.
CREATE INDEX findings_accepted_until ON findings (tenant_id, accepted_until)
    WHERE status = 'accepted_risk';

CREATE FUNCTION reopen_expired_risk_acceptances(max_findings integer)
RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    WITH expired AS (
        SELECT tenant_id, id FROM findings
        WHERE status = 'accepted_risk' AND accepted_until <= now()
        ORDER BY accepted_until
        LIMIT greatest(max_findings, 0)
        FOR UPDATE SKIP LOCKED
    ),
    reopened AS (
        UPDATE findings f
        SET status = 'reopened', accepted_until = NULL, resolved_at = NULL
        FROM expired e
        WHERE f.tenant_id = e.tenant_id AND f.id = e.id
        RETURNING f.tenant_id, f.id
    ),
    recorded AS (
        INSERT INTO finding_events (tenant_id, id, finding_id, kind, from_status, to_status, actor, reason)
        SELECT r.tenant_id, gen_random_uuid(), r.id, 'risk_expired', 'accepted_risk', 'reopened', 'system',
               'the risk acceptance expired'
        FROM reopened r
        RETURNING 1
    )
    SELECT count(*)::integer FROM recorded;
$$;
REVOKE ALL ON FUNCTION reopen_expired_risk_acceptances(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION reopen_expired_risk_acceptances(integer) TO posture_app;
