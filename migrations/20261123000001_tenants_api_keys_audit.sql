-- The platform spine: tenants, API keys and the audit log.
--
-- Isolation rules every tenant-owned table follows (checked by the schema guard test):
--   * tenant_id uuid NOT NULL leads the primary key, every unique key, foreign key and index,
--     so the table can later be distributed by tenant_id (Citus) without redesign;
--   * ENABLE and FORCE row level security, with one policy comparing tenant_id to the
--     transaction-local setting app.tenant_id (set by the store's begin_tenant).
--
-- The policy reads the setting through NULLIF: once a pooled connection has run one tenant
-- transaction, current_setting returns '' (not NULL) outside it, and ''::uuid would raise an
-- error instead of matching no rows. The sub-select makes Postgres evaluate it once per
-- statement (an InitPlan) rather than once per row.
--
-- Roles are created by scripts/setup.sh, never here: posture_owner owns these objects and runs
-- migrations; posture_app is what the server connects as (not superuser, no BYPASSRLS, not the
-- owner), so row level security applies to it.

CREATE TABLE tenants (
    id          uuid        PRIMARY KEY,
    slug        text        NOT NULL UNIQUE,
    name        text        NOT NULL,
    tier        text        NOT NULL CHECK (tier IN ('free', 'basic', 'premium', 'enterprise')),
    status      text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The tenants table is keyed by the tenant's own id: a tenant sees only its own row.
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid));

CREATE TABLE api_keys (
    tenant_id    uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_id       text        NOT NULL CHECK (key_id ~ '^[0-9A-Za-z]{12}$'),
    name         text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    -- SHA-256 of the secret part of the token; the token itself is never stored.
    secret_hash  bytea       NOT NULL CHECK (octet_length(secret_hash) = 32),
    scopes       text[]      NOT NULL CHECK (cardinality(scopes) > 0
                                             AND scopes <@ ARRAY['read', 'write', 'admin']),
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz,
    PRIMARY KEY (tenant_id, key_id)
);
-- Listing newest first, paginated by (created_at, key_id).
CREATE INDEX api_keys_by_created ON api_keys (tenant_id, created_at DESC, key_id DESC);

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid));

CREATE TABLE audit_log (
    tenant_id   uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- UUIDv7: time ordered, so the primary key index also serves "newest first".
    id          uuid        NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    -- Who acted: "key:<key id>" for API keys, "operator" for the admin CLI.
    actor       text        NOT NULL,
    action      text        NOT NULL,
    target      text,
    details     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    request_id  text,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX audit_log_by_time ON audit_log (tenant_id, occurred_at DESC);

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_log
    USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid));

-- The application role: least privilege. It reads its tenant's row but never changes tiers or
-- status (operators do, as the owner); the audit log is append-only for it.
GRANT SELECT ON tenants TO posture_app;
GRANT SELECT, INSERT, UPDATE ON api_keys TO posture_app;
GRANT SELECT, INSERT ON audit_log TO posture_app;
