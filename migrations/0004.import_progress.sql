-- Resumable imports: how many lines of an export file (by its SHA-256) a
-- tenant's import has committed, written in the transaction of each batch.
-- depends: 0003.row_level_security

CREATE TABLE import_progress (
    tenant_id   text        NOT NULL,
    file_sha256 text        NOT NULL,
    lines_done  bigint      NOT NULL,
    update_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, file_sha256)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON import_progress TO memoryd_app;

ALTER TABLE import_progress ENABLE ROW LEVEL SECURITY;
ALTER TABLE import_progress FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON import_progress
    USING (tenant_id = current_setting('memoryd.tenant', true))
    WITH CHECK (tenant_id = current_setting('memoryd.tenant', true));
