"""End-to-end tests share the `stack` fixture of `tests/conftest.py`."""
