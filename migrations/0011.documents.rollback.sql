-- Undo 0011.documents: documents, their chunks and history are dropped.
DROP TABLE document_versions, document_chunks, documents;
DROP FUNCTION memoryd_count_document_bytes();
DROP FUNCTION memoryd_count_document_bytes_inserted();
DROP FUNCTION memoryd_count_document_bytes_deleted();
DELETE FROM tenant_usage WHERE kind IN ('documents', 'document_bytes');
ALTER TABLE tenant_usage DROP CONSTRAINT tenant_usage_kind_check;
ALTER TABLE tenant_usage ADD CONSTRAINT tenant_usage_kind_check
    CHECK (kind IN ('memories', 'conversations'));
ALTER TABLE tenants DROP COLUMN max_documents, DROP COLUMN max_document_bytes;
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
END
$$;
