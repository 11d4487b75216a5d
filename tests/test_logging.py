"""Log lines: every stamp with its zone; the JSON option, with the call's uniqueid and the task id as fields."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import test_rq_callbacks
from callback import jobs
from hotline_eval.logging_setup import log_handler
from ivr.agi_server import FastAgiServer
from ivr.agi_session import AgiSession
from rating_core.events.call_events import CallStarted, RatingGiven
from rating_core.ratings.store import RatingStore
from rating_core.rules.log_context import about_call, about_task
from simulators.asterisk_agi import Caller, run_call

BEIJING = ZoneInfo("Asia/Shanghai")
loop_env = test_rq_callbacks.loop_env  # the fixture: what a worker process sees
CLI = str(Path(sys.executable).with_name("hotline-eval"))
TEXT_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d) (\w+) ([\w.]+): (.*)$")


class Captured:
    """A logger whose records go through the production handler into a string."""

    def __init__(self, name: str, log_format: str, zone: ZoneInfo | timezone = BEIJING) -> None:
        self.stream = io.StringIO()
        self.logger = logging.getLogger(name)
        self.handler = log_handler("json" if log_format == "json" else "text", zone, self.stream)
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.INFO)

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def records(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.lines()]

    def close(self) -> None:
        self.logger.removeHandler(self.handler)


@contextlib.contextmanager
def capture(name: str, log_format: str, zone: ZoneInfo | timezone = BEIJING) -> Iterator[Captured]:
    given = Captured(name, log_format, zone)
    try:
        yield given
    finally:
        given.close()


@pytest.fixture
def text_log() -> Iterator[Captured]:
    with capture("test.logging.text", "text") as given:
        yield given


@pytest.fixture
def json_log() -> Iterator[Captured]:
    with capture("test.logging.json", "json") as given:
        yield given


def test_a_text_line_is_stamped_in_beijing_time_with_its_offset(text_log: Captured) -> None:
    before = datetime.now(timezone.utc)
    text_log.logger.warning("号码 %s 已拨打", "138****0001")
    after = datetime.now(timezone.utc)
    [line] = text_log.lines()
    match = TEXT_LINE.match(line)
    assert match, line
    stamp, level, name, message = match.groups()
    assert stamp.endswith("+08:00")
    assert (level, name, message) == ("WARNING", "test.logging.text", "号码 138****0001 已拨打")
    # The stamp is the moment of the record, read in Beijing time (not UTC's clock with an offset glued on).
    at = datetime.fromisoformat(stamp)
    assert before - timedelta(milliseconds=1) <= at <= after


def test_another_zone_is_stamped_with_its_own_offset() -> None:
    with capture("test.logging.utc", "text", ZoneInfo("UTC")) as given:
        given.logger.info("hello")
        [line] = given.lines()
        assert TEXT_LINE.match(line) and line.split(" ")[0].endswith("+00:00")


def test_a_json_line_parses_and_names_nothing_it_is_not_about(json_log: Captured) -> None:
    json_log.logger.info("第一行\n第二行")
    [line] = json_log.lines()  # a newline in the message stays inside the one line
    record = json.loads(line)
    assert set(record) == {"time", "level", "logger", "message"}
    assert record["level"] == "INFO" and record["logger"] == "test.logging.json"
    assert record["message"] == "第一行\n第二行"
    assert "第一行" in line  # written as is, not as \\u escapes
    stamp = datetime.fromisoformat(str(record["time"]))
    assert stamp.utcoffset() == timedelta(hours=8)


def test_a_json_line_carries_the_call_and_the_task_it_is_about(json_log: Captured) -> None:
    with about_call("1795316432.17"):
        json_log.logger.info("in the call")
        with about_task(42):
            json_log.logger.info("in the call and the task")
        json_log.logger.info("the call again")
    with about_task(7):
        json_log.logger.info("a task alone")
    json_log.logger.info("neither")
    about = [(r.get("uniqueid"), r.get("task_id")) for r in json_log.records()]
    assert about == [("1795316432.17", None), ("1795316432.17", 42), ("1795316432.17", None), (None, 7),
                     (None, None)]
    assert [set(r) - {"time", "level", "logger", "message"} for r in json_log.records()] == [
        {"uniqueid"}, {"uniqueid", "task_id"}, {"uniqueid"}, {"task_id"}, set()]


def test_an_exception_is_in_the_json_line(json_log: Captured) -> None:
    try:
        raise ValueError("坏的值")
    except ValueError:
        json_log.logger.exception("store write failed")
    [line] = json_log.lines()
    record = json.loads(line)
    assert record["level"] == "ERROR" and record["message"] == "store write failed"
    exception = str(record["exception"])
    assert exception.startswith("Traceback (most recent call last):")
    assert exception.rstrip().endswith("ValueError: 坏的值")
    assert "test_an_exception_is_in_the_json_line" in exception


async def test_the_fastagi_server_names_each_call_in_its_lines_and_threads(json_log: Captured) -> None:
    """Two calls at once in one server: each one's lines (and its threads') carry its own uniqueid only."""
    both_in = asyncio.Barrier(2)

    async def probe(agi: AgiSession) -> None:
        json_log.logger.info("call started")
        await both_in.wait()  # the two calls are interleaved from here on
        await asyncio.to_thread(json_log.logger.info, "store lookup in a thread")
        json_log.logger.info("call ending")

    server = FastAgiServer({"probe": probe})
    await server.start("127.0.0.1", 0)
    try:
        await asyncio.gather(*(run_call("127.0.0.1", server.port, Caller([]), uniqueid=uniqueid, script="probe")
                               for uniqueid in ("1795316432.1", "1795316432.2")))
    finally:
        await server.close()
    json_log.logger.info("server closed")
    records = json_log.records()
    for uniqueid in ("1795316432.1", "1795316432.2"):
        assert [r["message"] for r in records if r.get("uniqueid") == uniqueid] == [
            "call started", "store lookup in a thread", "call ending"]
    assert [r for r in records if "uniqueid" not in r] == [records[-1]]
    assert records[-1]["message"] == "server closed"


def test_a_callback_job_names_its_task(loop_env: RatingStore) -> None:
    now = datetime.now(timezone.utc)
    loop_env.apply([CallStarted(uniqueid="1795316432.9", hotline="12345", at=now, caller_number="13800000001"),
                      RatingGiven("1795316432.9", "very_dissatisfied", "dtmf", now)])
    with capture("callback.jobs", "json") as given:
        assert jobs.request_callback(1).startswith("queued attempt")
        given.logger.info("after the job")
        assert [(r["message"], r.get("task_id")) for r in given.records()] == [
            ("task 1: attempt 1 queued for the dialer", 1), ("after the job", None)]


@pytest.mark.parametrize("how", ["option", "environment"])
def test_the_command_logs_json_lines_in_beijing_time(tmp_path: Path, how: str) -> None:
    env = dict(os.environ, HOTLINE_EVAL_HOME=str(tmp_path / "home"), TZ="UTC")
    env.pop("DATABASE_URL", None)
    env.pop("HOTLINE_EVAL_LOG_TIMEZONE", None)
    args = [CLI, "-v", "db", "upgrade"]
    if how == "option":
        args.insert(1, "--log-format=json")
    else:
        env["HOTLINE_EVAL_LOG_FORMAT"] = "json"
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines()]
    assert records and any(r["logger"].startswith("alembic") for r in records)
    assert all(str(r["time"]).endswith("+08:00") for r in records)  # the host's TZ=UTC is not followed


def test_the_command_logs_text_lines_in_the_zone_it_is_given(tmp_path: Path) -> None:
    env = dict(os.environ, HOTLINE_EVAL_HOME=str(tmp_path / "home"), HOTLINE_EVAL_LOG_TIMEZONE="Europe/Berlin")
    env.pop("DATABASE_URL", None)
    env.pop("HOTLINE_EVAL_LOG_FORMAT", None)
    done = subprocess.run([CLI, "-v", "db", "upgrade"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines and all(TEXT_LINE.match(line) for line in lines), lines[:3]
    assert {line.split(" ")[0][-6:] for line in lines} <= {"+01:00", "+02:00"}


def test_a_wrong_zone_stops_the_command_naming_the_variable(tmp_path: Path) -> None:
    env = dict(os.environ, HOTLINE_EVAL_HOME=str(tmp_path / "home"), HOTLINE_EVAL_LOG_TIMEZONE="Asia")
    done = subprocess.run([CLI, "db", "upgrade"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1
    assert "configuration:" in done.stderr and "HOTLINE_EVAL_LOG_TIMEZONE is not a time zone name" in done.stderr


def test_the_cron_scheduler_runs_the_passes_and_logs_as_every_other_process(tmp_path: Path) -> None:
    """`hotline-eval cron` (the unit's command): rq's scheduler over callback.cron_config, its lines zoned JSON."""
    import signal

    from redis import Redis
    from rq import Queue

    from callback.jobs import QUEUE_NAME
    from conftest import worker_redis_url
    from waiting import HANG, wait_until

    redis_url = worker_redis_url(0)
    connection = Redis.from_url(redis_url)
    connection.flushdb()
    env = dict(os.environ, HOTLINE_EVAL_HOME=str(tmp_path), DATABASE_URL=f"sqlite:///{tmp_path / 'store.db'}",
               REDIS_URL=redis_url, HOTLINE_EVAL_LOG_FORMAT="json")
    process = subprocess.Popen([CLI, "cron"], env=env, stderr=subprocess.PIPE, text=True)
    queue = Queue(QUEUE_NAME, connection=connection)
    try:
        # Interval passes are enqueued when the scheduler starts: the sweep and the webhook delivery at least.
        wanted = {"callback.jobs.sweep_due", "callback.jobs.deliver_webhooks"}
        asyncio.run(wait_until(lambda: wanted <= {job.func_name for job in queue.jobs}, HANG,
                               explain=lambda: f"queued: {[job.func_name for job in queue.jobs]}"))
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=HANG)
        connection.flushdb()
    assert process.returncode == 0, errors
    records = [json.loads(line) for line in errors.splitlines()]
    messages = [record["message"] for record in records if record["logger"] == "rq.cron"]
    assert any("starting" in message for message in messages), errors
    assert any("shutdown complete" in message for message in messages), errors
    assert all(str(record["time"]).endswith("+08:00") for record in records)


def test_under_systemd_each_line_is_led_by_its_priority_for_the_journal(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """journald files a line by a leading <N>; without it `journalctl -p warning` showed none of ours."""
    journal_file, other_file = tmp_path / "journal", tmp_path / "elsewhere"
    with journal_file.open("w") as journal, other_file.open("w") as other:
        status = os.fstat(journal.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino}")
        for stream in (journal, other):
            for log_format in ("text", "json"):
                logger = logging.getLogger(f"test.journal.{log_format}.{stream is journal}")
                logger.propagate = False
                logger.setLevel(logging.INFO)
                logger.addHandler(log_handler(log_format, BEIJING, stream))
                logger.warning("警告")
                logger.error("错误")
                logger.info("信息")
    led = journal_file.read_text(encoding="utf-8").splitlines()
    assert [line[:3] for line in led] == ["<4>", "<3>", "<6>"] * 2
    assert json.loads(led[3][3:])["message"] == "警告"
    # A stderr redirected away from the journal (the same process, another file) is not prefixed.
    assert all(not line.startswith("<") for line in other_file.read_text(encoding="utf-8").splitlines())
