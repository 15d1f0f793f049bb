-- request_id scope: an AppendMessages key belongs to its conversation, so
-- "turn-1" may be used once in every conversation (as the README teaches);
-- the keys of other methods stay tenant-wide (scope '').
-- depends: 0010.embedding_models

ALTER TABLE idempotency_keys ADD COLUMN scope text NOT NULL DEFAULT '';
-- Keys of earlier appends take their conversation as scope, so their retries
-- are still recognised.
UPDATE idempotency_keys SET scope = resource_id WHERE method = 'AppendMessages';
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (tenant_id, scope, request_id);
