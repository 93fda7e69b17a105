"""End-to-end fixtures: a running stack of real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import Stack


@pytest.fixture
def stack(
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    workspace: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Stack]:
    running = Stack(
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        workspace=workspace,
        logs=tmp_path / "logs",
    )
    try:
        yield running
    finally:
        running.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for name in running.procs:
                print(f"--- {name} ---\n{running.log(name)}")  # noqa: T201 - shown on failure


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
