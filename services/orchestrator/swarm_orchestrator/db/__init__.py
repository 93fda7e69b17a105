"""Persistence: the schema (`models`), the async engine (`engine`), migrations (`migrate`),
the session timeline (`timeline`), the transactional outbox (`outbox`) and advisory locks
(`advisory`)."""
