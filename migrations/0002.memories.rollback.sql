-- Undo 0002.memories.
DROP TABLE memory_snapshots;
DROP TABLE memory_events;
DROP FUNCTION memoryd_refuse_history_change();
DROP TABLE memories;
