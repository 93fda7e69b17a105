"""Persistence: the schema (`models`) and the async engine (`engine`)."""
