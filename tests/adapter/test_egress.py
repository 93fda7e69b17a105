"""An attempt's network out of its sandbox (`swarm_adapter.egress` and
`swarm_adapter.sandbox_init`), on the host with real sockets and real processes: the
allow-list; forwards and the HTTP proxy relaying to real TCP servers, with half-close;
refusals answered, counted and logged; `close()` leaving no socket and no task; and
`sandbox_init` relaying a command's loopback connections to the Unix sockets, then exiting
as the command did."""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from swarm_adapter import egress as egress_module
from swarm_adapter import sandbox_init
from swarm_adapter.egress import Egress, Target, allowed

INIT = sandbox_init.__file__
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
MakeEgress = Callable[..., Awaitable[Egress]]

# --- allowed() ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allow", "host", "port", "expected"),
    [
        (["example.com"], "example.com", 443, True),
        (["example.com"], "example.com", 80, True),
        (["example.com"], "example.com", 8080, False),  # no port: 80 and 443 only
        (["example.com"], "EXAMPLE.Com", 443, True),
        (["EXAMPLE.COM"], "example.com", 443, True),
        (["example.com"], "example.com.", 443, True),  # the root's dot is the same name
        (["example.com"], "www.example.com", 443, False),
        (["example.com"], "example.com.evil.net", 443, False),
        (["example.com"], "evilexample.com", 443, False),
        (["example.com:8443"], "example.com", 8443, True),
        (["example.com:8443"], "example.com", 443, False),
        (["*.example.com"], "api.example.com", 443, True),
        (["*.example.com"], "a.b.example.com", 80, True),
        (["*.example.com"], "API.Example.COM", 443, True),
        (["*.example.com"], "example.com", 443, False),  # subdomains only
        (["*.example.com"], "evil-example.com", 443, False),
        (["*.example.com"], "api.example.com.evil.net", 443, False),
        (["*.example.com"], "api.example.com", 22, False),
        (["*.example.com:8443"], "api.example.com", 8443, True),
        (["*.example.com:8443"], "api.example.com", 443, False),
        (["127.0.0.1:5000"], "127.0.0.1", 5000, True),
        (["127.0.0.1:5000"], "127.0.0.2", 5000, False),
        (["[::1]:443"], "::1", 443, True),
        (["[::1]:443"], "[::1]", 443, True),
        (["[::1]:443"], "0:0:0:0:0:0:0:1", 443, True),  # one address, two spellings
        (["[::1]:443"], "::1", 80, False),
        (["[::1]"], "::1", 80, True),
        (["::1"], "::1", 443, True),
        (["a.com", "b.com:22"], "b.com", 22, True),
        (["a.com", "b.com:22"], "c.com", 443, False),
        ([], "example.com", 443, False),
        (["example.com"], "exa mple.com", 443, False),  # not a host name: never allowed
        (["example.com"], "", 443, False),
    ],
)
def test_allowed(allow: list[str], host: str, port: int, expected: bool) -> None:
    assert allowed(allow, host, port) is expected


@pytest.mark.parametrize(
    "entry", ["", "example.com:", "example.com:http", "example.com:70000", "[::1]443", "*", "a/b"]
)
def test_a_malformed_allow_entry_fails_at_once(entry: str) -> None:
    with pytest.raises(ValueError):
        allowed([entry], "example.com", 443)
    with pytest.raises(ValueError):
        Egress(Path("/nonexistent"), forwards={}, allow=[entry])


# --- servers and helpers ----------------------------------------------------------------------


@pytest.fixture
def folder() -> Iterator[Path]:
    """A short path: a Unix socket's path must fit in 108 bytes, pytest's tmp_path may not."""
    path = Path(tempfile.mkdtemp(dir="/tmp", prefix="egress-"))
    yield path / "net"
    shutil.rmtree(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    """A TCP server that sends back what it gets, then `<eof>` once the client's side has
    ended (proof that the EOF came through and that the other way still works), then
    closes."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write(b"<eof>")
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


@dataclass
class Http:
    port: int
    heads: list[list[str]] = field(default_factory=list)


@pytest.fixture
async def http() -> AsyncIterator[Http]:
    """An HTTP server that records each request's head and answers `hello`."""
    found = Http(port=0)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        found.heads.append(head.decode().split("\r\n")[:-2])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    found.port = server.sockets[0].getsockname()[1]
    async with server:
        yield found


@pytest.fixture
async def make_egress(folder: Path) -> AsyncIterator[MakeEgress]:
    made: list[Egress] = []

    async def make(**kwargs: Any) -> Egress:
        kwargs.setdefault("forwards", {})
        kwargs.setdefault("allow", [])
        made.append(Egress(folder, **kwargs))
        await made[-1].start()
        return made[-1]

    yield make
    for egress in made:
        await egress.close()


async def unix(path: Path) -> Streams:
    return await asyncio.open_unix_connection(str(path))


async def until_eof(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), 10)


async def ask(egress: Egress, head: bytes) -> bytes:
    """Send `head` to the proxy; all it answers before closing."""
    reader, writer = await unix(egress.folder / "proxy.sock")
    writer.write(head)
    try:
        return await until_eof(reader)
    finally:
        writer.close()
        await writer.wait_closed()


def egress_tasks() -> list[asyncio.Task[Any]]:
    """Running tasks whose coroutine is egress's own (a relay, a connection's handler)."""
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "cr_code", None) is not None
        and task.get_coro().cr_code.co_filename == egress_module.__file__  # type: ignore[union-attr]
    ]


# --- forwards -------------------------------------------------------------------------------


async def test_start_makes_a_private_folder_with_a_socket_each(
    make_egress: MakeEgress, folder: Path
) -> None:
    await make_egress(forwards={8080: Target("127.0.0.1", 1), 9000: Target("127.0.0.1", 2)})
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert sorted(p.name for p in folder.iterdir()) == ["8080.sock", "9000.sock", "proxy.sock"]
    assert all(stat.S_ISSOCK(p.stat().st_mode) for p in folder.iterdir())


async def test_a_forward_relays_both_ways_and_passes_the_eof_on(
    make_egress: MakeEgress, echo_port: int
) -> None:
    egress = await make_egress(forwards={8080: Target("127.0.0.1", echo_port)})
    reader, writer = await unix(egress.folder / "8080.sock")
    writer.write(b"ping")
    assert await asyncio.wait_for(reader.readexactly(4), 10) == b"ping"
    writer.write(b"pong")
    writer.write_eof()  # half-closed: the answer still comes back
    assert await until_eof(reader) == b"pong<eof>"
    writer.close()
    assert egress.allowed == 1
    assert egress.refused == 0


async def test_a_forward_whose_target_is_down_closes_the_connection(
    make_egress: MakeEgress, caplog: pytest.LogCaptureFixture
) -> None:
    egress = await make_egress(forwards={8080: Target("127.0.0.1", free_port())})
    with caplog.at_level(logging.WARNING, logger="swarm_adapter.egress"):
        reader, writer = await unix(egress.folder / "8080.sock")
        assert await until_eof(reader) == b""
    writer.close()
    assert (egress.allowed, egress.refused) == (0, 0)
    assert [r.getMessage() for r in caplog.records] == ["egress forward cannot connect"]


# --- the proxy ------------------------------------------------------------------------------


async def test_connect_to_an_allowed_host_is_relayed(
    make_egress: MakeEgress, echo_port: int
) -> None:
    egress = await make_egress(allow=[], trusted=[f"127.0.0.1:{echo_port}"])
    reader, writer = await unix(egress.folder / "proxy.sock")
    writer.write(f"CONNECT 127.0.0.1:{echo_port} HTTP/1.1\r\nHost: x\r\n\r\nearly".encode())
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert answer == b"HTTP/1.1 200 Connection established\r\n\r\n"
    writer.write(b" bytes")
    writer.write_eof()
    assert await until_eof(reader) == b"early bytes<eof>"
    writer.close()
    assert (egress.allowed, egress.refused, egress.refused_hosts) == (1, 0, [])


async def test_connect_to_a_host_not_allowed_is_refused_counted_and_logged(
    make_egress: MakeEgress, echo_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    egress = await make_egress(allow=["example.com"], context={"task_key": "t1"})
    with caplog.at_level(logging.WARNING, logger="swarm_adapter.egress"):
        answer = await ask(egress, f"CONNECT 127.0.0.1:{echo_port} HTTP/1.1\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert answer.endswith(f"swarm sandbox: 127.0.0.1:{echo_port} is not allowed\n".encode())
    assert (egress.refused, egress.allowed) == (1, 0)
    assert egress.refused_hosts == [f"127.0.0.1:{echo_port}"]
    [record] = [r for r in caplog.records if r.getMessage() == "egress refused"]
    assert record.levelno == logging.WARNING
    assert (record.host, record.port, record.task_key) == ("127.0.0.1", echo_port, "t1")  # type: ignore[attr-defined]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "169.254.169.254", "[::1]", "own"])
async def test_a_session_cannot_allow_this_machine_or_its_local_addresses(
    make_egress: MakeEgress, echo_port: int, host: str
) -> None:
    """`allow` (a tenant's to write) never reaches this machine (its loopback, its own
    addresses: its Redis, its PostgreSQL) nor link-local addresses (a cloud's metadata
    service), even when it names them; `trusted` (the adapter's model APIs) may."""
    if host == "own":
        host = _own_address() or "127.0.0.1"
    egress = await make_egress(allow=[f"{host}:{echo_port}"])
    answer = await ask(egress, f"CONNECT {host}:{echo_port} HTTP/1.1\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n"), answer
    assert b"is an address of this machine or of its local network" in answer
    assert (egress.refused, egress.allowed) == (1, 0)


def _own_address() -> str | None:
    """This machine's address on its default route, if it has one but loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: it only picks a route
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


async def test_refused_hosts_keeps_the_first_twenty_distinct(make_egress: MakeEgress) -> None:
    egress = await make_egress(allow=[])
    hosts = [f"h{n}.example.com:443" for n in range(25)]
    for where in [hosts[0], *hosts, "[::1]:22"]:
        answer = await ask(egress, f"CONNECT {where} HTTP/1.1\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 403 ")
    assert egress.refused == 27
    assert egress.refused_hosts == hosts[:20]


async def test_an_absolute_form_request_goes_upstream_in_origin_form(
    make_egress: MakeEgress, http: Http
) -> None:
    egress = await make_egress(allow=[], trusted=[f"localhost:{http.port}"])
    answer = await ask(
        egress,
        (
            f"POST http://LocalHost:{http.port}/path/to?q=1 HTTP/1.1\r\n"
            f"Host: localhost:{http.port}\r\nProxy-Connection: keep-alive\r\n"
            "Proxy-Authorization: Basic c2VjcmV0\r\nX-Kept: yes\r\n\r\n"
        ).encode(),
    )
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\nhello")
    assert http.heads == [
        ["POST /path/to?q=1 HTTP/1.1", f"Host: localhost:{http.port}", "X-Kept: yes"]
    ]
    assert egress.allowed == 1


async def test_an_absolute_form_request_without_a_port_or_host_header(
    make_egress: MakeEgress,
) -> None:
    """Port 80 by default, and a Host header added when the client sent none; the refusal
    shows which port was meant."""
    egress = await make_egress(allow=[])
    answer = await ask(egress, b"GET http://example.com HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 403 ")
    assert egress.refused_hosts == ["example.com:80"]


async def test_an_absolute_form_request_to_a_host_not_allowed_is_refused(
    make_egress: MakeEgress, http: Http
) -> None:
    egress = await make_egress(allow=["127.0.0.1"])  # ports 80 and 443 only
    answer = await ask(egress, f"GET http://127.0.0.1:{http.port}/ HTTP/1.1\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert http.heads == []
    assert egress.refused == 1


@pytest.mark.parametrize(
    "head",
    [
        b"nonsense\r\n\r\n",
        b"GET /relative HTTP/1.1\r\nHost: example.com\r\n\r\n",  # origin-form: not for a proxy
        b"GET https://example.com/ HTTP/1.1\r\n\r\n",
        b"CONNECT example.com HTTP/1.1\r\n\r\n",  # no port
        b"CONNECT example.com:99999 HTTP/1.1\r\n\r\n",
        b"CONNECT user@example.com:443 HTTP/1.1\r\n\r\n",
        b"CONNECT example.com:443 SPDY/3\r\n\r\n",
        b"CONNECT exa\x00mple.com:443 HTTP/1.1\r\n\r\n",
        b"GET http://example.com/ HTTP/1.1\r\nX: " + b"x" * 20_000 + b"\r\n\r\n",  # > 16 KiB
        b"CONNECT example.com:443 HTTP/1.1\r\n",  # cut short
    ],
)
async def test_a_malformed_request_gets_400_and_counts_as_refused(
    make_egress: MakeEgress, head: bytes
) -> None:
    egress = await make_egress(allow=["example.com"])
    reader, writer = await unix(egress.folder / "proxy.sock")
    writer.write(head)
    writer.write_eof()
    answer = await until_eof(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert (egress.refused, egress.allowed, egress.refused_hosts) == (1, 0, [])


async def test_a_request_head_that_never_ends_gets_400(
    make_egress: MakeEgress, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(egress_module, "HEAD_TIMEOUT_S", 0.2)
    egress = await make_egress(allow=["example.com"])
    reader, writer = await unix(egress.folder / "proxy.sock")
    writer.write(b"CONNECT example.com:443 HTTP/1.1\r\n")  # and then nothing
    answer = await until_eof(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert answer.endswith(b"swarm sandbox: no request head in 0.2s\n")
    assert egress.refused == 1


async def test_a_client_that_leaves_at_once_is_not_a_refusal(make_egress: MakeEgress) -> None:
    egress = await make_egress(allow=[])
    reader, writer = await unix(egress.folder / "proxy.sock")
    writer.write_eof()
    assert await until_eof(reader) == b""
    writer.close()
    assert egress.refused == 0


async def test_an_allowed_host_that_is_down_gets_502(make_egress: MakeEgress) -> None:
    port = free_port()
    egress = await make_egress(allow=[], trusted=[f"127.0.0.1:{port}"])
    answer = await ask(egress, f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert f"cannot reach 127.0.0.1:{port}".encode() in answer
    assert (egress.allowed, egress.refused) == (0, 0)


# --- close() --------------------------------------------------------------------------------


async def test_close_ends_open_relays_and_leaves_no_socket_and_no_task(
    folder: Path, echo_port: int
) -> None:
    egress = Egress(
        folder,
        forwards={8080: Target("127.0.0.1", echo_port)},
        allow=[],
        trusted=[f"127.0.0.1:{echo_port}"],
    )
    await egress.start()
    forward = await unix(folder / "8080.sock")
    proxied = await unix(folder / "proxy.sock")
    idle = await unix(folder / "proxy.sock")  # has sent no head yet
    proxied[1].write(f"CONNECT 127.0.0.1:{echo_port} HTTP/1.1\r\n\r\n".encode())
    await asyncio.wait_for(proxied[0].readuntil(b"\r\n\r\n"), 10)
    for reader, writer in (forward, proxied):
        writer.write(b"x")
        assert await asyncio.wait_for(reader.readexactly(1), 10) == b"x"
    assert len(egress_tasks()) == 2 * 2 + 3  # two pipes for each relay, three handlers

    await egress.close()
    assert egress_tasks() == []
    assert list(folder.iterdir()) == []
    for reader, writer in (forward, proxied, idle):
        assert await until_eof(reader) == b""  # the client sees its connection end
        writer.close()
    with pytest.raises(OSError):
        await unix(folder / "proxy.sock")
    await egress.close()  # twice is fine


# --- sandbox_init ---------------------------------------------------------------------------

CLIENT = """
import hashlib, socket, sys
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sock = socket.create_connection((host, port))
sent = bytes(range(256)) * (size // 256) if size else b"ping"
sock.sendall(sent)
sock.shutdown(socket.SHUT_WR)
got = b""
while chunk := sock.recv(65536):
    got += chunk
print(got.decode() if not size else (len(got), hashlib.sha256(got).hexdigest()))
"""


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


async def run_init(spec: str, *command: str, options: tuple[str, ...] = ()) -> Ran:
    """sandbox_init on the host, as the sandbox runs it; no proxy settings of the host's."""
    env = {name: value for name, value in os.environ.items() if "proxy" not in name.lower()}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-S", *options, INIT, spec, "--", *command,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


def spec(forwards: dict[int, Path]) -> str:
    return json.dumps({"forwards": {str(port): str(path) for port, path in forwards.items()}})


async def test_sandbox_init_relays_loopback_to_a_forward(
    make_egress: MakeEgress, echo_port: int
) -> None:
    egress = await make_egress(forwards={8080: Target("127.0.0.1", echo_port)})
    port = free_port()
    ran = await run_init(
        spec({port: egress.folder / "8080.sock"}),
        *(sys.executable, "-c", CLIENT, "127.0.0.1", str(port), "0"),
    )
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "ping<eof>\n", "")
    assert egress.allowed == 1


async def test_sandbox_init_relays_a_megabyte_both_ways(
    make_egress: MakeEgress, echo_port: int
) -> None:
    egress = await make_egress(forwards={8080: Target("127.0.0.1", echo_port)})
    port, size = free_port(), 4 * 1024 * 1024
    ran = await run_init(
        spec({port: egress.folder / "8080.sock"}),
        *(sys.executable, "-c", CLIENT, "127.0.0.1", str(port), str(size)),
    )
    sent = bytes(range(256)) * (size // 256) + b"<eof>"
    assert ran.stdout == f"{(len(sent), hashlib.sha256(sent).hexdigest())}\n"
    assert ran.returncode == 0


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
async def test_sandbox_init_listens_on_ipv6_loopback_too(
    make_egress: MakeEgress, echo_port: int
) -> None:
    egress = await make_egress(forwards={8080: Target("127.0.0.1", echo_port)})
    port = free_port()
    ran = await run_init(
        spec({port: egress.folder / "8080.sock"}),
        *(sys.executable, "-c", CLIENT, "::1", str(port), "0"),
    )
    assert (ran.returncode, ran.stdout) == (0, "ping<eof>\n")


async def test_sandbox_init_and_the_proxy_serve_an_http_client(
    make_egress: MakeEgress, http: Http
) -> None:
    """urllib inside, told to use the proxy on a loopback port, as an agent's tools are."""
    egress = await make_egress(allow=[], trusted=[f"127.0.0.1:{http.port}"])
    port = free_port()
    fetch = (
        "import sys, urllib.request, urllib.error\n"
        "proxy = urllib.request.ProxyHandler({'http': sys.argv[1]})\n"
        "opener = urllib.request.build_opener(proxy)\n"
        "for url in sys.argv[2:]:\n"
        "    try: print(opener.open(url, timeout=10).read().decode())\n"
        "    except urllib.error.HTTPError as e: print(e.code, e.read().decode().strip())\n"
    )
    ran = await run_init(
        spec({port: egress.folder / "proxy.sock"}),
        *(sys.executable, "-I", "-c", fetch, f"http://127.0.0.1:{port}"),
        *(f"http://127.0.0.1:{http.port}/a", "http://example.com/b"),
    )
    assert ran.stdout.splitlines() == [
        "hello",
        "403 swarm sandbox: example.com:80 is not allowed",
    ]
    assert [head[0] for head in http.heads] == ["GET /a HTTP/1.1"]
    assert (egress.allowed, egress.refused) == (1, 1)


@pytest.mark.parametrize(
    ("command", "returncode"),
    [
        (("sh", "-c", "exit 7"), 7),
        (("true",), 0),
        (("sh", "-c", "kill -TERM $$"), -signal.SIGTERM),
        (("sh", "-c", "kill -INT $$"), -signal.SIGINT),
    ],
)
async def test_sandbox_init_exits_as_the_command_did(
    command: tuple[str, ...], returncode: int
) -> None:
    ran = await run_init('{"forwards": {}}', *command)
    assert ran.returncode == returncode


async def test_sandbox_init_waits_for_the_command_after_a_sigterm() -> None:
    """A SIGTERM to the group reaches the command; sandbox_init outlives it and reports how
    it ended (here the command traps it and exits 3)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-S", INIT, "{}", "--",
        "sh", "-c", "trap 'exit 3' TERM; echo ready; while :; do sleep 0.05; done",
        stdout=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"ready\n"
    os.killpg(proc.pid, signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 30) == 3


async def test_sandbox_init_cannot_run_a_missing_command() -> None:
    ran = await run_init('{"forwards": {}}', "no-such-command-anywhere")
    assert ran.returncode == 127
    assert ran.stderr.startswith("cannot run no-such-command-anywhere: ")


async def test_sandbox_init_cannot_run_a_file_that_is_not_executable(folder: Path) -> None:
    folder.mkdir()
    (folder / "script").write_text("echo hi\n")
    ran = await run_init("{}", str(folder / "script"))
    assert ran.returncode == 126


@pytest.mark.parametrize(
    "bad", ["not json", "[1]", '{"forwards": []}', '{"forwards": {"http": "/x.sock"}}']
)
async def test_sandbox_init_refuses_a_bad_spec(bad: str) -> None:
    ran = await run_init(bad, "true")
    assert ran.returncode == 2
    assert ran.stderr.startswith("sandbox_init: bad spec")


async def test_sandbox_init_fails_when_its_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ran = await run_init(spec({port: Path("/nonexistent.sock")}), "true")
    assert ran.returncode == 125
    assert f"cannot listen on 127.0.0.1:{port}" in ran.stderr


async def test_sandbox_init_without_forwards_imports_nothing_for_the_network() -> None:
    ran = await run_init('{"forwards": {}}', "true", options=("-X", "importtime"))
    imported = {line.split("|")[-1].strip() for line in ran.stderr.splitlines()}
    assert "signal" in imported  # the report is there
    assert not imported & {"json", "socket", "selectors", "threading", "typing", "subprocess"}


def test_sandbox_init_imports_only_the_standard_library_it_needs() -> None:
    """It runs inside the sandbox with `python -I -S`, where no package is installed."""
    tree = ast.parse(Path(INIT).read_text())
    imported = {
        alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names
    }
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {
        "__future__", "json", "os", "selectors", "signal", "socket", "sys"
    }  # fmt: skip
