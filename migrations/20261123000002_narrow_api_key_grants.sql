-- Least privilege on api_keys: the application only ever records use
-- (last_used_at) and revokes (revoked_at). Without this, any future SQL bug in
-- the server could rewrite a key's hash, scopes or expiry, or un-revoke it.
REVOKE UPDATE ON api_keys FROM posture_app;
GRANT UPDATE (last_used_at, revoked_at) ON api_keys TO posture_app;

-- Revocation is final, whoever updates the row.
CREATE FUNCTION api_keys_revocation_is_final() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at THEN
        RAISE EXCEPTION 'a revoked API key cannot be restored or re-dated'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER api_keys_revocation_is_final
    BEFORE UPDATE OF revoked_at ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_keys_revocation_is_final();
