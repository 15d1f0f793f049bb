-- Long-term memories with embeddings, and their append-only history.
-- depends: 0001.conversations

-- namespace is kept twice: as the array callers see, and as ns_path, the
-- segments joined by U+001F (never inside a segment) in byte order, so a
-- namespace prefix is a btree range scan.
CREATE TABLE memories (
    tenant_id              text        NOT NULL,
    id                     uuid        NOT NULL,
    namespace              text[]      NOT NULL,
    ns_path                text        COLLATE "C" NOT NULL,
    key                    text,
    memory_type            text        NOT NULL DEFAULT 'semantic' CHECK (memory_type IN
                               ('semantic', 'episodic', 'procedural', 'agent_private', 'shared',
                                'identity', 'user_profile')),
    content                text        NOT NULL,
    subject                text        NOT NULL DEFAULT '',
    -- Typed vector(N) below, N from the server's MEMORYD_EMBEDDING_DIM.
    embedding              vector,
    embedding_model        text        NOT NULL DEFAULT '',
    importance             smallint    NOT NULL DEFAULT 5 CHECK (importance BETWEEN 1 AND 10),
    confidence             real        NOT NULL DEFAULT 1 CHECK (confidence BETWEEN 0 AND 1),
    pinned                 boolean     NOT NULL DEFAULT false,
    tier                   text        NOT NULL DEFAULT 'hot'
                               CHECK (tier IN ('hot', 'warm', 'cold')),
    status                 text        NOT NULL DEFAULT 'active'
                               CHECK (status IN ('active', 'superseded', 'archived', 'disputed')),
    source_kind            text        NOT NULL DEFAULT 'explicit' CHECK (source_kind IN
                               ('explicit', 'extraction', 'system', 'feedback', 'consolidation',
                                'compaction')),
    source_conversation_id text        NOT NULL DEFAULT '',
    source_message_ids     text[]      NOT NULL DEFAULT '{}',
    extraction_model       text        NOT NULL DEFAULT '',
    user_id                text        NOT NULL DEFAULT '',
    agent_id               text        NOT NULL DEFAULT '',
    tags                   text[]      NOT NULL DEFAULT '{}',
    metadata               jsonb       NOT NULL DEFAULT '{}',
    related_to             uuid[]      NOT NULL DEFAULT '{}',
    contradicts            uuid[]      NOT NULL DEFAULT '{}',
    version                bigint      NOT NULL DEFAULT 1,
    superseded_by          uuid,
    access_count           bigint      NOT NULL DEFAULT 0,
    last_access_time       timestamptz,
    expire_time            timestamptz,
    create_time            timestamptz NOT NULL DEFAULT now(),
    update_time            timestamptz NOT NULL DEFAULT now(),
    search_text            tsvector    GENERATED ALWAYS AS
                               (to_tsvector('english', subject || ' ' || content)) STORED,
    PRIMARY KEY (tenant_id, id)
);

-- put(namespace, key): one live memory per key.
CREATE UNIQUE INDEX memories_key_idx ON memories (tenant_id, ns_path, key)
    WHERE key IS NOT NULL AND status IN ('active', 'disputed');
CREATE INDEX memories_namespace_idx ON memories (tenant_id, ns_path, id);
CREATE INDEX memories_user_idx ON memories (tenant_id, user_id, id);
CREATE INDEX memories_agent_idx ON memories (tenant_id, agent_id, id);
CREATE INDEX memories_tags_idx ON memories USING gin (tags);
CREATE INDEX memories_metadata_idx ON memories USING gin (metadata jsonb_path_ops);
CREATE INDEX memories_search_text_idx ON memories USING gin (search_text);
-- The expiry task looks across tenants for live memories past their time.
CREATE INDEX memories_expiry_idx ON memories (expire_time)
    WHERE expire_time IS NOT NULL AND status IN ('active', 'disputed') AND NOT pinned;

-- The embedding dimension is the server's setting (passed to this migration as
-- memoryd.embedding_dim); HNSW needs a typed column. Cosine distance.
DO $$
DECLARE
    dim integer := coalesce(nullif(current_setting('memoryd.embedding_dim', true), ''), '1536')::integer;
BEGIN
    EXECUTE format('ALTER TABLE memories ALTER COLUMN embedding TYPE vector(%s)', dim);
    CREATE INDEX memories_embedding_idx ON memories USING hnsw (embedding vector_cosine_ops)
        WITH (m = 16, ef_construction = 64);
END
$$;

-- The history: one event per version of a memory, and nothing ever changes or
-- leaves it. Content lives in memory_snapshots, which a purge may delete.
CREATE TABLE memory_events (
    tenant_id  text        NOT NULL,
    memory_id  uuid        NOT NULL,
    version    bigint      NOT NULL,
    event_type text        NOT NULL CHECK (event_type IN
                   ('created', 'updated', 'superseded', 'archived', 'purged')),
    actor      text        NOT NULL,
    -- The version's update_time, so GetMemoryAt(update_time) is that version.
    event_time timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, memory_id, version)
);

-- The memory as it was after each event (without its embedding) and the
-- caller's reason. Rows are never updated; a purge deletes a memory's rows.
CREATE TABLE memory_snapshots (
    tenant_id text   NOT NULL,
    memory_id uuid   NOT NULL,
    version   bigint NOT NULL,
    state     jsonb  NOT NULL,
    reason    text   NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, memory_id, version)
);

CREATE FUNCTION memoryd_refuse_history_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % is not allowed: memory history is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER memory_events_append_only
    BEFORE UPDATE OR DELETE ON memory_events
    FOR EACH ROW EXECUTE FUNCTION memoryd_refuse_history_change();
CREATE TRIGGER memory_events_no_truncate
    BEFORE TRUNCATE ON memory_events
    FOR EACH STATEMENT EXECUTE FUNCTION memoryd_refuse_history_change();
CREATE TRIGGER memory_snapshots_immutable
    BEFORE UPDATE ON memory_snapshots
    FOR EACH ROW EXECUTE FUNCTION memoryd_refuse_history_change();
