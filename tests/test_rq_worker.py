"""`hotline-eval worker` without Redis: it waits and says so, serves jobs once Redis is up, and outlives a restart."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus

from callback.rq_worker import shown_url
from rating_core.store.database import make_engine
from rating_core.store.migrate import upgrade
from waiting import HANG, wait_until

CLI = str(Path(sys.executable).with_name("hotline-eval"))
PASSWORD = "s3cret-pw"


def test_a_url_is_logged_without_its_password() -> None:
    assert shown_url("redis://:pw@10.0.0.5:6379/0") == "redis://:***@10.0.0.5:6379/0"
    assert shown_url("rediss://worker:pw@redis.internal/2") == "rediss://worker:***@redis.internal/2"
    assert shown_url("unix:///run/redis.sock?db=1&password=pw") == "unix:///run/redis.sock?db=1&password=***"
    assert shown_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def redis_server(port: int, folder: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A private redis-server on ``port``, keeping nothing on disk (as tests/services.sh starts the suite's)."""
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("REQUIRE_POSTGRES"):
            pytest.fail("redis-server required but not installed")
        pytest.skip("redis-server not installed; `make test` installs it")
    process = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", PASSWORD,
                                "--save", "", "--appendonly", "no", "--dir", str(folder)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(HANG)


def answers(connection: redis.Redis) -> bool:
    try:
        return bool(connection.ping())
    except redis.ConnectionError:
        return False


class Output:
    """Everything a process prints, line by line, read as it comes."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._reader.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line.rstrip("\n"))

    def since(self, start: int, text: str) -> list[str]:
        return [line for line in self.lines[start:] if text in line]

    def tail(self) -> str:
        return "\n".join(self.lines[-40:])


async def test_the_worker_waits_for_redis_and_outlives_its_restart(tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    database = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(database)
    upgrade(engine)
    engine.dispose()
    env = {**os.environ, "REDIS_URL": url, "DATABASE_URL": database, "HOTLINE_EVAL_HOME": str(tmp_path)}
    worker = subprocess.Popen([CLI, "worker", "--queue", "callbacks"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env)
    out = Output(worker)

    def until_said(start: int, text: str) -> Awaitable[None]:
        # Also ends the wait if the worker dies, so that a dead worker fails the test at once.
        return wait_until(lambda: bool(out.since(start, text)) or worker.poll() is not None, HANG,
                          every=0.05, explain=out.tail)

    def job_done(job: Job) -> Awaitable[None]:
        return wait_until(lambda: job.get_status(refresh=True) == JobStatus.FINISHED or worker.poll() is not None,
                          HANG, every=0.05, explain=out.tail)

    try:
        # Nothing listens on the port: the worker says so, backs off, and stays.
        await until_said(0, "; retrying in 2 s")
        assert worker.poll() is None, out.tail()
        shown = f"Redis at redis://:***@127.0.0.1:{port}/0 unreachable ("
        assert [line for line in out.lines if shown in line and "retrying in" in line][:2], out.tail()
        assert not [line for line in out.lines if PASSWORD in line]

        with redis_server(port, tmp_path) as server:
            await until_said(0, "Listening on callbacks")
            queue = Queue("callbacks", connection=redis.Redis.from_url(url, socket_connect_timeout=5))
            first = queue.enqueue("callback.jobs.default_unrated_calls")
            await job_done(first)
            assert worker.poll() is None and first.return_value() == 0, out.tail()

            # Redis dies while a job runs: the job ends with nowhere to report to, and plain RQ quits.
            release = tmp_path / "release"
            blocked = queue.enqueue(subprocess.run, ["sh", "-c", f"until [ -e {release} ]; do sleep 0.05; done"])
            await wait_until(lambda: blocked.get_status(refresh=True) == JobStatus.STARTED, HANG, every=0.05,
                             explain=out.tail)
            before_outage = len(out.lines)
            server.terminate()
            server.wait(HANG)
            release.touch()
            await until_said(before_outage, "unreachable (")
        assert worker.poll() is None, out.tail()

        with redis_server(port, tmp_path):
            after = Queue("callbacks", connection=redis.Redis.from_url(url, socket_connect_timeout=5))
            await wait_until(lambda: answers(after.connection), HANG, every=0.05)
            second = after.enqueue("callback.jobs.default_unrated_calls")
            await job_done(second)
            assert worker.poll() is None and second.return_value() == 0, out.tail()

            worker.send_signal(signal.SIGTERM)  # RQ's warm shutdown: a clean exit, not a restart
            assert worker.wait(HANG) == 0, out.tail()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(HANG)


def test_the_workers_command_listener_looks_for_a_stop_every_second() -> None:
    """RQ 2.12's listener thread sleeps 60 s between looks, and redis-py joins it without a timeout: a stopped
    worker then waited up to a minute. Ours looks every second, so a stop is never held up by it."""
    from callback.rq_worker import PUBSUB_SLEEP, _Worker
    from conftest import worker_redis_url

    connection = redis.Redis.from_url(worker_redis_url(0))
    worker = _Worker([Queue("callbacks", connection=connection)], connection=connection)
    worker.subscribe()
    try:
        thread = worker.pubsub_thread
        assert thread is not None and thread.is_alive() and thread.sleep_time == PUBSUB_SLEEP <= 1
    finally:
        worker.unsubscribe()
    assert not thread.is_alive()
