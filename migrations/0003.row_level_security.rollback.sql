-- Undo 0003.row_level_security (the roles stay: other databases may use them).
DROP POLICY maintenance ON memory_snapshots;
DROP POLICY tenant_isolation ON memory_snapshots;
ALTER TABLE memory_snapshots NO FORCE ROW LEVEL SECURITY;
ALTER TABLE memory_snapshots DISABLE ROW LEVEL SECURITY;
DROP POLICY maintenance ON memory_events;
DROP POLICY tenant_isolation ON memory_events;
ALTER TABLE memory_events NO FORCE ROW LEVEL SECURITY;
ALTER TABLE memory_events DISABLE ROW LEVEL SECURITY;
DROP POLICY maintenance ON memories;
DROP POLICY tenant_isolation ON memories;
ALTER TABLE memories NO FORCE ROW LEVEL SECURITY;
ALTER TABLE memories DISABLE ROW LEVEL SECURITY;
DROP POLICY maintenance ON idempotency_keys;
DROP POLICY tenant_isolation ON idempotency_keys;
ALTER TABLE idempotency_keys NO FORCE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys DISABLE ROW LEVEL SECURITY;
DROP POLICY tenant_isolation ON messages;
ALTER TABLE messages NO FORCE ROW LEVEL SECURITY;
ALTER TABLE messages DISABLE ROW LEVEL SECURITY;
DROP POLICY tenant_isolation ON conversations;
ALTER TABLE conversations NO FORCE ROW LEVEL SECURITY;
ALTER TABLE conversations DISABLE ROW LEVEL SECURITY;
REVOKE ALL ON conversations, messages, idempotency_keys, memories, memory_events,
    memory_snapshots, server_secrets FROM memoryd_app, memoryd_maintenance;
DO $$
BEGIN
    EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM memoryd_app, memoryd_maintenance',
                   current_schema());
END
$$;
