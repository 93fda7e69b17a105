"""Who may use the API and how often: API tokens with roles and tenants, and the per-token
rate limit."""
