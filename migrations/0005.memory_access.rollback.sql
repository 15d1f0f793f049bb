-- Undo 0005.memory_access: the counts go back into memories.
ALTER TABLE memories ADD COLUMN access_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN last_access_time timestamptz;
UPDATE memories m SET access_count = a.access_count, last_access_time = a.last_access_time
    FROM memory_access a WHERE a.tenant_id = m.tenant_id AND a.memory_id = m.id;
DROP TABLE memory_access;
