"""systemd's readiness protocol, spoken to a real datagram socket, and by the real servers as systemd starts them.

A ``Type=notify`` unit (the FastAGI server, the web tool) is started when its process says ``READY=1``; said too
early, Asterisk's first call after a restart is refused, never said, systemd kills the server at its start
timeout. The tests stand in for systemd: a ``$NOTIFY_SOCKET`` of their own, and they read what arrives.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocols.service_manager import notify, notify_message
from real_pbx import free_port
from waiting import HANG

CLI = str(Path(sys.executable).with_name("hotline-eval"))


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[socket.socket]:
    """A socket where systemd's would be (its address: ``manager.getsockname()``)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listening:
        listening.bind(str(tmp_path / "notify"))
        listening.settimeout(120)
        yield listening


def test_a_notification_is_one_datagram_of_lines(manager: socket.socket) -> None:
    assert notify(manager.getsockname(), READY="1", STATUS="listening on 127.0.0.1:4573") is True
    assert manager.recv(4096) == b"READY=1\nSTATUS=listening on 127.0.0.1:4573\n"


def test_the_abstract_namespace_is_reached_by_its_at_sign() -> None:
    name = f"hotline-eval-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listening:
        listening.bind("\0" + name)
        listening.settimeout(10)
        assert notify("@" + name, STOPPING="1") is True
        assert listening.recv(4096) == b"STOPPING=1\n"


def test_without_a_service_manager_nothing_is_sent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert notify(None, READY="1") is False
    assert notify("", READY="1") is False
    assert caplog.records == []
    # A manager gone away is not the service's error, but the journal says why it never became ready.
    assert notify(str(tmp_path / "nobody-listens"), READY="1") is False
    assert [record.levelname for record in caplog.records] == ["WARNING"]
    assert f"could not tell the service manager at {tmp_path / 'nobody-listens'} READY" in caplog.text


def test_a_value_over_two_lines_is_refused() -> None:
    with pytest.raises(ValueError, match="one line"):
        notify_message(STATUS="two\nlines")


def _ready_once_it_answers(manager: socket.socket, command: list[str], port: int, env: dict[str, str],
                           log: Path, *, says_stopping: bool = False) -> list[bytes]:
    """Start ``hotline-eval COMMAND`` as systemd would, wait for its notification, and check the port already takes
    a connection at that moment (what READY=1 promises); then stop it as systemd does (SIGTERM), and read what it
    says then if it ``says_stopping``. What it said."""
    with log.open("wb") as output:
        process = subprocess.Popen([CLI, *command], env=env | {"NOTIFY_SOCKET": manager.getsockname()},
                                   stdout=output, stderr=subprocess.STDOUT)
    try:
        try:
            said = [manager.recv(4096)]
        except TimeoutError:
            raise AssertionError(f"no READY=1: {log.read_text(errors='replace')[-2000:]}") from None
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass
        process.terminate()
        if says_stopping:
            said.append(manager.recv(4096))
        process.wait(timeout=HANG)
        return said
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _migrated(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = dict(os.environ, HOTLINE_EVAL_HOME=str(tmp_path), DATABASE_URL=f"sqlite:///{tmp_path / 'store.db'}",
               **settings)
    subprocess.run([CLI, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=HANG)
    return env


def test_the_fastagi_server_is_ready_once_it_listens_and_says_when_it_stops(manager: socket.socket,
                                                                           tmp_path: Path) -> None:
    port = free_port()
    env = _migrated(tmp_path, HOTLINE_EVAL_SPOOL=str(tmp_path / "spool"))
    said = _ready_once_it_answers(manager, ["agi", "--listen", f"127.0.0.1:{port}",
                                            "--audiosocket", f"127.0.0.1:{free_port()}"], port, env,
                                  tmp_path / "agi.log", says_stopping=True)
    assert said[0] == f"READY=1\nSTATUS=listening on 127.0.0.1:{port}\n".encode()
    # The probe's connection may still count as a call when the drain begins.
    assert re.fullmatch(rb"STOPPING=1\nSTATUS=stopping: [01] call\(s\) in progress\n", said[1]), said


def test_the_web_tool_is_ready_once_it_listens(manager: socket.socket, tmp_path: Path) -> None:
    port = free_port()
    env = _migrated(tmp_path, HOTLINE_EVAL_SECRET_KEY="a-test-secret-key-of-enough-length-0123456789",
                    HOTLINE_EVAL_NUMBER_KEY="a-test-number-key-of-enough-length-0123456789")
    said = _ready_once_it_answers(manager, ["web", "--listen", f"127.0.0.1:{port}"], port, env, tmp_path / "web.log")
    assert said == [f"READY=1\nSTATUS=serving on http://127.0.0.1:{port}/\n".encode()]
