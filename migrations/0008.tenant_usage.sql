-- What each tenant stores (memories, conversations), counted by triggers, so
-- quota checks read a few counter rows instead of counting a tenant's rows.
--
-- A tenant has up to 16 counter rows (slots) per kind, and its usage is their
-- sum. A writing transaction adds to the slot of its transaction id: one slot
-- for all its statements (so it never waits on itself in another order), and
-- concurrent writers of one tenant, whose ids differ, mostly land on
-- different slots: they do not queue behind one counter row. The triggers are
-- per statement, on inserted and deleted rows, so every path is counted: the
-- API, batches, imports, the expiry purge, erasure. A slot may go negative
-- (rows deleted by a writer of another slot); the sum stays exact.
-- depends: 0007.actors

CREATE TABLE tenant_usage (
    tenant_id text     NOT NULL,
    kind      text     NOT NULL CHECK (kind IN ('memories', 'conversations')),
    slot      smallint NOT NULL CHECK (slot BETWEEN 0 AND 15),
    n         bigint   NOT NULL,
    PRIMARY KEY (tenant_id, kind, slot)
);

-- Runs as the writer (memoryd_app for its own tenant, memoryd_maintenance for
-- the cross-tenant purge): row-level security applies to the counters too.
CREATE FUNCTION memoryd_count_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    my_slot smallint := (pg_current_xact_id()::text::bigint % 16)::smallint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO tenant_usage AS u (tenant_id, kind, slot, n)
            SELECT r.tenant_id, TG_ARGV[0], my_slot, count(*) FROM new_rows r
            GROUP BY r.tenant_id ORDER BY r.tenant_id
            ON CONFLICT (tenant_id, kind, slot) DO UPDATE SET n = u.n + EXCLUDED.n;
    ELSE
        INSERT INTO tenant_usage AS u (tenant_id, kind, slot, n)
            SELECT r.tenant_id, TG_ARGV[0], my_slot, -count(*) FROM old_rows r
            GROUP BY r.tenant_id ORDER BY r.tenant_id
            ON CONFLICT (tenant_id, kind, slot) DO UPDATE SET n = u.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END
$$;

-- Creating the triggers locks out writers until this migration commits, so
-- the backfill below counts exactly the rows the triggers will not see.
CREATE TRIGGER memories_count_inserts AFTER INSERT ON memories
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION memoryd_count_rows('memories');
CREATE TRIGGER memories_count_deletes AFTER DELETE ON memories
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION memoryd_count_rows('memories');
CREATE TRIGGER conversations_count_inserts AFTER INSERT ON conversations
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION memoryd_count_rows('conversations');
CREATE TRIGGER conversations_count_deletes AFTER DELETE ON conversations
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION memoryd_count_rows('conversations');

-- Row-level security is forced on the owner too, which would hide every row
-- from the count: lift it for this transaction only (other sessions wait on
-- the lock until commit).
ALTER TABLE memories NO FORCE ROW LEVEL SECURITY;
ALTER TABLE conversations NO FORCE ROW LEVEL SECURITY;
INSERT INTO tenant_usage (tenant_id, kind, slot, n)
    SELECT tenant_id, 'memories', 0, count(*) FROM memories GROUP BY tenant_id
    UNION ALL
    SELECT tenant_id, 'conversations', 0, count(*) FROM conversations GROUP BY tenant_id;
ALTER TABLE memories FORCE ROW LEVEL SECURITY;
ALTER TABLE conversations FORCE ROW LEVEL SECURITY;

GRANT SELECT, INSERT, UPDATE ON tenant_usage TO memoryd_app, memoryd_maintenance;
GRANT SELECT ON tenant_usage TO memoryd_operator;

ALTER TABLE tenant_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_usage FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_usage
    USING (tenant_id = current_setting('memoryd.tenant', true))
    WITH CHECK (tenant_id = current_setting('memoryd.tenant', true));
CREATE POLICY maintenance ON tenant_usage TO memoryd_maintenance USING (true) WITH CHECK (true);
-- GetTenant and ListTenants show any tenant's usage to operators.
CREATE POLICY operator_read ON tenant_usage FOR SELECT TO memoryd_operator USING (true);
