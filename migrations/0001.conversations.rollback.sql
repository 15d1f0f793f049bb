-- Undo 0001.conversations.
DROP TABLE server_secrets;
DROP TABLE idempotency_keys;
DROP TABLE messages;
DROP TABLE conversations;
