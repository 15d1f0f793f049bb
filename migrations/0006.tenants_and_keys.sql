-- Tenants and API keys. A key's secret is never stored: only its SHA-256.
--
-- Row-level security admits a row of these tables in three ways:
--   * the transaction's declared tenant (memoryd.tenant), as everywhere;
--   * the key the transaction presents (memoryd.key_hash, hex): before the
--     tenant is known, a transaction may see exactly the key whose hash it
--     holds, and that key's tenant, and nothing else;
--   * memoryd_operator, the role of server-wide administration (tenants and
--     every tenant's keys), reached by SET LOCAL ROLE for operator calls only.
-- depends: 0005.memory_access

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'memoryd_operator') THEN
        CREATE ROLE memoryd_operator NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
    EXECUTE format('GRANT memoryd_operator TO %I', current_user);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO memoryd_operator', current_schema());
END
$$;

-- Quotas: NULL takes the server's default (MEMORYD_QUOTA_*), 0 is unlimited.
CREATE TABLE tenants (
    tenant_id           text        PRIMARY KEY
                                    CHECK (tenant_id ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    display_name        text        NOT NULL DEFAULT '',
    state               text        NOT NULL DEFAULT 'active'
                                    CHECK (state IN ('active', 'disabled')),
    requests_per_second double precision CHECK (requests_per_second >= 0),
    burst               bigint      CHECK (burst >= 0),
    max_memories        bigint      CHECK (max_memories >= 0),
    max_conversations   bigint      CHECK (max_conversations >= 0),
    max_content_bytes   bigint      CHECK (max_content_bytes >= 0),
    create_time         timestamptz NOT NULL DEFAULT now(),
    update_time         timestamptz NOT NULL DEFAULT now(),
    disable_time        timestamptz
);

-- The single-tenant mode (MEMORYD_AUTH=off) writes as "default": its data
-- becomes a real tenant that an operator can hand keys for.
INSERT INTO tenants (tenant_id, display_name) VALUES ('default', 'default');

-- Operator keys have no tenant; every other key has one.
CREATE TABLE api_keys (
    key_id         uuid        PRIMARY KEY,
    tenant_id      text        REFERENCES tenants (tenant_id),
    name           text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role           text        NOT NULL CHECK (role IN ('viewer', 'member', 'admin', 'operator')),
    prefix         text        NOT NULL,
    secret_hash    bytea       NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    created_by     text        NOT NULL,
    create_time    timestamptz NOT NULL DEFAULT now(),
    last_used_time timestamptz,
    expire_time    timestamptz,
    revoke_time    timestamptz,
    CHECK ((role = 'operator') = (tenant_id IS NULL))
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id, create_time DESC, key_id DESC);

-- The hash of the key the transaction presents, or NULL.
CREATE FUNCTION memoryd_presented_key() RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT decode(nullif(current_setting('memoryd.key_hash', true), ''), 'hex')
$$;
GRANT EXECUTE ON FUNCTION memoryd_presented_key() TO memoryd_app, memoryd_operator;

GRANT SELECT, INSERT, UPDATE ON api_keys TO memoryd_app;
GRANT SELECT ON tenants TO memoryd_app;
GRANT SELECT, INSERT, UPDATE ON api_keys, tenants TO memoryd_operator;

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (tenant_id = current_setting('memoryd.tenant', true))
    WITH CHECK (tenant_id = current_setting('memoryd.tenant', true));
CREATE POLICY key_holder_read ON api_keys FOR SELECT
    USING (secret_hash = memoryd_presented_key());
-- Authentication stamps last_used_time on the presented key.
CREATE POLICY key_holder_touch ON api_keys FOR UPDATE
    USING (secret_hash = memoryd_presented_key())
    WITH CHECK (secret_hash = memoryd_presented_key());
CREATE POLICY operator ON api_keys TO memoryd_operator USING (true) WITH CHECK (true);

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants FOR SELECT
    USING (tenant_id = current_setting('memoryd.tenant', true));
CREATE POLICY key_holder_read ON tenants FOR SELECT
    USING (tenant_id IN (SELECT k.tenant_id FROM api_keys k
                         WHERE k.secret_hash = memoryd_presented_key()));
CREATE POLICY operator ON tenants TO memoryd_operator USING (true) WITH CHECK (true);
