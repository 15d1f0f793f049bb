-- Row-level security: every tenant table admits only the rows of the tenant the
-- transaction declared (set_config('memoryd.tenant', ..., true)). Requests run
-- as memoryd_app, which neither owns the tables nor bypasses RLS, so a query
-- that forgets its WHERE tenant_id still sees one tenant, and a transaction
-- that declared none sees nothing. The server's cross-tenant upkeep (expiry)
-- runs as memoryd_maintenance, whose own policy admits every row of the few
-- tables it may touch.
-- depends: 0002.memories

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'memoryd_app') THEN
        CREATE ROLE memoryd_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'memoryd_maintenance') THEN
        CREATE ROLE memoryd_maintenance NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
    -- The server's login user switches to them with SET ROLE.
    EXECUTE format('GRANT memoryd_app, memoryd_maintenance TO %I', current_user);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO memoryd_app, memoryd_maintenance',
                   current_schema());
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON conversations, messages, idempotency_keys, memories
    TO memoryd_app;
GRANT SELECT, INSERT ON memory_events TO memoryd_app;
GRANT SELECT, INSERT, DELETE ON memory_snapshots TO memoryd_app;
GRANT SELECT, INSERT ON server_secrets TO memoryd_app;
GRANT SELECT, UPDATE, DELETE ON memories TO memoryd_maintenance;
GRANT SELECT, INSERT ON memory_events TO memoryd_maintenance;
GRANT SELECT, INSERT, DELETE ON memory_snapshots TO memoryd_maintenance;
GRANT SELECT, DELETE ON idempotency_keys TO memoryd_maintenance;

ALTER TABLE conversations ENABLE ROW LEVEL SECURITY;
ALTER TABLE conversations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON conversations
    USING (tenant_id = current_setting('memoryd.tenant', true))
    WITH CHECK (tenant_id = current_setting('memoryd.tenant', true));

ALTER TABLE messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE messages FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON messages
    USING (tenant_id = current_setting('memoryd.tenant', true))
    WITH CHECK (tenant_id = current_setting('memoryd.tenant', true));

ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON idempotency_keys
    USING (tenant_id = current_setting('memoryd.tenant', true))
    WITH CHECK (tenant_id = current_setting('memoryd.tenant', true));
CREATE POLICY maintenance ON idempotency_keys TO memoryd_maintenance USING (true) WITH CHECK (true);

ALTER TABLE memories ENABLE ROW LEVEL SECURITY;
ALTER TABLE memories FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memories
    USING (tenant_id = current_setting('memoryd.tenant', true))
    WITH CHECK (tenant_id = current_setting('memoryd.tenant', true));
CREATE POLICY maintenance ON memories TO memoryd_maintenance USING (true) WITH CHECK (true);

ALTER TABLE memory_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory_events
    USING (tenant_id = current_setting('memoryd.tenant', true))
    WITH CHECK (tenant_id = current_setting('memoryd.tenant', true));
CREATE POLICY maintenance ON memory_events TO memoryd_maintenance USING (true) WITH CHECK (true);

ALTER TABLE memory_snapshots ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_snapshots FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory_snapshots
    USING (tenant_id = current_setting('memoryd.tenant', true))
    WITH CHECK (tenant_id = current_setting('memoryd.tenant', true));
CREATE POLICY maintenance ON memory_snapshots TO memoryd_maintenance USING (true) WITH CHECK (true);
