"""Property-based fuzzing of the REST contract (schemathesis) against a running stack: the
orchestrator as a real process, with an adapter. No input may cause a 5xx, and every
response must follow the OpenAPI document: its status documented, its body of its schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.stack import TEST_TOKEN, Stack

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


@pytest.mark.timeout(600)  # every operation of the API, fuzzed: it grows with the API
def test_the_api_survives_fuzzing_and_keeps_its_contract(
    stack: Stack, git_repo: Path, tmp_path: Path
) -> None:
    stack.start_orchestrator(SWARM_RATE_LIMIT_PER_S="0")  # rate limits: tests/orchestrator
    stack.start_adapter("fuzz-shell")
    with stack.client() as api:  # one real session, so ids in examples can exist
        created = api.post(
            "/v1/sessions",
            json={
                "title": "fuzz",
                "repo": str(git_repo),
                "tasks": [{"key": "a", "prompt": "true"}],
            },
        )
        assert created.status_code == 201, created.text
    tool = Path(sys.executable).parent / "schemathesis"
    report = tmp_path / "fuzz.txt"
    done = subprocess.run(
        [
            str(tool),
            "run",
            f"{stack.api_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {TEST_TOKEN}",
            "--checks",
            CHECKS,
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "30",
            "--workers",
            "2",
            "--request-timeout",
            "30",
            "--suppress-health-check",
            "all",
            "--seed",
            "20261121",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=stack.env(),
        cwd=tmp_path,  # its own state folder (.schemathesis) goes there
    )
    report.write_text(done.stdout + done.stderr)
    tail = (done.stdout + done.stderr)[-6000:]
    assert done.returncode == 0, tail
    assert TEST_TOKEN not in done.stdout
    with stack.client() as api:  # still healthy afterwards
        assert api.get("/readyz").status_code == 200
        assert api.get("/v1/sessions").status_code == 200
