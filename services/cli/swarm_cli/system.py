"""Client commands about the whole deployment: `workers`, and the system mode: `system`
(show it, or `drain` / `stop` / `resume`), with `drain` and `stop` also as commands of
their own."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from swarm_cli import render
from swarm_cli.options import (
    ApiUrl,
    AsJson,
    Token,
    Yes,
    confirm,
    connect,
    console,
    err,
    print_json,
)

__all__ = ["drain", "stop", "system", "workers"]


def workers(
    show_all: Annotated[
        bool, typer.Option("--all", "-a", help="Also adapters that are gone.")
    ] = False,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """The adapters: agent kind, alive or gone, busy slots of their concurrency, the tasks
    they run, their last heartbeat."""
    with connect(api_url, token) as client:
        rows: list[dict[str, Any]] = client.get("/v1/workers")
    shown = rows if show_all else [w for w in rows if w.get("alive")]
    if as_json:
        print_json(shown)
        return
    hidden = len(rows) - len(shown)
    if shown:
        shown.sort(key=lambda w: (not w.get("alive"), str(w.get("agent")), str(w["name"])))
        console.print(render.workers_table(shown))
    else:
        err.print("No adapter is alive. Start one with `swarm adapter --agent KIND`.")
    if hidden:
        err.print(f"[dim]{hidden} gone adapter(s) not shown; --all shows them.[/]")


class Action(StrEnum):
    show = "show"
    drain = "drain"
    stop = "stop"
    resume = "resume"


_QUESTIONS = {
    Action.drain: "Drain: adapters finish what they run and take no new work. Go on?",
    Action.stop: "Emergency stop: every running agent is killed now (its attempt runs again "
    "after `swarm system resume`). Go on?",
}
_AFTER = {
    Action.drain: "Draining. `swarm system` shows `running` reach 0; "
    "`swarm system resume` takes work again.",
    Action.stop: "Stopped. `swarm system resume` takes work again.",
    Action.resume: "Running: adapters take work.",
}


def _apply(
    action: Action, *, yes: bool, api_url: str | None, token: str | None, as_json: bool
) -> None:
    with connect(api_url, token) as client:
        if action is Action.show:
            body = client.get("/v1/system")
        else:
            if action in _QUESTIONS:
                confirm(_QUESTIONS[action], yes=yes)
            body = client.post(f"/v1/system/{action.value}")
    if as_json:
        print_json(body)
        return
    console.print(render.system_panel(body))
    if action in _AFTER:
        err.print(_AFTER[action])


def system(
    action: Annotated[
        Action,
        typer.Argument(
            metavar="ACTION",
            help="show (the default): the mode and the work in flight; drain: finish what "
            "runs, take nothing new; stop: emergency stop, kill every agent now; resume: "
            "back to running.",
        ),
    ] = Action.show,
    yes: Yes = False,
    api_url: ApiUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """The system mode (running, draining, stopped) and the work in flight; change it with
    drain, stop or resume (admin tokens). drain and stop ask first unless --yes."""
    _apply(action, yes=yes, api_url=api_url, token=token, as_json=as_json)


def drain(
    yes: Yes = False, api_url: ApiUrl = None, token: Token = None, as_json: AsJson = False
) -> None:
    """Drain the system: adapters finish what they run and take no new work (`swarm system
    resume` undoes it). Asks first unless --yes."""
    _apply(Action.drain, yes=yes, api_url=api_url, token=token, as_json=as_json)


def stop(
    yes: Yes = False, api_url: ApiUrl = None, token: Token = None, as_json: AsJson = False
) -> None:
    """Emergency stop: every running agent is killed within seconds; the interrupted attempts
    run again after `swarm system resume`. Asks first unless --yes."""
    _apply(Action.stop, yes=yes, api_url=api_url, token=token, as_json=as_json)
