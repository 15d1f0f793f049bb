-- Fails (string is too long for tsvector) while a memory holds more distinct
-- words than a tsvector can; purge or shorten those first.
ALTER TABLE memories ALTER COLUMN search_text SET EXPRESSION AS
    (to_tsvector('english', subject || ' ' || content));
