-- Undo 0009.api_key_columns.
REVOKE UPDATE (last_used_time, revoke_time) ON api_keys FROM memoryd_app;
GRANT UPDATE ON api_keys TO memoryd_app;
