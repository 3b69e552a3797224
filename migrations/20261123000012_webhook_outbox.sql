-- Webhooks, part 2 (issue 7): the outbox of events, one delivery per event and
-- endpoint, and the log of every attempt. Events are written in the same
-- transaction as the change that causes them; the dispatcher claims due
-- deliveries across tenants only through claim_webhook_deliveries() below and
-- does everything else in the delivery's tenant transaction.

-- The score an endpoint was last told about (posture.score_changed compares
-- against it, so a slow drift is reported once it adds up to the threshold).
ALTER TABLE webhooks ADD COLUMN score_baseline smallint CHECK (score_baseline BETWEEN 0 AND 100);
-- When the platform disabled the endpoint (with disabled_reason).
ALTER TABLE webhooks ADD COLUMN disabled_at timestamptz;

CREATE TABLE webhook_events (
    tenant_id   uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          uuid        NOT NULL,
    event_type  text        NOT NULL CHECK (length(event_type) <= 64),
    -- The whole body sent: {"type", "version", "timestamp", "data"}.
    payload     jsonb       NOT NULL CHECK (pg_column_size(payload) <= 65536),
    -- Events that must be sent at most once per period (quota warnings) carry
    -- a key, unique per tenant: servers racing to emit one insert it once.
    dedupe_key  text        CHECK (length(dedupe_key) <= 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX webhook_events_dedupe ON webhook_events (tenant_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL;

CREATE TABLE webhook_deliveries (
    tenant_id        uuid        NOT NULL,
    id               uuid        NOT NULL,
    webhook_id       uuid        NOT NULL,
    event_id         uuid        NOT NULL,
    -- pending: waiting for next_attempt_at; sending: claimed by a dispatcher
    -- until locked_until; succeeded; failed: out of attempts, or the endpoint
    -- was disabled.
    status           text        NOT NULL DEFAULT 'pending'
                                 CHECK (status IN ('pending', 'sending', 'succeeded', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- NULL: the configured schedule decides; a manual retry of a finished
    -- delivery allows exactly one more attempt.
    max_attempts     integer     CHECK (max_attempts BETWEEN 1 AND 1000),
    next_attempt_at  timestamptz,
    locked_by        text,
    locked_until     timestamptz,
    last_status_code integer,
    last_latency_ms  integer,
    last_error       text        CHECK (length(last_error) <= 2000),
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, webhook_id) REFERENCES webhooks (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, event_id) REFERENCES webhook_events (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (tenant_id, webhook_id, id DESC);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (tenant_id, event_id);
-- Like jobs_claimable, the one kind of index not led by tenant_id: the
-- dispatcher claims the earliest due delivery of any tenant. Partial, so it
-- holds only unfinished deliveries. Allow-listed in the schema guard.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status IN ('pending', 'sending');

-- Every attempt of a delivery: the delivery log.
CREATE TABLE webhook_attempts (
    tenant_id        uuid        NOT NULL,
    delivery_id      uuid        NOT NULL,
    attempt          integer     NOT NULL CHECK (attempt >= 1),
    attempted_at     timestamptz NOT NULL,
    status_code      integer,
    latency_ms       integer     NOT NULL,
    error            text        CHECK (length(error) <= 2000),
    response_excerpt text        CHECK (length(response_excerpt) <= 4096),
    PRIMARY KEY (tenant_id, delivery_id, attempt),
    FOREIGN KEY (tenant_id, delivery_id) REFERENCES webhook_deliveries (tenant_id, id) ON DELETE CASCADE
);

DO $$
DECLARE
    table_name text;
BEGIN
    FOREACH table_name IN ARRAY ARRAY['webhook_events', 'webhook_deliveries', 'webhook_attempts']
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

GRANT SELECT, INSERT ON webhook_events TO posture_app;
GRANT SELECT, INSERT, UPDATE ON webhook_deliveries TO posture_app;
GRANT SELECT, INSERT ON webhook_attempts TO posture_app;

-- Deliveries in flight per endpoint (the claim's fairness cap reads it).
CREATE INDEX webhook_deliveries_sending ON webhook_deliveries (tenant_id, webhook_id)
    WHERE status = 'sending';

-- claim_webhook_deliveries: the dispatcher's only cross-tenant read. Runs as
-- the owner and returns identities only; the dispatcher then reads each
-- delivery in its tenant's transaction. A delivery is claimable when pending
-- and due, or sending with an expired lease (its dispatcher died mid-attempt:
-- that attempt counted, and the delivery is sent again: at least once).
-- Claiming counts the attempt.
--
-- Fairness: at most per_endpoint deliveries of one endpoint are in flight at
-- once, so one slow or hanging endpoint cannot take every sending slot from
-- the other tenants. A delivery whose expired attempts reach its limit
-- (max_attempts, else automatic_attempts) fails here: an attempt whose outcome
-- could never be recorded is not retried forever.
CREATE FUNCTION claim_webhook_deliveries(worker text, max_deliveries integer, lease interval,
                                         per_endpoint integer, automatic_attempts integer)
RETURNS TABLE (tenant_id uuid, delivery_id uuid, attempt integer)
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    WITH abandoned AS (
        UPDATE webhook_deliveries d
        SET status = 'failed', next_attempt_at = NULL, locked_by = NULL, locked_until = NULL,
            last_error = 'the outcome of the last attempt could not be recorded',
            updated_at = now()
        WHERE d.status IN ('pending', 'sending') AND d.next_attempt_at <= now()
          AND (d.status = 'pending' OR d.locked_until < now())
          AND d.attempts >= coalesce(d.max_attempts, automatic_attempts)
        RETURNING d.id
    ),
    due AS (
        SELECT d.tenant_id, d.id, d.webhook_id, d.next_attempt_at,
               row_number() OVER (PARTITION BY d.tenant_id, d.webhook_id
                                  ORDER BY d.next_attempt_at) AS place
        FROM webhook_deliveries d
        WHERE d.status IN ('pending', 'sending')
          AND d.next_attempt_at <= now()
          -- The complement of `abandoned` (disjoint: no row is changed twice).
          AND d.attempts < coalesce(d.max_attempts, automatic_attempts)
        ORDER BY d.next_attempt_at
        LIMIT 1000
    ),
    fair AS (
        SELECT due.tenant_id, due.id
        FROM due
        WHERE due.place + (SELECT count(*) FROM webhook_deliveries s
                           WHERE s.tenant_id = due.tenant_id AND s.webhook_id = due.webhook_id
                             AND s.status = 'sending' AND s.locked_until > now())
              <= greatest(per_endpoint, 1)
    ),
    candidates AS (
        -- The conditions again: they are re-checked on the locked row.
        SELECT d.tenant_id, d.id
        FROM webhook_deliveries d
        WHERE (d.tenant_id, d.id) IN (SELECT fair.tenant_id, fair.id FROM fair)
          AND d.attempts < coalesce(d.max_attempts, automatic_attempts)
          AND d.status IN ('pending', 'sending')
          AND d.next_attempt_at <= now()
          AND (d.status = 'pending' OR d.locked_until < now())
        ORDER BY d.next_attempt_at
        LIMIT least(greatest(max_deliveries, 0), 1000)
        FOR UPDATE SKIP LOCKED
    )
    UPDATE webhook_deliveries d
    SET status = 'sending', attempts = d.attempts + 1, locked_by = worker,
        locked_until = now() + lease,
        -- Keeps the row in the due index, ordered by when a dead dispatcher's
        -- lease lets another take it over.
        next_attempt_at = now() + lease,
        updated_at = now()
    FROM candidates c
    WHERE d.tenant_id = c.tenant_id AND d.id = c.id
    RETURNING d.tenant_id, d.id, d.attempts;
$$;
REVOKE ALL ON FUNCTION claim_webhook_deliveries(text, integer, interval, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_webhook_deliveries(text, integer, interval, integer, integer) TO posture_app;

-- Pruning reads events across tenants by age. Like the claim index, global by
-- design, non-unique; allow-listed in the schema guard.
CREATE INDEX webhook_events_by_created ON webhook_events (created_at);

-- Retention: events older than keep_days whose deliveries are all finished go,
-- with their deliveries and attempts; at most max_events per call.
CREATE FUNCTION prune_webhook_events(keep_days integer, max_events integer)
RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    WITH old AS (
        SELECT e.tenant_id, e.id
        FROM webhook_events e
        WHERE e.created_at < now() - make_interval(days => greatest(keep_days, 1))
          AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                          WHERE d.tenant_id = e.tenant_id AND d.event_id = e.id
                            AND d.status IN ('pending', 'sending'))
        LIMIT least(greatest(max_events, 0), 100000)
        FOR UPDATE SKIP LOCKED
    ),
    deleted AS (
        DELETE FROM webhook_events e USING old
        WHERE e.tenant_id = old.tenant_id AND e.id = old.id
        RETURNING 1
    )
    SELECT count(*) FROM deleted;
$$;
REVOKE ALL ON FUNCTION prune_webhook_events(integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION prune_webhook_events(integer, integer) TO posture_app;
