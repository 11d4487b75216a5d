"""`make demo` as a newcomer meets it: ports checked before any work, a fresh store per run, recordings that
play, and a click-to-call in the web tool that the dialer behind it places and ends."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import wave
from pathlib import Path

import pytest
from sqlalchemy import select

from hotline_eval.demo import claim_port
from hotline_eval.demo_web import demo_logins, recording_roots, run_backstage
from rating_core.complaints.callback_tasks import DIALLABLE_STATES
from rating_core.events.journal import Journal
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import load_rules
from rating_core.rules.settings import Settings
from rating_core.store.database import make_engine
from rating_core.store.models import CallbackAttempt, CallbackTask, Rating
from test_cli import CLI
from waiting import HANG, wait_until
from web import create_app
from web_pages import csrf

# What the demo's simulated citizens do, by the last digit of their number (hotline_eval.demo_callbacks.PICK_UP).
OUTCOMES = {"6": "busy", "7": "no_answer", "8": "rejected", "9": "congestion"}


def demo(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ, HOTLINE_EVAL_HOME=str(home))
    environment.pop("DATABASE_URL", None)
    environment.update(env or {})
    return subprocess.run([CLI, "demo", "--port", "0", "--web-port", "0", *args], capture_output=True, text=True,
                          env=environment, timeout=HANG)


def exported(home: Path) -> list[dict]:
    environment = dict(os.environ, HOTLINE_EVAL_HOME=str(home), HOTLINE_EVAL_RULES=str(home / "demo-rules.yaml"))
    environment.pop("DATABASE_URL", None)
    done = subprocess.run([CLI, "ratings", "export", "--format", "jsonl"], capture_output=True, text=True,
                          env=environment, timeout=HANG)
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("demo") / "home"
    done = demo(home, "--calls", "40")
    assert done.returncode == 0, done.stderr[-2000:]
    return home


def demo_store(home: Path) -> RatingStore:
    return RatingStore(make_engine(f"sqlite:///{home / 'hotline-eval.db'}"), load_rules(home / "demo-rules.yaml"))


def signed_in_web(store: RatingStore, home: Path, username: str):  # type: ignore[no-untyped-def]
    settings = Settings(home=home, secret_key="demo-test-secret-key-Qm4Xv8Lz2Rt6Wp")
    app = create_app(store, {"DEMO": True, "SESSION_COOKIE_SECURE": False,
                             "RECORDING_ROOTS": recording_roots(store.rules)}, settings)
    client = app.test_client()
    password = demo_logins(store)[username]
    done = client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": csrf(client, "/login")})
    assert done.status_code == 302, done.data.decode()[:500]
    return client


def test_a_port_given_and_taken_stops_the_demo_before_any_work(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for option in ("--web-port", "--port"):
            environment = dict(os.environ, HOTLINE_EVAL_HOME=str(tmp_path / "home"))
            environment.pop("DATABASE_URL", None)
            other = "--port" if option == "--web-port" else "--web-port"
            done = subprocess.run([CLI, "demo", other, "0", option, port], capture_output=True, text=True,
                                  env=environment, timeout=HANG)
            assert done.returncode == 1, done.stderr[-2000:]
            assert f"端口 {port} 已被占用" in done.stderr and option in done.stderr
            assert "Traceback" not in done.stderr
            assert done.stderr.strip().splitlines()[-1].startswith(f"Error: 端口 {port} 已被占用")
            assert "migrating" not in done.stdout and not (tmp_path / "home" / "hotline-eval.db").exists()


def test_the_default_port_taken_gives_way_to_a_free_one(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        listener = claim_port(port, what="网页工具", option="--web-port", given=False)
        assert listener is not None
        with listener:
            free = listener.getsockname()[1]
            assert free != port
    assert f"端口 {port} 已被占用：网页工具改用空闲端口 {free}" in capsys.readouterr().out


def test_each_run_starts_from_a_fresh_store_unless_kept(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert demo(home, "--calls", "5").returncode == 0
    again = demo(home, "--calls", "5")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "a fresh store: the last run's is in" in again.stdout
    assert (home / "previous-run" / "hotline-eval.db").exists()
    assert len(exported(home)) == 5 + 3  # its own callers and the three spoken ratings, nothing of the run before
    kept = demo(home, "--calls", "5", "--keep")
    assert kept.returncode == 0, kept.stderr[-2000:]
    assert len(exported(home)) == 2 * (5 + 3)


def test_a_database_url_of_someone_else_is_never_touched(tmp_path: Path) -> None:
    other = tmp_path / "theirs.db"
    other.write_bytes(b"")
    done = demo(tmp_path / "home", "--calls", "5", env={"DATABASE_URL": f"sqlite:///{other}"})
    assert done.returncode == 1 and "DATABASE_URL 指向另一个数据库" in done.stderr and "--keep" in done.stderr
    assert "Traceback" not in done.stderr and other.read_bytes() == b""


def test_the_recordings_the_demo_leaves_are_wavs_the_web_tool_plays(demo_home: Path) -> None:
    store = demo_store(demo_home)
    with store.sessions() as session:
        voices = session.execute(select(CallbackTask.id, Rating.voice_message_file).join(Rating)
                                 .where(Rating.voice_message_file.is_not(None))).tuples().all()
        recordings = session.execute(select(CallbackAttempt.id, CallbackAttempt.recording_file)
                                     .where(CallbackAttempt.recording_file.is_not(None))).tuples().all()
    assert voices and recordings
    root = (demo_home / "recordings").resolve()
    for _, path in [*voices, *recordings]:
        assert path is not None and Path(path).is_relative_to(root), path
        with wave.open(path) as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
            assert wav.getnframes() > 8000 // 2
    client = signed_in_web(store, demo_home, "demo-boss")
    for url in (f"/agent/tasks/{voices[0][0]}/voice", f"/agent/attempts/{recordings[0][0]}/recording"):
        played = client.get(url)
        assert played.status_code == 200 and played.mimetype.startswith("audio/"), url
        assert played.data[:4] == b"RIFF"


def test_click_to_call_is_dialled_and_ends_behind_the_web_tool(demo_home: Path) -> None:
    store = demo_store(demo_home)
    with store.sessions() as session:
        tasks = session.scalars(select(CallbackTask).where(CallbackTask.state.in_(list(DIALLABLE_STATES)))
                                .order_by(CallbackTask.id)).all()
        assert tasks, "the demo left no task to call"
        # One whose citizen picks up, if there is one.
        task = next((t for t in tasks if (t.number or "")[-1:] not in OUTCOMES), tasks[0])
        task_id, expected = task.id, OUTCOMES.get((task.number or "")[-1:], "answered")
    agent = signed_in_web(store, demo_home, "demo-agent")
    page = f"/agent/tasks/{task_id}"
    clicked = agent.post(f"{page}/call", data={"csrf_token": csrf(agent, page)}, follow_redirects=True)
    assert clicked.status_code == 200 and "已发起呼叫：系统将直接呼叫市民并按键核实" in clicked.data.decode()
    with store.sessions() as session:
        attempt_id = session.scalars(select(CallbackAttempt.id).where(CallbackAttempt.task_id == task_id)
                                     .order_by(CallbackAttempt.id.desc())).first()

    def attempt() -> CallbackAttempt:
        with store.sessions() as session:
            found = session.get(CallbackAttempt, attempt_id)
            assert found is not None
            session.expunge(found)
            return found

    assert attempt().status == "queued"
    said: list[str] = []

    async def behind_the_web_tool() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(run_backstage(store, Journal(demo_home / "spool"), stop,
                                                    recordings=(demo_home / "recordings").resolve(),
                                                    sweep_every=HANG, poll=0.05, report=said.append))
        try:
            await wait_until(lambda: attempt().status == "ended" or running.done(), timeout=HANG,
                             explain=lambda: f"attempt {attempt_id} is {attempt().status}")
        finally:
            stop.set()
            await running

    asyncio.run(behind_the_web_tool())
    ended = attempt()
    assert ended.outcome == expected
    assert any(line.startswith(f"   回访任务 #{task_id} 第{ended.seq}次呼叫：{expected}") for line in said), said
    with store.sessions() as session:
        assert session.get(CallbackTask, task_id).state != "dialing"  # no longer 呼叫中 for good
    if expected == "answered":
        assert ended.recording_file and Path(ended.recording_file).is_file()
