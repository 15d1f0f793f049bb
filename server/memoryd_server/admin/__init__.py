"""AdminService: tenants, API keys and erasure."""
