-- Undo 0007.actors.
ALTER TABLE messages DROP COLUMN created_by, DROP COLUMN created_by_name;
ALTER TABLE conversations
    DROP COLUMN created_by, DROP COLUMN created_by_name,
    DROP COLUMN updated_by, DROP COLUMN updated_by_name;
ALTER TABLE memory_events DROP COLUMN actor_name;
