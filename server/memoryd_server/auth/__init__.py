"""Authentication and authorization: API keys, the caller's principal, roles."""
