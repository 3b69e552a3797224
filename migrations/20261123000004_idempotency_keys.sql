-- Idempotency keys (the IETF "Idempotency-Key" header draft, as Stripe does it): a client
-- retrying a POST with the same key gets the first response again instead of a second
-- scan, asset or API key. See crates/posture/src/http/idempotency.rs and docs/ingestion.md.
--
-- One row per (tenant, key, method, path): the same key string on another route, or used
-- by another tenant, is a different entry. A row is 'in_flight' while its first request
-- runs (held by lock_token until locked_until, after which another request may take it
-- over: the first one's process died), then 'completed' with the response to replay
-- until expires_at. Same isolation rules as every tenant table.

CREATE TABLE idempotency_keys (
    tenant_id        uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key              text        NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    method           text        NOT NULL CHECK (char_length(method) BETWEEN 1 AND 16),
    path             text        NOT NULL CHECK (char_length(path) BETWEEN 1 AND 2048),
    -- SHA-256 of the request (method, path, query, content type, body): a different
    -- request under the same key is refused, never answered with another's response.
    request_hash     bytea       NOT NULL CHECK (octet_length(request_hash) = 32),
    status           text        NOT NULL CHECK (status IN ('in_flight', 'completed')),
    -- Which request holds an in-flight row: only the holder may complete or release it,
    -- so a request whose lock expired and was taken over cannot overwrite the new holder.
    lock_token       uuid        NOT NULL,
    response_status  integer     CHECK (response_status BETWEEN 100 AND 599),
    -- Only the headers worth replaying: Location and Content-Type.
    response_headers jsonb,
    response_body    bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    locked_until     timestamptz,
    expires_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, key, method, path),
    CHECK (status = 'in_flight' OR (response_status IS NOT NULL AND response_body IS NOT NULL))
);
-- Sweeping a tenant's expired keys.
CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (tenant_id, expires_at);

ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON idempotency_keys
    USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid));

GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO posture_app;
