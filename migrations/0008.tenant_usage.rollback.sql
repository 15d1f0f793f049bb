-- Undo 0008.tenant_usage.
DROP TRIGGER memories_count_inserts ON memories;
DROP TRIGGER memories_count_deletes ON memories;
DROP TRIGGER conversations_count_inserts ON conversations;
DROP TRIGGER conversations_count_deletes ON conversations;
DROP FUNCTION memoryd_count_rows();
DROP TABLE tenant_usage;
