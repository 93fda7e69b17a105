"""Quality gates: detection from a repository's files, planning from a session's settings,
running real commands (logs, tails, timeout, cancel, missing tools) and judging results."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import pydantic
import pytest

from swarm_common.gates import (
    GATE_NAMES,
    GateCommand,
    GateConfig,
    GateResult,
    blocking_failures,
    detect_gates,
    feedback,
    plan_gates,
    run_gates,
)
from tests.waiting import wait_until

# --- detection ---------------------------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _commands(root: Path) -> dict[str, tuple[str, str | None]]:
    return {name: (gate.command, gate.tool) for name, gate in detect_gates(root).items()}


def test_python_with_ruff_and_pytest_configured(tmp_path: Path) -> None:
    _write(
        tmp_path, {"pyproject.toml": "[tool.ruff.lint]\nselect=['E']\n[tool.pytest.ini_options]\n"}
    )
    gates = detect_gates(tmp_path, timeout_s=42)
    assert list(gates) == ["lint", "test"]
    assert gates["lint"] == GateCommand("lint", "ruff check .", "detected", "ruff", 42)
    assert gates["test"] == GateCommand("test", "pytest -q", "detected", "pytest", 42)


def test_a_bare_pyproject_detects_nothing(tmp_path: Path) -> None:
    _write(tmp_path, {"pyproject.toml": "[project]\nname = 'x'\n# [tool.ruff] in a comment\n"})
    (tmp_path / "src").mkdir()
    assert detect_gates(tmp_path) == {}


@pytest.mark.parametrize(
    ("files", "dirs", "expected"),
    [
        ({"pyproject.toml": "[project]\n"}, ["tests"], {"test"}),
        ({"pyproject.toml": "[project]\n"}, ["test"], {"test"}),
        ({"setup.py": ""}, ["tests"], {"test"}),
        ({"pyproject.toml": "[project]\n", "ruff.toml": ""}, [], {"lint"}),
        ({"pyproject.toml": "[project]\n", ".ruff.toml": ""}, [], {"lint"}),
        ({"pyproject.toml": "[project]\n", "conftest.py": ""}, [], {"test"}),
        ({"pytest.ini": "[pytest]\n"}, [], {"test"}),
        ({"setup.cfg": "[metadata]\n[tool:pytest]\n"}, [], {"test"}),
        ({"tox.ini": "[pytest]\naddopts = -q\n"}, [], {"test"}),
        ({"setup.cfg": "[metadata]\n"}, [], set()),
        # a tests directory alone is no Python project
        ({}, ["tests"], set()),
    ],
)
def test_python_detection_rules(
    tmp_path: Path, files: dict[str, str], dirs: list[str], expected: set[str]
) -> None:
    _write(tmp_path, files)
    for name in dirs:
        (tmp_path / name).mkdir()
    assert set(detect_gates(tmp_path)) == expected


def test_npm_scripts(tmp_path: Path) -> None:
    scripts = {"lint": "eslint .", "test": "vitest run", "build": "tsc", "dev": "vite"}
    _write(tmp_path, {"package.json": json.dumps({"name": "x", "scripts": scripts})})
    assert _commands(tmp_path) == {
        "lint": ("npm run lint", "npm"),
        "test": ("npm test", "npm"),
        "build": ("npm run build", "npm"),
    }


def test_npm_placeholder_test_script_is_no_test(tmp_path: Path) -> None:
    scripts = {"test": 'echo "Error: no test specified" && exit 1', "build": "tsc"}
    _write(tmp_path, {"package.json": json.dumps({"scripts": scripts})})
    assert _commands(tmp_path) == {"build": ("npm run build", "npm")}


@pytest.mark.parametrize(
    "text",
    [
        '{"scripts": {"test": "jest",',  # cut short
        "[1, 2]",
        '{"scripts": ["test"]}',
        '{"scripts": {"test": 1, "lint": ""}}',
        "",
    ],
)
def test_malformed_package_json_detects_nothing(tmp_path: Path, text: str) -> None:
    _write(tmp_path, {"package.json": text})
    assert detect_gates(tmp_path) == {}


def test_non_utf8_package_json_detects_nothing(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_bytes(b'{"scripts": {"test": "\xff\xfe"}')
    assert detect_gates(tmp_path) == {}


def test_cargo(tmp_path: Path) -> None:
    _write(tmp_path, {"Cargo.toml": "[package]\nname = 'x'\n"})
    assert _commands(tmp_path) == {
        "lint": ("cargo clippy --all-targets -- -D warnings", "cargo-clippy"),
        "test": ("cargo test", "cargo"),
        "build": ("cargo build", "cargo"),
    }


def test_go(tmp_path: Path) -> None:
    _write(tmp_path, {"go.mod": "module example.com/x\n"})
    assert _commands(tmp_path) == {
        "lint": ("go vet ./...", "go"),
        "test": ("go test ./...", "go"),
        "build": ("go build ./...", "go"),
    }


def test_makefile_targets(tmp_path: Path) -> None:
    makefile = (
        ".PHONY: lint test build\n"
        "build := out/bin\n"
        "# lint: in a comment\n"
        "check:\n"
        "\tlint: not a rule, a recipe line\n"
        "test check-all: deps\n"
        "\tpytest\n"
    )
    _write(tmp_path, {"Makefile": makefile})
    assert _commands(tmp_path) == {"test": ("make test", "make")}


def test_double_colon_rules_count(tmp_path: Path) -> None:
    _write(tmp_path, {"makefile": "lint::\n\techo\nbuild: ; cc x.c\n"})
    assert set(detect_gates(tmp_path)) == {"lint", "build"}


def test_the_makefile_gnu_make_reads_wins(tmp_path: Path) -> None:
    _write(tmp_path, {"GNUmakefile": "lint:\n", "Makefile": "test:\nbuild:\n"})
    assert set(detect_gates(tmp_path)) == {"lint"}


def test_each_gate_comes_from_the_first_ecosystem_that_has_it(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pyproject.toml": "[project]\n",
            "package.json": json.dumps({"scripts": {"build": "vite build"}}),
            "Makefile": "lint:\ntest:\nbuild:\n",
        },
    )
    (tmp_path / "tests").mkdir()
    assert _commands(tmp_path) == {
        "lint": ("make lint", "make"),
        "test": ("pytest -q", "pytest"),
        "build": ("npm run build", "npm"),
    }


def test_npm_before_cargo_before_go(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "package.json": json.dumps({"scripts": {"test": "jest"}}),
            "Cargo.toml": "",
            "go.mod": "",
        },
    )
    gates = _commands(tmp_path)
    assert gates["test"] == ("npm test", "npm")
    assert gates["lint"][1] == "cargo-clippy" and gates["build"] == ("cargo build", "cargo")


def test_a_missing_root_or_marker_directories_detect_nothing(tmp_path: Path) -> None:
    assert detect_gates(tmp_path / "nowhere") == {}
    (tmp_path / "package.json").mkdir()
    (tmp_path / "go.mod").mkdir()
    assert detect_gates(tmp_path) == {}


# --- planning ----------------------------------------------------------------------------


@pytest.fixture
def full_repo(tmp_path: Path) -> Path:
    """A repository where every gate is detected."""
    return _write(tmp_path, {"Makefile": "lint:\ntest:\nbuild:\n"})


def _plan(config: GateConfig, root: Path, only: list[str] | None = None) -> list[tuple[str, ...]]:
    return [(g.name, g.command, g.source) for g in plan_gates(config, root, only)]


def test_a_session_command_beats_detection(full_repo: Path) -> None:
    plan = plan_gates(GateConfig(test="pytest -x tests/unit"), full_repo)
    assert [(g.name, g.command, g.source, g.tool) for g in plan] == [
        ("lint", "make lint", "detected", "make"),
        ("test", "pytest -x tests/unit", "session", None),
        ("build", "make build", "detected", "make"),
    ]


def test_an_empty_command_means_no_gate(full_repo: Path) -> None:
    assert _plan(GateConfig(lint="", build="  \n"), full_repo) == [
        ("test", "make test", "detected")
    ]


def test_without_detection_only_session_commands_run(full_repo: Path) -> None:
    config = GateConfig(detect=False, build="cargo build")
    assert _plan(config, full_repo) == [("build", "cargo build", "session")]
    assert _plan(GateConfig(detect=False), full_repo) == []


def test_only_narrows_the_plan_and_keeps_the_gate_order(full_repo: Path) -> None:
    assert [g[0] for g in _plan(GateConfig(), full_repo, ["build", "nonsense", "lint"])] == [
        "lint",
        "build",
    ]
    assert _plan(GateConfig(), full_repo, []) == []
    assert [g[0] for g in _plan(GateConfig(), full_repo, None)] == list(GATE_NAMES)


def test_skip_mode_plans_nothing(full_repo: Path) -> None:
    assert plan_gates(GateConfig(mode="skip", test="pytest"), full_repo) == []


def test_per_gate_timeouts(full_repo: Path) -> None:
    config = GateConfig(timeout_s=120, timeouts={"test": 1800}, lint="ruff check .")
    assert {g.name: g.timeout_s for g in plan_gates(config, full_repo)} == {
        "lint": 120,
        "test": 1800,
        "build": 120,
    }
    assert {g.timeout_s for g in plan_gates(GateConfig(), full_repo)} == {600}


@pytest.mark.parametrize(
    "settings",
    [
        {"lint": "ruff\x00check"},
        {"test": "x" * 4001},
        {"timeout_s": 0},
        {"timeout_s": 86401},
        {"timeouts": {"deploy": 10}},
        {"timeouts": {"test": 0}},
        {"mode": "lenient"},
        {"linter": "ruff"},
    ],
)
def test_invalid_settings_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        GateConfig.model_validate(settings)


def test_settings_defaults() -> None:
    config = GateConfig.model_validate({})
    assert (config.mode, config.detect, config.timeout_s, config.timeouts) == (
        "strict",
        True,
        600,
        {},
    )
    assert (config.lint, config.test, config.build) == (None, None, None)


# --- running -----------------------------------------------------------------------------


def _gate(
    name: str, command: str, *, timeout_s: float = 10, tool: str | None = None
) -> GateCommand:
    return GateCommand(name, command, "detected" if tool else "session", tool, timeout_s)


async def _run(
    tmp_path: Path,
    plan: list[GateCommand],
    *,
    env: dict[str, str] | None = None,
    cancel: asyncio.Event | None = None,
    **kwargs: object,
) -> list[GateResult]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return await run_gates(
        plan,
        cwd=work,
        env=dict(os.environ) if env is None else env,
        log_dir=tmp_path / "logs" / "attempt-1",
        cancel=cancel or asyncio.Event(),
        kill_grace_s=0.5,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_a_passing_gate(tmp_path: Path) -> None:
    [result] = await _run(tmp_path, [_gate("lint", "echo clean; pwd")], relative_to=tmp_path)
    assert result.status == "passed" and result.exit_code == 0 and result.reason == ""
    assert result.output_tail == f"clean\n{tmp_path / 'work'}\n"
    assert result.log_path == "logs/attempt-1/gate-lint.log"
    assert (tmp_path / result.log_path).read_text() == result.output_tail
    assert (result.name, result.command, result.source) == ("lint", "echo clean; pwd", "session")


async def test_a_failing_gate_keeps_its_whole_output_in_the_log(tmp_path: Path) -> None:
    script = "for i in $(seq 1 3000); do echo line-$i; done; echo 'E: boom' >&2; exit 3"
    [result] = await _run(tmp_path, [_gate("test", script)], tail_bytes=200)
    assert result.status == "failed" and result.exit_code == 3
    assert result.reason == "exit code 3"
    assert result.output_tail.endswith("line-3000\nE: boom\n")
    assert len(result.output_tail) <= 200 and "line-1\n" not in result.output_tail
    log_path = tmp_path / "logs" / "attempt-1" / "gate-test.log"
    assert result.log_path == str(log_path)  # absolute without relative_to
    expected = "".join(f"line-{i}\n" for i in range(1, 3001)) + "E: boom\n"
    assert log_path.read_text() == expected


async def test_a_gate_killed_by_a_signal_fails(tmp_path: Path) -> None:
    [result] = await _run(tmp_path, [_gate("test", "kill -KILL $$")])
    assert result.status == "failed" and result.exit_code == -9
    assert result.reason == "killed by SIGKILL"


async def test_nul_never_reaches_the_result_but_stays_in_the_log(tmp_path: Path) -> None:
    [result] = await _run(tmp_path, [_gate("test", r"printf 'a\0b\n'; exit 1")])
    assert "\x00" not in result.output_tail and result.output_tail == "a\ufffdb\n"
    assert result.log_path is not None and Path(result.log_path).read_bytes() == b"a\x00b\n"
    assert "\x00" not in result.model_dump_json()


async def test_a_timeout_stops_the_gate_and_the_next_one_runs(tmp_path: Path) -> None:
    plan = [_gate("test", "echo started; sleep 30", timeout_s=1), _gate("build", "echo built")]
    timeout, build = await _run(tmp_path, plan)
    assert timeout.status == "timeout" and timeout.exit_code is None
    assert timeout.reason == "timed out after 1s" and timeout.output_tail == "started\n"
    assert 1 <= timeout.duration_s < 10
    assert build.status == "passed"


async def test_a_cancel_before_the_start_runs_nothing(tmp_path: Path) -> None:
    cancel = asyncio.Event()
    cancel.set()
    plan = [_gate("lint", "touch ../ran"), _gate("test", "touch ../ran")]
    results = await _run(tmp_path, plan, cancel=cancel)
    assert [(r.name, r.status) for r in results] == [("lint", "cancelled"), ("test", "cancelled")]
    assert not (tmp_path / "ran").exists()
    assert not (tmp_path / "logs").exists()


async def test_a_cancel_stops_the_running_gate_and_the_rest(tmp_path: Path) -> None:
    cancel = asyncio.Event()
    plan = [
        _gate("lint", "true"),
        _gate("test", "touch ../started; sleep 30"),
        _gate("build", "touch ../built"),
    ]
    running = asyncio.create_task(_run(tmp_path, plan, cancel=cancel))
    await wait_until(lambda: (tmp_path / "started").exists())
    cancel.set()
    lint, test, build = await asyncio.wait_for(running, timeout=10)
    assert lint.status == "passed"
    assert test.status == "cancelled" and test.exit_code is None and test.duration_s < 10
    assert build.status == "cancelled" and not (tmp_path / "built").exists()


async def test_a_detected_gate_without_its_tool_is_skipped(tmp_path: Path) -> None:
    plan = [
        _gate("lint", "touch ../ran", tool="swarm-no-such-tool"),
        _gate("test", "echo ok"),
    ]
    lint, test = await _run(tmp_path, plan)
    assert lint.status == "skipped" and lint.reason == "swarm-no-such-tool is not installed"
    assert lint.log_path is None and not (tmp_path / "ran").exists()
    assert test.status == "passed"


async def test_the_tool_is_looked_up_on_the_gates_path(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "swarm-fake-linter"
    tool.write_text("#!/bin/sh\necho linted\n")
    tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    [result] = await _run(tmp_path, [_gate("lint", "swarm-fake-linter", tool=tool.name)], env=env)
    assert result.status == "passed" and result.output_tail == "linted\n"
    # and only there: without it in the gate's PATH, the same gate is skipped
    [result] = await _run(tmp_path, [_gate("lint", "swarm-fake-linter", tool=tool.name)])
    assert result.status == "skipped"


async def test_stop_on_failure_skips_the_rest(tmp_path: Path) -> None:
    plan = [_gate("lint", "true"), _gate("test", "exit 1"), _gate("build", "touch ../built")]
    results = await _run(tmp_path, plan, stop_on_failure=True)
    assert [r.status for r in results] == ["passed", "failed", "skipped"]
    assert results[2].reason == "an earlier gate failed"
    assert not (tmp_path / "built").exists()
    results = await _run(tmp_path, plan)
    assert [r.status for r in results] == ["passed", "failed", "passed"]
    assert (tmp_path / "built").exists()


async def test_a_timeout_also_stops_on_failure(tmp_path: Path) -> None:
    plan = [_gate("test", "sleep 30", timeout_s=1), _gate("build", "true")]
    results = await _run(tmp_path, plan, stop_on_failure=True)
    assert [r.status for r in results] == ["timeout", "skipped"]


async def test_gates_run_with_ci_set_and_the_callers_env(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "SWARM_TEST_MARK": "m1"}
    [result] = await _run(tmp_path, [_gate("test", 'echo "$CI $SWARM_TEST_MARK"')], env=env)
    assert result.output_tail == "1 m1\n"
    assert "CI" not in env  # the caller's dict is left alone
    env["CI"] = "true"
    [result] = await _run(tmp_path, [_gate("test", 'echo "$CI"')], env=env)
    assert result.output_tail == "true\n"


async def test_a_gate_that_cannot_start_fails(tmp_path: Path) -> None:
    [result] = await run_gates(
        [_gate("test", "true")],
        cwd=tmp_path / "missing",
        env=dict(os.environ),
        log_dir=tmp_path / "logs",
        cancel=asyncio.Event(),
    )
    assert result.status == "failed" and result.reason.startswith("could not start")


async def test_results_survive_json(tmp_path: Path) -> None:
    results = await _run(tmp_path, [_gate("test", "echo hi; exit 2")])
    again = [GateResult.model_validate_json(r.model_dump_json()) for r in results]
    assert again == results


# --- judging -----------------------------------------------------------------------------


def _result(name: str, status: str, tail: str = "", **kwargs: object) -> GateResult:
    return GateResult.model_validate(
        {"name": name, "command": f"run-{name}", "source": "session", "status": status}
        | {"output_tail": tail}
        | kwargs
    )


ALL_STATUSES = [
    _result("lint", "passed"),
    _result("test", "failed", exit_code=1),
    _result("build", "timeout"),
    _result("x", "skipped"),
    _result("y", "cancelled"),
]


def test_only_strict_mode_blocks() -> None:
    assert [r.status for r in blocking_failures(ALL_STATUSES, "strict")] == ["failed", "timeout"]
    assert blocking_failures(ALL_STATUSES, "permissive") == []
    assert blocking_failures(ALL_STATUSES, "skip") == []
    assert blocking_failures([_result("lint", "passed"), _result("t", "skipped")], "strict") == []


def test_feedback_names_each_failed_gate_with_its_output() -> None:
    results = [
        _result("lint", "passed", "all good"),
        GateResult(
            name="test",
            command="pytest -q",
            source="detected",
            status="failed",
            exit_code=1,
            output_tail="FAILED tests/test_x.py::test_y\n1 failed\n",
        ),
        GateResult(
            name="build",
            command="make build",
            source="detected",
            status="timeout",
            reason="timed out after 600s",
            output_tail="compiling\n",
        ),
        _result("x", "skipped", "not this"),
    ]
    text = feedback(results)
    assert text == (
        "### Gate `test` failed (exit 1): `pytest -q`\n"
        "```\nFAILED tests/test_x.py::test_y\n1 failed\n```\n\n"
        "### Gate `build` timed out after 600s: `make build`\n"
        "```\ncompiling\n```"
    )


def test_no_feedback_when_nothing_failed() -> None:
    assert feedback([_result("lint", "passed"), _result("test", "skipped")]) == ""
    assert feedback([]) == ""


def test_feedback_fits_the_limit_and_keeps_the_end_of_each_output() -> None:
    long_tail = "".join(f"line {i}\n" for i in range(2000)) + "AssertionError: the end\n"
    results = [
        _result("lint", "failed", long_tail, exit_code=1),
        _result("test", "failed", "short error\n", exit_code=2),
        _result("build", "failed", long_tail.replace("the end", "build end"), exit_code=3),
    ]
    text = feedback(results, limit=1500)
    assert len(text) <= 1500 and len(text) > 1300  # the room is used, not wasted
    assert text.count("### Gate") == 3
    assert "AssertionError: the end\n```" in text
    assert "AssertionError: build end\n```" in text
    assert "short error\n```" in text  # a short output is kept whole
    assert "line 0\n" not in text
    # each long output gets an equal share of the room the short one leaves
    blocks = re.findall(r"```\n(.*?)```", text, flags=re.S)
    assert abs(len(blocks[0]) - len(blocks[2])) <= 1


def test_feedback_fences_survive_backticks_in_the_output() -> None:
    tail = "expected:\n```\ncode\n```\n"
    text = feedback([_result("test", "failed", tail, exit_code=1, command="echo `date`")])
    assert text.splitlines()[0] == "### Gate `test` failed (exit 1): `` echo `date` ``"
    assert text.splitlines()[1] == "````" and text.endswith("```\n````")


def test_feedback_for_a_gate_without_output_or_exit_code() -> None:
    text = feedback([_result("test", "failed", reason="could not start: no such directory")])
    assert text.startswith("### Gate `test` failed (could not start: no such directory)")
    assert "(no output)" in text
