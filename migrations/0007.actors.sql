-- Who changed what: the API key (its id and its name at the time) behind each
-- memory history event and each conversation or message write. Rows written
-- before this migration keep '' (unknown). A constant default is stored in the
-- catalog, so none of these tables is rewritten.
-- depends: 0006.tenants_and_keys

-- The append-only triggers refuse UPDATE and DELETE of rows, not new columns.
ALTER TABLE memory_events ADD COLUMN actor_name text NOT NULL DEFAULT '';

ALTER TABLE conversations
    ADD COLUMN created_by      text NOT NULL DEFAULT '',
    ADD COLUMN created_by_name text NOT NULL DEFAULT '',
    ADD COLUMN updated_by      text NOT NULL DEFAULT '',
    ADD COLUMN updated_by_name text NOT NULL DEFAULT '';

ALTER TABLE messages
    ADD COLUMN created_by      text NOT NULL DEFAULT '',
    ADD COLUMN created_by_name text NOT NULL DEFAULT '';
