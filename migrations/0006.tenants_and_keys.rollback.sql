-- Undo 0006.tenants_and_keys (the role stays: other databases may use it).
-- Together: each holds a policy or a key that refers to the other.
DROP TABLE api_keys, tenants;
DROP FUNCTION memoryd_presented_key();
DO $$
BEGIN
    EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM memoryd_operator', current_schema());
END
$$;
