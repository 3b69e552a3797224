-- Issue 4: precomputed posture, daily snapshots, custom frameworks, and the job
-- that keeps the first two current.

-- One row per tenant: the posture and compliance views, computed in the
-- background whenever the tenant's findings change, so GET /v1/posture is one
-- primary-key read rather than an aggregate over every finding.
CREATE TABLE posture_summaries (
    tenant_id      uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- The start of the (repeatable-read) transaction the data was read in. A
    -- refresh writes only over an older one, so concurrent refreshes cannot
    -- replace a newer view with a staler one.
    computed_at    timestamptz NOT NULL,
    score          smallint    NOT NULL CHECK (score BETWEEN 0 AND 100),
    grade          text        NOT NULL CHECK (grade IN ('A', 'B', 'C', 'D', 'F')),
    posture        jsonb       NOT NULL,
    compliance     jsonb       NOT NULL,
    -- When the view goes stale with no change to the data: the next SLA due date
    -- of a live finding, or the next UTC midnight (a new daily snapshot).
    refresh_due_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id)
);

-- The last view of each UTC day, for trends.
CREATE TABLE posture_snapshots (
    tenant_id          uuid             NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    day                date             NOT NULL,
    computed_at        timestamptz      NOT NULL,
    score              smallint         NOT NULL CHECK (score BETWEEN 0 AND 100),
    grade              text             NOT NULL CHECK (grade IN ('A', 'B', 'C', 'D', 'F')),
    open_total         integer          NOT NULL,
    open_by_severity   jsonb            NOT NULL,
    sla_breaches       integer          NOT NULL,
    -- Over the built-in frameworks; NULL when no control was assessed.
    compliance_percent double precision CHECK (compliance_percent BETWEEN 0 AND 100),
    -- Framework id -> percent (or null).
    frameworks         jsonb            NOT NULL,
    PRIMARY KEY (tenant_id, day)
);

-- A tenant's own frameworks (premium and above): controls mapped to CWE ids and
-- rule patterns, validated by the API and stored as the tenant wrote them.
CREATE TABLE custom_frameworks (
    tenant_id   uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          uuid        NOT NULL,
    name        text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    description text        CHECK (char_length(description) <= 2000),
    controls    jsonb       NOT NULL CHECK (jsonb_typeof(controls) = 'array'),
    revision    integer     NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

DO $$
DECLARE
    table_name text;
BEGIN
    FOREACH table_name IN ARRAY ARRAY['posture_summaries', 'posture_snapshots', 'custom_frameworks']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', table_name);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', table_name);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I
                 USING (tenant_id = (SELECT NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid))
                 WITH CHECK (tenant_id = (SELECT NULLIF(current_setting(''app.tenant_id'', true), '''')::uuid))',
            table_name);
    END LOOP;
END;
$$;

GRANT SELECT, INSERT, UPDATE ON posture_summaries TO posture_app;
GRANT SELECT, INSERT, UPDATE ON posture_snapshots TO posture_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON custom_frameworks TO posture_app;

-- A second job kind. At most one refresh per tenant waits at a time: changes
-- that arrive while one is queued are covered by it; a change during a running
-- refresh queues the next one.
ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check CHECK (kind IN ('process_scan', 'refresh_posture'));
CREATE UNIQUE INDEX jobs_one_queued_refresh ON jobs (tenant_id)
    WHERE kind = 'refresh_posture' AND status = 'queued';
-- Finished refreshes are deleted by their worker; they have nothing to show.
GRANT DELETE ON jobs TO posture_app;

-- Daily snapshots and SLA breaches change with the clock, not only with data:
-- workers call this periodically to queue a refresh for every active tenant
-- whose view is due (or missing). Owner-run (SECURITY DEFINER) like claim_jobs().
CREATE FUNCTION queue_due_posture_refreshes(max_tenants integer)
RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    WITH due AS (
        SELECT t.id AS tenant_id
        FROM tenants t LEFT JOIN posture_summaries p ON p.tenant_id = t.id
        WHERE t.status = 'active' AND (p.tenant_id IS NULL OR p.refresh_due_at <= now())
        ORDER BY p.refresh_due_at NULLS FIRST
        LIMIT greatest(max_tenants, 0)
    ),
    queued AS (
        INSERT INTO jobs (tenant_id, id, kind, max_attempts)
        SELECT tenant_id, gen_random_uuid(), 'refresh_posture', 3 FROM due
        ON CONFLICT (tenant_id) WHERE kind = 'refresh_posture' AND status = 'queued' DO NOTHING
        RETURNING 1
    )
    SELECT count(*)::integer FROM queued;
$$;
REVOKE ALL ON FUNCTION queue_due_posture_refreshes(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION queue_due_posture_refreshes(integer) TO posture_app;

-- Reopening lapsed risk acceptances changes posture: queue a refresh for each
-- tenant affected, in the same statement.
CREATE OR REPLACE FUNCTION reopen_expired_risk_acceptances(max_findings integer)
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
    ),
    refreshes AS (
        INSERT INTO jobs (tenant_id, id, kind, max_attempts)
        SELECT affected.tenant_id, gen_random_uuid(), 'refresh_posture', 3
        FROM (SELECT DISTINCT tenant_id FROM reopened) affected
        -- Lock a refresh already queued so no worker claims it before this
        -- commits (see queue_posture_refresh in jobs/queue.rs).
        ON CONFLICT (tenant_id) WHERE kind = 'refresh_posture' AND status = 'queued'
        DO UPDATE SET updated_at = now()
        RETURNING 1
    )
    SELECT count(*)::integer FROM recorded;
$$;
