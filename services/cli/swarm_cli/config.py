"""Where the client commands find Swarm's API and their token.

Each setting is taken from the first place that has it:

- API URL: `--api-url`, `SWARM_API_URL`, the config file's `api_url`, http://127.0.0.1:8000.
- token: `--token`, `SWARM_API_TOKEN`, the file `SWARM_TOKEN_FILE` names, the config file's
  `token` or `token_file`, then `.swarm/admin.token` (what `swarm up` writes beside itself;
  sent only to a loopback URL, so a local admin token never travels to another host).

The config file is `$SWARM_CONFIG`, else `$XDG_CONFIG_HOME/swarm/config.toml` (by default
`~/.config/swarm/config.toml`):

    api_url = "https://swarm.example.com"
    token_file = "~/.config/swarm/token"      # or: token = "swarm_..."

A config file that holds a token must be private (`chmod 600`); one that others can read is
refused, as ssh refuses a readable private key.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from swarm_cli.client import CliError

__all__ = [
    "DEFAULT_TOKEN_FILE",
    "DEFAULT_URL",
    "ConfigFile",
    "Connection",
    "config_path",
    "read_config",
    "resolve",
]

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TOKEN_FILE = Path(".swarm") / "admin.token"
_KEYS = ("api_url", "token", "token_file")


@dataclass(frozen=True)
class ConfigFile:
    path: Path
    api_url: str | None = None
    token: str | None = field(default=None, repr=False)
    token_file: Path | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Connection:
    """The resolved settings, and where each came from (for `swarm config show`)."""

    api_url: str
    api_url_from: str
    token: str | None = field(repr=False)
    token_from: str
    config_file: Path
    config_found: bool
    warnings: tuple[str, ...] = ()


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("SWARM_CONFIG"):
        return Path(env["SWARM_CONFIG"]).expanduser()
    xdg = env.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config"
    return base / "swarm" / "config.toml"


def read_config(path: Path) -> ConfigFile | None:
    """The config file at `path`, or None when there is none."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CliError(
            f"cannot read config file {path}: {exc.strerror}", code="bad_config"
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CliError(f"config file {path} is not valid TOML: {exc}", code="bad_config") from None
    warnings = []
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        warnings.append(
            f"config file {path}: unknown key(s) {', '.join(unknown)} ignored; "
            f"known: {', '.join(_KEYS)}"
        )
    values = {key: _string(data, key, path) for key in _KEYS}
    if values["token"] is not None and values["token_file"] is not None:
        raise CliError(
            f"config file {path}: set `token` or `token_file`, not both", code="bad_config"
        )
    if values["token"] is not None:
        _check_private(path)
    token_file = None
    if values["token_file"] is not None:
        token_file = Path(values["token_file"]).expanduser()
        if not token_file.is_absolute():
            token_file = path.parent / token_file
    return ConfigFile(
        path=path,
        api_url=values["api_url"],
        token=values["token"],
        token_file=token_file,
        warnings=tuple(warnings),
    )


def _string(data: Mapping[str, object], key: str, path: Path) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise CliError(f"config file {path}: `{key}` must be a non-empty string", code="bad_config")
    return value.strip()


def _check_private(path: Path) -> None:
    if os.name != "posix":
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise CliError(
            f"config file {path} holds a token but other users may read it (mode {mode:o}); "
            f"run `chmod 600 {path}`, or keep the token in a private file named by `token_file`",
            code="insecure_config",
        )


def _read_token(path: Path) -> str | None:
    return path.read_text().strip() or None


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve(
    *,
    api_url: str | None = None,
    token: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Connection:
    """Where to connect and with which token: `api_url` and `token` are the flags' values
    (None when not given)."""
    env = os.environ if environ is None else environ
    path = config_path(env)
    config = read_config(path)
    warnings = list(config.warnings) if config else []
    url, url_from = _pick(
        (api_url, "--api-url"),
        (env.get("SWARM_API_URL"), "SWARM_API_URL"),
        (config.api_url if config else None, f"api_url in {path}"),
        (DEFAULT_URL, "default"),
    )
    assert url is not None  # the default always answers
    secret, secret_from = _token(token, env, config, url, warnings)
    return Connection(
        api_url=url.rstrip("/"),
        api_url_from=url_from,
        token=secret,
        token_from=secret_from,
        config_file=path,
        config_found=config is not None,
        warnings=tuple(warnings),
    )


def _pick(*choices: tuple[str | None, str]) -> tuple[str | None, str]:
    for value, source in choices:
        if value:
            return value, source
    return None, "none"


def _token(
    flag: str | None,
    env: Mapping[str, str],
    config: ConfigFile | None,
    url: str,
    warnings: list[str],
) -> tuple[str | None, str]:
    if flag:
        return flag, "--token"
    if env.get("SWARM_API_TOKEN"):
        return env["SWARM_API_TOKEN"], "SWARM_API_TOKEN"
    named = env.get("SWARM_TOKEN_FILE")
    if named:
        try:
            found = _read_token(Path(named).expanduser())
        except OSError as exc:
            warnings.append(
                f"SWARM_TOKEN_FILE names {named}, which cannot be read ({exc.strerror})"
            )
        else:
            if found:
                return found, f"SWARM_TOKEN_FILE ({named})"
    if config is not None:
        configured = _configured_token(config)
        if configured[0]:
            return configured
    if not named and _is_loopback(url):
        try:
            found = _read_token(DEFAULT_TOKEN_FILE)
        except OSError:
            found = None
        if found:
            return found, f"{DEFAULT_TOKEN_FILE} (written by `swarm up`)"
    return None, "none"


def _configured_token(config: ConfigFile) -> tuple[str | None, str]:
    if config.token:
        return config.token, f"token in {config.path}"
    if config.token_file is None:
        return None, "none"
    try:
        found = _read_token(config.token_file)
    except OSError as exc:
        raise CliError(
            f"cannot read token_file {config.token_file} named in {config.path}: {exc.strerror}",
            code="bad_config",
        ) from None
    return found, f"token_file {config.token_file} (from {config.path})"
