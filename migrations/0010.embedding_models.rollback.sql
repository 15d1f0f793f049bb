-- Undo 0010.embedding_models. Vectors of any model but the most used one are
-- dropped: the single typed column holds one dimension.
DROP TABLE memory_reembed;
DROP TRIGGER memories_default_occur_time ON memories;
DROP FUNCTION memoryd_default_occur_time();
DROP INDEX memories_occur_time_idx;
ALTER TABLE memories DROP COLUMN occur_time;
ALTER TABLE tenants DROP COLUMN embedding_model;
DROP POLICY maintenance ON tenants;
REVOKE SELECT ON tenants FROM memoryd_maintenance;
DROP POLICY maintenance ON messages;
REVOKE SELECT, UPDATE ON messages FROM memoryd_maintenance;
ALTER TABLE messages DROP COLUMN search_text, DROP COLUMN embed_model,
    DROP COLUMN embedding_model, DROP COLUMN embedding;
DO $$
DECLARE
    dim integer := coalesce(nullif(current_setting('memoryd.embedding_dim', true), ''), '1536')::integer;
    r record;
BEGIN
    FOR r IN SELECT indexrelid::regclass AS idx FROM pg_index
        WHERE indrelid = 'memories'::regclass
          AND indexrelid::regclass::text LIKE 'memories_embedding_m%' LOOP
        EXECUTE format('DROP INDEX %s', r.idx);
    END LOOP;
    UPDATE memories SET embedding = NULL WHERE embedding IS NOT NULL AND vector_dims(embedding) <> dim;
    EXECUTE format('ALTER TABLE memories ALTER COLUMN embedding TYPE vector(%s)', dim);
    CREATE INDEX memories_embedding_idx ON memories USING hnsw (embedding vector_cosine_ops)
        WITH (m = 16, ef_construction = 64);
END
$$;
DROP FUNCTION memoryd_create_embedding_indexes(text);
DROP TABLE embedding_models;
