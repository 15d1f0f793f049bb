-- Access counts move out of memories: a search hit updating a memories row
-- rewrote a 2 KB row that rarely fits its page, so the update could not be HOT
-- and re-inserted the row into every index, the HNSW graph included. A narrow
-- table takes those writes instead.
-- depends: 0004.import_progress

CREATE TABLE memory_access (
    tenant_id        text        NOT NULL,
    memory_id        uuid        NOT NULL,
    access_count     bigint      NOT NULL DEFAULT 0,
    last_access_time timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, memory_id),
    FOREIGN KEY (tenant_id, memory_id) REFERENCES memories (tenant_id, id) ON DELETE CASCADE
);

INSERT INTO memory_access (tenant_id, memory_id, access_count, last_access_time)
    SELECT tenant_id, id, access_count, coalesce(last_access_time, update_time)
    FROM memories WHERE access_count > 0;

ALTER TABLE memories DROP COLUMN access_count, DROP COLUMN last_access_time;

GRANT SELECT, INSERT, UPDATE, DELETE ON memory_access TO memoryd_app;
GRANT SELECT ON memory_access TO memoryd_maintenance;
ALTER TABLE memory_access ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_access FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memory_access
    USING (tenant_id = current_setting('memoryd.tenant', true))
    WITH CHECK (tenant_id = current_setting('memoryd.tenant', true));
CREATE POLICY maintenance ON memory_access TO memoryd_maintenance USING (true) WITH CHECK (true);
