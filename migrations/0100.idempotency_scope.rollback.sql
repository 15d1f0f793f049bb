-- Back to tenant-wide keys: where one request_id was used in several
-- conversations, only the oldest key survives (retries of the others are new requests).
DELETE FROM idempotency_keys k USING idempotency_keys older
    WHERE k.tenant_id = older.tenant_id AND k.request_id = older.request_id
      AND (older.create_time, older.scope) < (k.create_time, k.scope);
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (tenant_id, request_id);
ALTER TABLE idempotency_keys DROP COLUMN scope;
