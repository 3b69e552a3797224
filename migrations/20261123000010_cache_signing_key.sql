-- A key only PostgreSQL and the servers know, with which servers authenticate
-- what they cache in Redis: whoever can write to Redis must not be able to
-- forge an API key's credentials (issue 5 review). 32 random bytes from two
-- v4 UUIDs (244 random bits); generated once, when the schema is created.
CREATE TABLE cache_signing_keys (
    id  smallint PRIMARY KEY CHECK (id = 1),
    key bytea    NOT NULL CHECK (length(key) = 32)
);
INSERT INTO cache_signing_keys (id, key)
VALUES (1, decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));
GRANT SELECT ON cache_signing_keys TO posture_app;
