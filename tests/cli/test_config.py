"""Where the CLI finds the API and its token: flag > environment > config file >
`.swarm/admin.token` > default; a config file holding a token must be private."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarm_cli.client import CliError
from swarm_cli.config import DEFAULT_URL, config_path, resolve


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder and config home; no SWARM_ variable."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def write_config(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def env_for(home: Path, **extra: str) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(home / "xdg"), **extra}


def test_the_config_file_is_found_by_xdg_or_swarm_config(home: Path) -> None:
    assert config_path({"XDG_CONFIG_HOME": "/x"}) == Path("/x/swarm/config.toml")
    assert config_path({"SWARM_CONFIG": "/y/c.toml", "XDG_CONFIG_HOME": "/x"}) == Path("/y/c.toml")
    assert config_path({"XDG_CONFIG_HOME": "relative"}) == (
        Path.home() / ".config" / "swarm" / "config.toml"
    )


def test_nothing_configured_means_the_local_default(home: Path) -> None:
    got = resolve(environ=env_for(home))
    assert (got.api_url, got.api_url_from) == (DEFAULT_URL, "default")
    assert got.token is None and got.token_from == "none" and not got.config_found


def test_precedence_flag_env_config_then_default(home: Path) -> None:
    write_config(
        home / "xdg" / "swarm" / "config.toml",
        'api_url = "https://from-config.example"\ntoken = "config-token"\n',
    )
    env = env_for(home)
    got = resolve(environ=env)
    assert got.api_url == "https://from-config.example" and got.token == "config-token"
    assert got.config_found and "config.toml" in got.token_from

    env |= {"SWARM_API_URL": "http://from-env:1/", "SWARM_API_TOKEN": "env-token"}
    got = resolve(environ=env)
    assert (got.api_url, got.token) == ("http://from-env:1", "env-token")
    assert (got.api_url_from, got.token_from) == ("SWARM_API_URL", "SWARM_API_TOKEN")

    got = resolve(api_url="http://flag:2", token="flag-token", environ=env)
    assert (got.api_url, got.token) == ("http://flag:2", "flag-token")
    assert (got.api_url_from, got.token_from) == ("--api-url", "--token")
    assert "flag-token" not in repr(got)  # never in a repr (or a log line)


def test_token_files_rank_between_env_and_the_local_admin_token(home: Path) -> None:
    (home / "work" / ".swarm").mkdir()
    (home / "work" / ".swarm" / "admin.token").write_text("local-admin\n")
    env = env_for(home)
    assert resolve(environ=env).token == "local-admin"

    named = home / "config-token"
    named.write_text("from-token-file\n")
    write_config(home / "xdg" / "swarm" / "config.toml", 'token_file = "../../config-token"\n')
    got = resolve(environ=env)  # relative to the config file's folder
    assert got.token == "from-token-file" and "token_file" in got.token_from

    other = home / "other-token"
    other.write_text("from-env-file")
    got = resolve(environ=env | {"SWARM_TOKEN_FILE": str(other)})
    assert got.token == "from-env-file" and got.token_from.startswith("SWARM_TOKEN_FILE")


def test_an_unreadable_swarm_token_file_warns_and_hides_the_local_token(home: Path) -> None:
    (home / "work" / ".swarm").mkdir()
    (home / "work" / ".swarm" / "admin.token").write_text("local-admin\n")
    got = resolve(environ=env_for(home, SWARM_TOKEN_FILE=str(home / "missing")))
    assert got.token is None
    assert any("SWARM_TOKEN_FILE" in w for w in got.warnings)


def test_the_local_admin_token_goes_to_a_loopback_url_only(home: Path) -> None:
    (home / "work" / ".swarm").mkdir()
    (home / "work" / ".swarm" / "admin.token").write_text("local-admin\n")
    for url in ("http://localhost:8000", "http://127.0.0.2:9", "http://[::1]:8000"):
        assert resolve(api_url=url, environ=env_for(home)).token == "local-admin", url
    assert resolve(api_url="https://swarm.example.com", environ=env_for(home)).token is None


def test_a_readable_config_file_with_a_token_is_refused(home: Path) -> None:
    path = write_config(
        home / "xdg" / "swarm" / "config.toml", 'token = "secret-token"\n', mode=0o644
    )
    with pytest.raises(CliError) as refused:
        resolve(environ=env_for(home))
    assert refused.value.code == "insecure_config"
    assert "chmod 600" in str(refused.value) and "secret-token" not in str(refused.value)
    path.chmod(0o600)
    assert resolve(environ=env_for(home)).token == "secret-token"
    # Without a token in it, a config file may be readable.
    path.write_text('api_url = "http://x:1"\n')
    path.chmod(0o644)
    assert resolve(environ=env_for(home)).api_url == "http://x:1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("api_url = ", "not valid TOML"),
        ("api_url = 3\n", "`api_url` must be a non-empty string"),
        ('token = "a"\ntoken_file = "b"\n', "not both"),
        ('token_file = "missing"\n', "cannot read token_file"),
    ],
)
def test_a_broken_config_file_is_a_clear_error(home: Path, text: str, message: str) -> None:
    write_config(home / "xdg" / "swarm" / "config.toml", text)
    with pytest.raises(CliError) as refused:
        resolve(environ=env_for(home))
    assert message in str(refused.value) and refused.value.code == "bad_config"


def test_unknown_keys_warn(home: Path) -> None:
    write_config(home / "xdg" / "swarm" / "config.toml", 'api_url = "http://x:1"\nurl = "y"\n')
    got = resolve(environ=env_for(home))
    assert got.api_url == "http://x:1" and any("unknown key(s) url" in w for w in got.warnings)
