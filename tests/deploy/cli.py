"""A container's `swarm ...` command line, parsed by the real Typer app without running it:
a sub-command that does not exist, an option it does not have or a value it refuses fails
as it would in the container (`Refused`, where the CLI would exit 2 with a usage error).

Typer ships its own copy of click, so groups and usage errors are recognised by what they
do (`get_command`, `exit_code` 2), not by click's classes."""

from __future__ import annotations

from typing import Any

from typer.main import get_command

from swarm_cli.main import app

USAGE_ERROR_EXIT = 2


class Refused(Exception):
    """The CLI would refuse this command line with a usage error."""


def parse(argv: list[str]) -> Any:
    """The click context of the command `argv` (`["swarm", "adapter", "--check-health"]`)
    names, its options parsed and converted, its callback not run."""
    assert argv and argv[0] == "swarm", argv
    command: Any = get_command(app)
    parent = command.context_class(command, info_name="swarm")
    name, args = "swarm", list(argv[1:])
    while hasattr(command, "list_commands"):  # a group: the next word names a command
        if not args:
            raise Refused(f"`{' '.join(argv)}` names no sub-command")
        name, *args = args
        sub = command.get_command(parent, name)
        if sub is None:
            raise Refused(f"no such command {name!r} in `{' '.join(argv)}`")
        command = sub
        if hasattr(command, "list_commands"):
            parent = command.context_class(command, info_name=name, parent=parent)
    try:
        return command.make_context(name, args, parent=parent)
    except Exception as exc:
        if getattr(exc, "exit_code", None) == USAGE_ERROR_EXIT:
            raise Refused(f"`{' '.join(argv)}`: {exc}") from exc
        raise


def command_name(argv: list[str]) -> str:
    """The sub-command `argv` runs (`adapter` for `swarm adapter --agent shell`)."""
    name: str = parse(argv).info_name
    return name
