-- Documents, their chunks (with vectors and a text index) and their history.
--
-- A document's content is split into chunks by the server (or the caller);
-- searches run over chunks. Replacing a document's content deletes its chunks
-- and inserts the new ones in one transaction, so a search (one snapshot)
-- sees one version or the other. Chunk vectors follow migration 0010: an
-- untyped column and one partial HNSW index per registered model.
-- depends: 0010.embedding_models

CREATE TABLE documents (
    tenant_id      text        NOT NULL,
    id             uuid        NOT NULL,
    namespace      text[]      NOT NULL,
    -- As memories.ns_path: a namespace prefix is a btree range scan.
    ns_path        text        COLLATE "C" NOT NULL,
    path           text        COLLATE "C" NOT NULL,
    title          text        NOT NULL DEFAULT '',
    source_uri     text        NOT NULL DEFAULT '',
    media_type     text        NOT NULL CHECK (media_type IN ('text/plain', 'text/markdown')),
    user_id        text        NOT NULL DEFAULT '',
    tags           text[]      NOT NULL DEFAULT '{}',
    metadata       jsonb       NOT NULL DEFAULT '{}',
    content        text        NOT NULL,
    content_hash   bytea       NOT NULL,
    size_bytes     bigint      NOT NULL CHECK (size_bytes >= 0),
    chunk_tokens   integer     NOT NULL,
    overlap_tokens integer     NOT NULL,
    chunk_count    integer     NOT NULL,
    embedding_model text       NOT NULL DEFAULT '',
    version        bigint      NOT NULL DEFAULT 1,
    create_time    timestamptz NOT NULL DEFAULT now(),
    update_time    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
-- The natural key, and ListDocuments' order.
CREATE UNIQUE INDEX documents_path_idx ON documents (tenant_id, ns_path, path);
CREATE INDEX documents_user_idx ON documents (tenant_id, user_id, id);
CREATE INDEX documents_tags_idx ON documents USING gin (tags);
CREATE INDEX documents_metadata_idx ON documents USING gin (metadata jsonb_path_ops);

-- A chunk belongs to one version of its document: a replacement inserts new
-- rows with new ids.
CREATE TABLE document_chunks (
    tenant_id        text     NOT NULL,
    id               uuid     NOT NULL,
    document_id      uuid     NOT NULL,
    document_version bigint   NOT NULL,
    seq              integer  NOT NULL,
    content          text     NOT NULL,
    heading_path     text[]   NOT NULL DEFAULT '{}',
    start_offset     integer  NOT NULL,
    end_offset       integer  NOT NULL,
    token_count      integer  NOT NULL,
    embedding        vector,
    embedding_model  text     NOT NULL DEFAULT '',
    -- As messages: a tsvector holds at most 1 MB; chunks are far smaller.
    search_text      tsvector GENERATED ALWAYS AS
                         (to_tsvector('english', left(content, 100000))) STORED,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, document_id) REFERENCES documents (tenant_id, id) ON DELETE CASCADE
);
-- ListChunks and neighbouring chunks: an index range.
CREATE UNIQUE INDEX document_chunks_seq_idx ON document_chunks (tenant_id, document_id, seq);
CREATE INDEX document_chunks_search_text_idx ON document_chunks USING gin (search_text);

-- One row per version of a document: its fields and content as they were.
-- Rows never change; deleting the document deletes them.
CREATE TABLE document_versions (
    tenant_id   text        NOT NULL,
    document_id uuid        NOT NULL,
    version     bigint      NOT NULL,
    actor       text        NOT NULL,
    event_time  timestamptz NOT NULL,
    state       jsonb       NOT NULL,
    content     text        NOT NULL,
    PRIMARY KEY (tenant_id, document_id, version),
    FOREIGN KEY (tenant_id, document_id) REFERENCES documents (tenant_id, id) ON DELETE CASCADE
);
CREATE TRIGGER document_versions_immutable
    BEFORE UPDATE ON document_versions
    FOR EACH ROW EXECUTE FUNCTION memoryd_refuse_history_change();

-- Each model's partial HNSW indexes now cover chunks too.
CREATE OR REPLACE FUNCTION memoryd_create_embedding_indexes(model text) RETURNS void
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
    EXECUTE format(
        'CREATE INDEX IF NOT EXISTS %I ON document_chunks USING hnsw'
        ' ((embedding::vector(%s)) vector_cosine_ops) WITH (m = 16, ef_construction = 64)'
        ' WHERE embedding_model = %L',
        'document_chunks_embedding_m' || m.id || '_idx', m.dimension, m.name);
END
$$;
REVOKE ALL ON FUNCTION memoryd_create_embedding_indexes(text) FROM PUBLIC;
DO $$
BEGIN
    PERFORM memoryd_create_embedding_indexes(name) FROM embedding_models;
END
$$;

-- Quotas: NULL takes the server's default (MEMORYD_QUOTA_*), 0 is unlimited.
ALTER TABLE tenants
    ADD COLUMN max_documents      bigint CHECK (max_documents >= 0),
    ADD COLUMN max_document_bytes bigint CHECK (max_document_bytes >= 0);

-- Usage: documents counted by the triggers of 0008; their bytes by this one.
ALTER TABLE tenant_usage DROP CONSTRAINT tenant_usage_kind_check;
ALTER TABLE tenant_usage ADD CONSTRAINT tenant_usage_kind_check
    CHECK (kind IN ('memories', 'conversations', 'documents', 'document_bytes'));
CREATE TRIGGER documents_count_inserts AFTER INSERT ON documents
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION memoryd_count_rows('documents');
CREATE TRIGGER documents_count_deletes AFTER DELETE ON documents
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION memoryd_count_rows('documents');

-- The bytes of documents' content, on the slot of the writer's transaction
-- (as memoryd_count_rows).
CREATE FUNCTION memoryd_count_document_bytes() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    my_slot smallint := (pg_current_xact_id()::text::bigint % 16)::smallint;
BEGIN
    INSERT INTO tenant_usage AS u (tenant_id, kind, slot, n)
        SELECT d.tenant_id, 'document_bytes', my_slot, sum(d.n) FROM (
            SELECT tenant_id, size_bytes AS n FROM new_rows
            UNION ALL SELECT tenant_id, -size_bytes FROM old_rows
        ) d GROUP BY d.tenant_id ORDER BY d.tenant_id
        ON CONFLICT (tenant_id, kind, slot) DO UPDATE SET n = u.n + EXCLUDED.n;
    RETURN NULL;
END
$$;
CREATE FUNCTION memoryd_count_document_bytes_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    my_slot smallint := (pg_current_xact_id()::text::bigint % 16)::smallint;
BEGIN
    INSERT INTO tenant_usage AS u (tenant_id, kind, slot, n)
        SELECT r.tenant_id, 'document_bytes', my_slot, sum(r.size_bytes) FROM new_rows r
        GROUP BY r.tenant_id ORDER BY r.tenant_id
        ON CONFLICT (tenant_id, kind, slot) DO UPDATE SET n = u.n + EXCLUDED.n;
    RETURN NULL;
END
$$;
CREATE FUNCTION memoryd_count_document_bytes_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    my_slot smallint := (pg_current_xact_id()::text::bigint % 16)::smallint;
BEGIN
    INSERT INTO tenant_usage AS u (tenant_id, kind, slot, n)
        SELECT r.tenant_id, 'document_bytes', my_slot, -sum(r.size_bytes) FROM old_rows r
        GROUP BY r.tenant_id ORDER BY r.tenant_id
        ON CONFLICT (tenant_id, kind, slot) DO UPDATE SET n = u.n + EXCLUDED.n;
    RETURN NULL;
END
$$;
CREATE TRIGGER documents_bytes_updates AFTER UPDATE ON documents
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION memoryd_count_document_bytes();
CREATE TRIGGER documents_bytes_inserts AFTER INSERT ON documents
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION memoryd_count_document_bytes_inserted();
CREATE TRIGGER documents_bytes_deletes AFTER DELETE ON documents
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION memoryd_count_document_bytes_deleted();

GRANT SELECT, INSERT, UPDATE, DELETE ON documents, document_chunks TO memoryd_app;
GRANT SELECT, INSERT, DELETE ON document_versions TO memoryd_app;
-- memoryd reembed embeds chunks in the new model (and names it on their documents).
GRANT SELECT, UPDATE ON documents, document_chunks TO memoryd_maintenance;

ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE documents FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON documents
    USING (tenant_id = current_setting('memoryd.tenant', true))
    WITH CHECK (tenant_id = current_setting('memoryd.tenant', true));
CREATE POLICY maintenance ON documents TO memoryd_maintenance USING (true) WITH CHECK (true);

ALTER TABLE document_chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE document_chunks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON document_chunks
    USING (tenant_id = current_setting('memoryd.tenant', true))
    WITH CHECK (tenant_id = current_setting('memoryd.tenant', true));
CREATE POLICY maintenance ON document_chunks TO memoryd_maintenance USING (true) WITH CHECK (true);

ALTER TABLE document_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE document_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON document_versions
    USING (tenant_id = current_setting('memoryd.tenant', true))
    WITH CHECK (tenant_id = current_setting('memoryd.tenant', true));
