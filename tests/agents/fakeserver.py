"""A fake model server for the agent CLIs: one Starlette app on 127.0.0.1 that speaks the
Anthropic Messages, OpenAI Responses and Gemini generateContent wire protocols (each in its
own module, `fake_claude.py`, `fake_codex.py`, `fake_gemini.py`), so the tests run the real
CLI binaries offline.

It is stateless per request, as `agent-clis.md` advises: while the conversation holds no
tool result it answers with the tool call the scenario asks for; once it does, with the
final text. What to do comes from the `Scenario` the test sets; every request is recorded
(`state.requests`) so tests can check what the CLI sent. The one piece of state across
requests is which of `Scenario.answers` each run gets (`FakeState.answer`): the first run
the first answer, the next run the next one.

    with FakeModelServer(Scenario(mode="write_file", file="hello.txt")) as server:
        env["ANTHROPIC_BASE_URL"] = server.url
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from tests.waiting import eventually

__all__ = ["FakeModelServer", "FakeState", "Scenario"]

Mode = Literal[
    "write_file",
    "text",
    "answer",
    "rate_limit",
    "auth_error",
    "server_error",
    "hang",
    "loop_tools",
]


@dataclass
class Scenario:
    """What the fake model does.

    - `write_file`: call the CLI's file-writing tool (or shell tool) to write `content` to
      `file` (relative to the CLI's working directory), then answer `reply`.
    - `text`: answer `reply` with no tool call.
    - `answer`: the final answer is the next of `answers` (one per run, in turn; the last
      one again once they are used up; `reply` when there are none), given the way the CLI
      expects a structured answer when it asked for one: Claude's `StructuredOutput` tool
      call when the CLI offers that tool and the answer is a JSON object, else the text
      (Codex and Gemini only ever take text). With `write_first`, the model first tries to
      write `content` to `file` (the write a read-only run must discard), whether or not the
      CLI offers its file tool.
    - `rate_limit`: answer HTTP 429 with a reset `reset_after_s` seconds ahead. With
      `write_first` (Claude only), the model first says `reply` and writes `content` to
      `file`, and the 429 answers the request after (the attempt left work behind).
    - `auth_error`: refuse the API key as the provider does (401; Gemini: 400
      INVALID_ARGUMENT / API_KEY_INVALID).
    - `server_error`: answer HTTP 500.
    - `hang`: accept the request and never answer (until the server stops).
    - `loop_tools`: call a harmless tool forever, to hit the CLI's turn limit.
    """

    mode: Mode = "write_file"
    file: str = "hello.txt"
    content: str = "hello from the agent\n"
    reply: str = "Done: wrote the file."
    answers: list[str] = field(default_factory=list)
    """`answer`: the final answers, one per run in turn (a JSON answer as its text)."""
    write_first: bool = False
    """`answer`: try to write `content` to `file` before answering; `rate_limit` (Claude):
    write it before the limit hits."""
    read_first: str | None = None
    """`write_file` and `text`: first read this file (relative to the CLI's working
    directory) with the CLI's own reading tool, so its content comes back to the model as
    the tool's result (Claude `Read`, Codex `exec_command` with `cat`, Gemini `read_file`)."""
    reset_after_s: int = 30
    input_tokens: int = 120
    cached_tokens: int = 20
    output_tokens: int = 30
    per_agent: dict[str, Scenario] = field(default_factory=dict)
    """A scenario of its own for one CLI's requests (`claude`, `codex`, `gemini`), so one
    server plays a different model for each kind (a failover from one to another)."""


@dataclass
class FakeState:
    scenario: Scenario
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    runs: dict[str, int] = field(default_factory=dict)
    """`answer` mode: which of `scenario.answers` each run got, by the run's id."""
    answered: int = 0
    """`answer` mode: how many runs have been given an answer."""

    def scenario_for(self, agent: str) -> Scenario:
        """What the model does for `agent`'s CLI: its own scenario, else the common one."""
        return self.scenario.per_agent.get(agent, self.scenario)

    def record(self, path: str, headers: dict[str, str], body: Any) -> None:
        with self.lock:
            self.requests.append({"path": path, "headers": headers, "body": body})

    def answer(self, run: str | None) -> str:
        """The final answer of `run` (an id the CLI sends with each request of one run):
        a run seen before gets its answer again, a new run the next of `scenario.answers`.
        Without an id, every call counts as a new run."""
        answers = self.scenario.answers or [self.scenario.reply]
        with self.lock:
            index = self.runs.get(run) if run is not None else None
            if index is None:
                index = self.answered
                self.answered += 1
                if run is not None:
                    self.runs[run] = index
        return answers[min(index, len(answers) - 1)]


def _routes(state: FakeState) -> list[BaseRoute]:
    from tests.agents import fake_claude, fake_codex, fake_gemini

    return [*fake_claude.routes(state), *fake_codex.routes(state), *fake_gemini.routes(state)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeModelServer:
    """The fake model API in a background thread; a context manager."""

    def __init__(self, scenario: Scenario | None = None) -> None:
        self.state = FakeState(scenario or Scenario())
        self.port = _free_port()
        app = Starlette(routes=_routes(self.state))
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def scenario(self) -> Scenario:
        return self.state.scenario

    @scenario.setter
    def scenario(self, value: Scenario) -> None:
        """A new scenario; its `answers` start again from the first."""
        with self.state.lock:
            self.state.scenario = value
            self.state.runs.clear()
            self.state.answered = 0

    def __enter__(self) -> FakeModelServer:
        self._thread.start()

        def started() -> bool:
            if not self._thread.is_alive():
                raise RuntimeError("the fake model server did not start")
            return bool(self._server.started)

        eventually(started, interval_s=0.01, message="the fake model server starts")
        return self

    def __exit__(self, *_: object) -> None:
        self.state.stop.set()
        self._server.should_exit = True
        self._thread.join(timeout=10)
