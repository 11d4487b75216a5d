"""The store process logs as the FastAGI server that started it: the same format, in the same zone, with its offset.

The child is spawned (a fresh interpreter, no logging of its own); it used to set up a format of its own,
stamped without a zone, beside the server's zoned lines in the same log file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from hotline_eval.logging_setup import LogFormat, log_handler
from ivr.store_process import StoreProcess
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import Rules
from waiting import HANG

# Not Beijing, the default: a zone the child can only have from the parent. Its offset in December: -05:00.
ZONE = ZoneInfo("America/New_York")


@contextlib.contextmanager
def parent_logs(log_format: LogFormat) -> Iterator[None]:
    """The root logger as ``hotline-eval`` sets it up from its settings: ``log_format``, in ZONE, to stderr.

    Made in the test's body: pytest gives each phase a stderr of its own, and this one is what ``capfd``
    reads, as the child's inherited fd 2 is."""
    root = logging.getLogger()
    handler = log_handler(log_format, ZONE)
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def child_lines(store: RatingStore, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> list[str]:
    """Start a real store process, let it say it is applying the journal, and stop it: the child's lines."""
    applier = StoreProcess(store, tmp_path / "journal", "stream-a")
    (tmp_path / "journal").mkdir()
    watcher = asyncio.create_task(applier.run())
    seen: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HANG
    while not any("[store]" in line for line in seen):
        assert loop.time() < deadline and not watcher.done(), seen
        await asyncio.sleep(0.05)
        seen += capfd.readouterr().err.splitlines()
    assert await applier.drain(watcher, HANG)
    return [line for line in seen + capfd.readouterr().err.splitlines() if "[store]" in line]


async def test_the_child_writes_the_parents_json_in_the_parents_zone(
    sqlite_engine: Engine, rules: Rules, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with parent_logs("json"):
        lines = await child_lines(RatingStore(sqlite_engine, rules), tmp_path, capfd)
    record = json.loads(lines[0])
    assert record["logger"] == "ivr.store_process[store]" and record["level"] == "INFO"
    assert record["message"].startswith("applying journal stream-a")

    stamp = datetime.fromisoformat(record["time"])
    assert stamp.utcoffset() == ZONE.utcoffset(stamp.replace(tzinfo=None))
    assert stamp.utcoffset() != timedelta(hours=8)  # the zone came from the parent, not the default


async def test_the_child_writes_the_parents_text_line_with_its_offset(
    sqlite_engine: Engine, rules: Rules, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with parent_logs("text"):
        lines = await child_lines(RatingStore(sqlite_engine, rules), tmp_path, capfd)
    stamp, level, name, message = lines[0].split(" ", 3)

    at = datetime.fromisoformat(stamp)
    assert at.utcoffset() == ZONE.utcoffset(at.replace(tzinfo=None))
    assert (level, name) == ("INFO", "ivr.store_process[store]:") and message.startswith("applying journal")
