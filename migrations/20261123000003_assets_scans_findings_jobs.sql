-- Scan ingestion: assets, scans with their stored reports, the durable job queue,
-- de-duplicated findings with their sightings and history, and per-tenant settings.
-- Every table follows the isolation rules of the first migration (tenant_id leads
-- every key and index; ENABLE + FORCE RLS with the tenant policy).

CREATE TABLE tenant_settings (
    tenant_id         uuid        PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    -- SLA: days from first sight to the due date, by severity.
    sla_critical_days integer     NOT NULL DEFAULT 7   CHECK (sla_critical_days BETWEEN 1 AND 3650),
    sla_high_days     integer     NOT NULL DEFAULT 30  CHECK (sla_high_days BETWEEN 1 AND 3650),
    sla_medium_days   integer     NOT NULL DEFAULT 90  CHECK (sla_medium_days BETWEEN 1 AND 3650),
    sla_low_days      integer     NOT NULL DEFAULT 180 CHECK (sla_low_days BETWEEN 1 AND 3650),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE assets (
    tenant_id   uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          uuid        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('repository', 'container_image', 'host', 'domain',
                                                     'url', 'cloud_account', 'saas_app')),
    name        text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 500),
    criticality text        NOT NULL DEFAULT 'medium'
                            CHECK (criticality IN ('low', 'medium', 'high', 'critical')),
    tags        text[]      NOT NULL DEFAULT '{}' CHECK (cardinality(tags) <= 50),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, kind, name)
);
CREATE INDEX assets_by_created ON assets (tenant_id, created_at DESC, id DESC);

CREATE TABLE scans (
    tenant_id       uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id              uuid        NOT NULL,
    asset_id        uuid        NOT NULL,
    tool_name       text,
    tool_version    text,
    format          text        NOT NULL CHECK (format IN ('sarif', 'cyclonedx', 'native')),
    scope           text        NOT NULL CHECK (scope IN ('full', 'partial')),
    status          text        NOT NULL DEFAULT 'queued'
                                CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    report_bytes    bigint      NOT NULL,
    submitted_at    timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    findings_total  integer,
    new_count       integer,
    reopened_count  integer,
    resolved_count  integer,
    unchanged_count integer,
    -- A failed scan's reason, as a problem-like object ({"kind", "pointer", "message"}).
    error           jsonb,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, asset_id) REFERENCES assets (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX scans_by_submitted ON scans (tenant_id, submitted_at DESC, id DESC);
CREATE INDEX scans_by_asset ON scans (tenant_id, asset_id, submitted_at DESC);

-- The submitted report, compressed; kept apart from scans so listing scans never
-- reads report bytes.
CREATE TABLE scan_reports (
    tenant_id    uuid  NOT NULL,
    scan_id      uuid  NOT NULL,
    content_type text  NOT NULL,
    encoding     text  NOT NULL CHECK (encoding IN ('gzip')),
    body         bytea NOT NULL,
    PRIMARY KEY (tenant_id, scan_id),
    FOREIGN KEY (tenant_id, scan_id) REFERENCES scans (tenant_id, id) ON DELETE CASCADE
);

-- The durable job queue. Workers claim jobs across tenants only through
-- claim_jobs() below; everything else about a job runs in its tenant's transaction.
CREATE TABLE jobs (
    tenant_id    uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id           uuid        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('process_scan')),
    scan_id      uuid,
    status       text        NOT NULL DEFAULT 'queued'
                             CHECK (status IN ('queued', 'running', 'succeeded', 'dead')),
    attempts     integer     NOT NULL DEFAULT 0,
    max_attempts integer     NOT NULL DEFAULT 5 CHECK (max_attempts BETWEEN 1 AND 100),
    run_at       timestamptz NOT NULL DEFAULT now(),
    -- Who holds the job and until when; an expired lease makes it claimable again.
    locked_by    text,
    locked_until timestamptz,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, scan_id) REFERENCES scans (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX jobs_by_scan ON jobs (tenant_id, scan_id);
-- The one index not led by tenant_id: workers claim the oldest runnable job of
-- any tenant. It is non-unique (no co-location constraint under Citus) and partial,
-- so it holds only pending work. Allow-listed in the schema guard.
CREATE INDEX jobs_claimable ON jobs (run_at) WHERE status IN ('queued', 'running');

CREATE TABLE findings (
    tenant_id         uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                uuid        NOT NULL,
    asset_id          uuid        NOT NULL,
    fingerprint       text        NOT NULL,
    -- The tool that first reported it (sightings list every tool that does).
    tool_name         text        NOT NULL,
    rule_id           text        NOT NULL,
    title             text        NOT NULL,
    description       text,
    severity          text        NOT NULL CHECK (severity IN ('info', 'low', 'medium', 'high', 'critical')),
    cwe_ids           integer[]   NOT NULL DEFAULT '{}',
    vulnerability_ids text[]      NOT NULL DEFAULT '{}',
    location_uri      text,
    location_line     integer,
    package_purl      text,
    package_name      text,
    package_version   text,
    status            text        NOT NULL DEFAULT 'open'
                                  CHECK (status IN ('open', 'resolved', 'reopened', 'false_positive', 'accepted_risk')),
    status_reason     text,
    accepted_until    timestamptz,
    first_seen_at     timestamptz NOT NULL,
    last_seen_at      timestamptz NOT NULL,
    resolved_at       timestamptz,
    sla_due_at        timestamptz,
    last_scan_id      uuid,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, asset_id, fingerprint),
    FOREIGN KEY (tenant_id, asset_id) REFERENCES assets (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX findings_by_status ON findings (tenant_id, status, severity);
CREATE INDEX findings_by_seen ON findings (tenant_id, last_seen_at DESC, id DESC);
CREATE INDEX findings_by_page ON findings (tenant_id, id DESC);

-- Which tools report a finding on its asset: a full scan by one tool removes only
-- that tool's sightings, and a finding is resolved when none remain.
CREATE TABLE finding_sightings (
    tenant_id    uuid        NOT NULL,
    finding_id   uuid        NOT NULL,
    tool_name    text        NOT NULL,
    asset_id     uuid        NOT NULL,
    last_scan_id uuid        NOT NULL,
    last_seen_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, finding_id, tool_name),
    FOREIGN KEY (tenant_id, finding_id) REFERENCES findings (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX finding_sightings_by_tool ON finding_sightings (tenant_id, asset_id, tool_name);

CREATE TABLE finding_events (
    tenant_id   uuid        NOT NULL,
    id          uuid        NOT NULL,
    finding_id  uuid        NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    kind        text        NOT NULL CHECK (kind IN ('created', 'reopened', 'resolved', 'severity_changed',
                                                     'triaged', 'risk_expired')),
    from_status text,
    to_status   text,
    scan_id     uuid,
    actor       text        NOT NULL,
    reason      text,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, finding_id) REFERENCES findings (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX finding_events_by_finding ON finding_events (tenant_id, finding_id, id);

DO $$
DECLARE
    table_name text;
BEGIN
    FOREACH table_name IN ARRAY ARRAY['tenant_settings', 'assets', 'scans', 'scan_reports', 'jobs',
                                      'findings', 'finding_sightings', 'finding_events']
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

GRANT SELECT, INSERT, UPDATE ON tenant_settings TO posture_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON assets TO posture_app;
GRANT SELECT, INSERT, UPDATE ON scans TO posture_app;
GRANT SELECT, INSERT ON scan_reports TO posture_app;
GRANT SELECT, INSERT, UPDATE ON jobs TO posture_app;
GRANT SELECT, INSERT, UPDATE ON findings TO posture_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON finding_sightings TO posture_app;
GRANT SELECT, INSERT ON finding_events TO posture_app;

-- claim_jobs: the only cross-tenant read the application may do. It runs as the
-- owner (SECURITY DEFINER; the owner bypasses RLS) and returns nothing but job
-- identities: the worker then opens a transaction bound to each job's tenant.
-- FOR UPDATE SKIP LOCKED lets many workers claim concurrently without blocking.
-- A job is claimable when queued and due, or running with an expired lease (its
-- worker died). Claiming counts an attempt; jobs out of attempts go dead here.
CREATE FUNCTION claim_jobs(worker text, max_jobs integer, lease interval)
RETURNS TABLE (tenant_id uuid, job_id uuid, kind text, scan_id uuid, attempt integer)
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    WITH expired AS (
        UPDATE jobs j SET status = 'dead', locked_by = NULL, locked_until = NULL, updated_at = now(),
                          last_error = coalesce(j.last_error, 'lease expired') || ' (attempts exhausted)'
        WHERE j.status = 'running' AND j.locked_until < now() AND j.attempts >= j.max_attempts
                RETURNING j.tenant_id, j.scan_id
    ),
    -- A scan whose job died with its worker on the last attempt fails visibly.
    failed_scans AS (
        UPDATE scans s SET status = 'failed', finished_at = now(),
                           error = jsonb_build_object('kind', 'worker_lost',
                                   'message', 'processing was interrupted on every attempt')
        FROM expired e
        WHERE s.tenant_id = e.tenant_id AND s.id = e.scan_id
        RETURNING s.id
    ),
    candidates AS (
        SELECT j.tenant_id, j.id
        FROM jobs j
        WHERE (j.status = 'queued' AND j.run_at <= now())
           OR (j.status = 'running' AND j.locked_until < now() AND j.attempts < j.max_attempts)
        ORDER BY j.run_at
        LIMIT greatest(max_jobs, 0)
        FOR UPDATE SKIP LOCKED
    )
    UPDATE jobs j
    SET status = 'running', attempts = j.attempts + 1, locked_by = worker,
        locked_until = now() + lease, updated_at = now()
    FROM candidates c
    WHERE j.tenant_id = c.tenant_id AND j.id = c.id
    RETURNING j.tenant_id, j.id, j.kind, j.scan_id, j.attempts;
$$;
REVOKE ALL ON FUNCTION claim_jobs(text, integer, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_jobs(text, integer, interval) TO posture_app;
