-- Request transactions may change only two columns of a key: when it was last
-- used (authentication) and when it was revoked (RevokeApiKey by a tenant
-- admin). Its role, tenant, name and hash are fixed once created, so no
-- request, however its SQL went wrong, can turn a key into another tenant's
-- or an operator's. Tenant administration (memoryd_operator) keeps its grant.
-- depends: 0008.tenant_usage

REVOKE UPDATE ON api_keys FROM memoryd_app;
GRANT UPDATE (last_used_time, revoke_time) ON api_keys TO memoryd_app;
