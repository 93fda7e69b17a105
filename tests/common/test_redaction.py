"""The redaction filter: configured secrets and well-known key formats never pass."""

from __future__ import annotations

from swarm_common.redaction import REDACTED, Redactor


def test_configured_secrets_are_replaced_longest_first() -> None:
    redact = Redactor(["my-own-secret-value", "my-own-secret", None, "abc"])
    assert redact("key=my-own-secret-value; other=my-own-secret") == (
        f"key={REDACTED}; other={REDACTED}"
    )
    assert redact("abc stays: too short to be a secret") == "abc stays: too short to be a secret"


def test_well_known_key_formats_are_replaced_without_being_configured() -> None:
    redact = Redactor()
    text = (
        "anthropic sk-ant-api03-AbCdEf0123456789 openai sk-proj-AB12CDEFGHIJKLMNOPQRSTUV "
        "google AIzaSyA1234567890abcdefghijklmnopqrstu github ghp_" + "a" * 36
    )
    cleaned = redact(text)
    assert cleaned.count(REDACTED) == 4
    assert "sk-ant" not in cleaned and "AIza" not in cleaned and "ghp_" not in cleaned
    assert redact("task-key sk-learn and skeleton") == "task-key sk-learn and skeleton"


def test_ordinary_names_are_not_mistaken_for_keys() -> None:
    redact = Redactor()
    for text in [
        "/repo/services/task-scheduler-integration-tests.py",
        "risk-engine-configuration-loader-module",
        "sk-learn-the-long-way-round-today",
        "disk-usage-report-2026-11-21-final",
    ]:
        assert redact(text) == text
