-- Undo 0004.import_progress.
DROP TABLE import_progress;
