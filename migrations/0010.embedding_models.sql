-- Embedding models side by side, event time, and searchable messages.
--
-- Every vector belongs to the model named in its row's embedding_model, and a
-- search compares only vectors of one model. The embedding columns are untyped
-- so models of different dimensions can share them; each model has its own
-- partial HNSW index over its rows, cast to its dimension.
-- depends: 0009.api_key_columns

CREATE TABLE embedding_models (
    name        text        PRIMARY KEY CHECK (length(name) <= 256),
    -- Names the model's partial indexes (memories_embedding_m<id>_idx, ...).
    id          integer     GENERATED ALWAYS AS IDENTITY UNIQUE,
    dimension   integer     NOT NULL CHECK (dimension BETWEEN 1 AND 2000),
    -- external: callers send the vectors; local: the server's own model;
    -- openai: an OpenAI-compatible endpoint.
    provider    text        NOT NULL DEFAULT 'external'
                            CHECK (provider IN ('external', 'local', 'openai')),
    endpoint    text        NOT NULL DEFAULT '',
    create_time timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT ON embedding_models TO memoryd_app, memoryd_maintenance;

-- A model's indexes. Runs as the tables' owner (migrations, server start-up and
-- memoryd reembed), never from a request. Index builds on rows of a new model
-- are instant: it has none yet.
CREATE FUNCTION memoryd_create_embedding_indexes(model text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m embedding_models;
BEGIN
    SELECT * INTO STRICT m FROM embedding_models WHERE name = model;
    EXECUTE format(
        'CREATE INDEX IF NOT EXISTS %I ON memories USING hnsw'
        ' ((embedding::vector(%s)) vector_cosine_ops) WITH (m = 16, ef_construction = 64)'
        ' WHERE embedding_model = %L',
        'memories_embedding_m' || m.id || '_idx', m.dimension, m.name);
    EXECUTE format(
        'CREATE INDEX IF NOT EXISTS %I ON messages USING hnsw'
        ' ((embedding::vector(%s)) vector_cosine_ops) WITH (m = 16, ef_construction = 64)'
        ' WHERE embedding_model = %L',
        'messages_embedding_m' || m.id || '_idx', m.dimension, m.name);
END
$$;
REVOKE ALL ON FUNCTION memoryd_create_embedding_indexes(text) FROM PUBLIC;

-- Messages: vectors (filled in after the append, off the request path), and a
-- text index. Only the first 100,000 characters are text-indexed: a tsvector
-- holds at most 1 MB.
ALTER TABLE messages
    ADD COLUMN embedding       vector,
    ADD COLUMN embedding_model text    NOT NULL DEFAULT '',
    -- The model to embed it with, chosen by the server that took the append;
    -- NULL once embedded (or when nothing will embed it).
    ADD COLUMN embed_model     text,
    ADD COLUMN search_text     tsvector GENERATED ALWAYS AS
        (to_tsvector('english', left(content, 100000))) STORED;
CREATE INDEX messages_search_text_idx ON messages USING gin (search_text);
CREATE INDEX messages_embed_pending_idx ON messages (create_time) WHERE embed_model IS NOT NULL;
-- SearchMessages by time without a vector or text: newest first.
CREATE INDEX messages_time_idx ON messages (tenant_id, create_time DESC);
GRANT SELECT, UPDATE ON messages TO memoryd_maintenance;
CREATE POLICY maintenance ON messages TO memoryd_maintenance USING (true) WITH CHECK (true);

-- The existing vectors: every model name they carry becomes a registered model
-- of the column's dimension, with its index; the old single index goes.
DO $$
DECLARE
    dim integer;
    label text;
BEGIN
    SELECT atttypmod INTO dim FROM pg_attribute
        WHERE attrelid = 'memories'::regclass AND attname = 'embedding';
    DROP INDEX memories_embedding_idx;
    ALTER TABLE memories ALTER COLUMN embedding TYPE vector;
    FOR label IN SELECT DISTINCT embedding_model FROM memories WHERE embedding IS NOT NULL LOOP
        INSERT INTO embedding_models (name, dimension) VALUES (label, dim);
        PERFORM memoryd_create_embedding_indexes(label);
    END LOOP;
END
$$;

-- A tenant's serving model; NULL: the server's configured one. memoryd reembed
-- sets it when it moves a tenant to another model.
ALTER TABLE tenants ADD COLUMN embedding_model text REFERENCES embedding_models (name);

-- When the thing a memory records happened (callers and importers set it);
-- recency is measured from it.
ALTER TABLE memories ADD COLUMN occur_time timestamptz;
UPDATE memories SET occur_time = create_time;
ALTER TABLE memories ALTER COLUMN occur_time SET NOT NULL,
    ALTER COLUMN occur_time SET DEFAULT now();
CREATE INDEX memories_occur_time_idx ON memories (tenant_id, occur_time);

-- memoryd reembed: vectors of the target model, computed while the old ones
-- keep serving, swapped in by one transaction per tenant. Only the command
-- touches it, as memoryd_maintenance.
CREATE TABLE memory_reembed (
    tenant_id text   NOT NULL,
    memory_id uuid   NOT NULL,
    model     text   NOT NULL REFERENCES embedding_models (name),
    -- The memory's version when embedded: a newer version is embedded again.
    version   bigint NOT NULL,
    embedding vector NOT NULL,
    PRIMARY KEY (tenant_id, model, memory_id)
);
ALTER TABLE memory_reembed ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_reembed FORCE ROW LEVEL SECURITY;
CREATE POLICY maintenance ON memory_reembed TO memoryd_maintenance USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON memory_reembed TO memoryd_maintenance;
-- The switch: the command sets a tenant's serving model as memoryd_maintenance.
GRANT SELECT, UPDATE (embedding_model) ON tenants TO memoryd_maintenance;
CREATE POLICY maintenance ON tenants TO memoryd_maintenance USING (true) WITH CHECK (true);

-- A memory created without an occur_time happened when it was created. A
-- trigger rather than a default: inserts and COPY name every column.
CREATE FUNCTION memoryd_default_occur_time() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.occur_time := coalesce(NEW.occur_time, NEW.create_time);
    RETURN NEW;
END
$$;
CREATE TRIGGER memories_default_occur_time BEFORE INSERT OR UPDATE OF occur_time ON memories
    FOR EACH ROW EXECUTE FUNCTION memoryd_default_occur_time();
