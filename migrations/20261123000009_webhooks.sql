-- Webhooks (issue 7): the endpoints a tenant registers. (The outbox of events
-- and the deliveries come with the dispatcher.) Tenant-owned like everything
-- else: tenant_id leads every key, row-level security is forced.
CREATE TABLE webhooks (
    tenant_id        uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id               uuid        NOT NULL,
    url              text        NOT NULL CHECK (length(url) <= 2048),
    description      text        CHECK (length(description) <= 500),
    -- The event types the endpoint wants (validated by the application).
    event_types      text[]      NOT NULL CHECK (cardinality(event_types) > 0),
    -- finding.created is sent for findings of at least this severity.
    min_severity     text        NOT NULL DEFAULT 'high',
    -- posture.score_changed is sent when the score moves by at least this.
    score_threshold  integer     NOT NULL DEFAULT 5 CHECK (score_threshold BETWEEN 1 AND 100),
    -- whsec_… The dispatcher needs it to sign, so it is kept, not hashed.
    secret           text        NOT NULL,
    -- The secret before the last rotation, also signed with until it expires.
    previous_secret  text,
    previous_secret_expires_at timestamptz,
    enabled          boolean     NOT NULL DEFAULT true,
    -- Why the platform disabled it (410 Gone, failing for 5 days); NULL if
    -- enabled or disabled by the tenant.
    disabled_reason  text,
    -- The first failed delivery of the current failure streak.
    failing_since    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

ALTER TABLE webhooks ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhooks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhooks
    USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid));

GRANT SELECT, INSERT, UPDATE, DELETE ON webhooks TO posture_app;
