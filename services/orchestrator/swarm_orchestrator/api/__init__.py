"""The REST API (v1): routes, schemas, dependencies and error handling."""
