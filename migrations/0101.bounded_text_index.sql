-- The text index holds the first 100,000 characters of a memory's subject and
-- content: a tsvector holds at most 1 MB, and 1 MB of distinct words makes
-- 1.3-1.6 MB of it, so such a memory failed to store. 100,000 characters make
-- under 0.6 MB in the worst case measured (two-character CJK words: 0.47 MB).
-- Rewrites the memories table (and rebuilds its indexes) under an exclusive lock.
-- depends: 0100.idempotency_scope

ALTER TABLE memories ALTER COLUMN search_text SET EXPRESSION AS
    (to_tsvector('english', left(subject || ' ' || content, 100000)));
