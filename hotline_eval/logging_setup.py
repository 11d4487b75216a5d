"""How every ``hotline-eval`` process logs: to stderr, each line stamped with its zone, as text or JSON.

The time zone: Beijing time (``Asia/Shanghai``) unless ``HOTLINE_EVAL_LOG_TIMEZONE``
names another. Everything a centre reads beside these lines is in Beijing time (the
rules' ``callback.timezone``, the web tool's tables, the 通报表, the callback deadlines),
and an operator matching a log line with a call in a table should not convert. The
host's own zone (``TZ``, ``/etc/localtime``) is deliberately not followed: servers and
containers are commonly set to UTC, which is exactly how the lines came to read eight
hours off the tables. Whatever the zone, every stamp carries its offset
(``2026-12-06T18:22:01.123+08:00``), so nothing is ambiguous and a log shipper parses it as is.

The formats: ``text`` (the default), one readable line per record; ``json``
(``--log-format json`` or ``HOTLINE_EVAL_LOG_FORMAT=json``), one JSON object per line
for a log shipper, with the call's ``uniqueid`` and the callback ``task_id`` as fields
when the line is about one (:mod:`rating_core.rules.log_context`).
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from datetime import datetime, tzinfo
from typing import Literal, TextIO

from rating_core.rules.log_context import call_uniqueid, task_id

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def zoned_time(record: logging.LogRecord, zone: tzinfo) -> str:
    """When ``record`` was made, ISO 8601 to the millisecond with the zone's offset."""
    return datetime.fromtimestamp(record.created, zone).isoformat(timespec="milliseconds")


class LogContextFilter(logging.Filter):
    """Copies the call and the task the current code is handling onto each record passing the handler.

    On the handler rather than a logger: a logger's filter sees only the records
    logged to that very logger, not those of its children (``ivr.call_flow``, ``rq.worker``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        # A record handed over with its own (``extra={"call_uniqueid": …}``) keeps it.
        if getattr(record, "call_uniqueid", None) is None:
            record.call_uniqueid = call_uniqueid.get()
        if getattr(record, "task_id", None) is None:
            record.task_id = task_id.get()
        return True


class ZonedTextFormatter(logging.Formatter):
    """The readable line, its time with the zone's offset instead of logging's zone-less local time."""

    def __init__(self, zone: tzinfo) -> None:
        super().__init__(TEXT_FORMAT)
        self.zone = zone

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return zoned_time(record, self.zone)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and what there is of exception, uniqueid, task_id.

    The standard library's ``json`` rather than python-json-logger: the fields are a
    fixed handful built in a few lines, and every process (the FastAGI server with
    thousands of calls among them) would otherwise carry a dependency for it. Chinese
    text is written as is (``ensure_ascii=False``); a newline inside a message or a
    traceback is escaped, so a record is always one line.
    """

    def __init__(self, zone: tzinfo) -> None:
        super().__init__()
        self.zone = zone

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": zoned_time(record, self.zone),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            # Kept on the record as logging's own formatter does, for any other handler.
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        uniqueid = getattr(record, "call_uniqueid", None)
        if uniqueid is not None:
            entry["uniqueid"] = uniqueid
        task = getattr(record, "task_id", None)
        if task is not None:
            entry["task_id"] = task
        return json.dumps(entry, ensure_ascii=False, default=str)


# syslog's priorities, which journald reads from a "<N>" at the start of a line (sd-daemon(3)).
JOURNAL_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


class JournalPriority(logging.Formatter):
    """Another formatter's line, led by its level as journald reads it: under systemd every line on stderr is
    otherwise filed as info, and `journalctl -p warning` would show none of our warnings or errors."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        priority = next((number for level, number in JOURNAL_PRIORITIES if record.levelno >= level), 7)
        return f"<{priority}>{self.inner.format(record)}"


def writes_to_journal(stream: TextIO) -> bool:
    """Whether ``stream`` is the journal's: systemd names the stream it connected in ``JOURNAL_STREAM``
    (device:inode), and a process whose stderr was redirected elsewhere must not prefix its lines."""
    given = os.environ.get("JOURNAL_STREAM", "")
    try:
        status = os.fstat(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):  # no file behind it (a test's StringIO)
        return False
    return given == f"{status.st_dev}:{status.st_ino}"


def log_handler(log_format: LogFormat, zone: tzinfo, stream: TextIO | None = None) -> logging.Handler:
    """A handler writing ``log_format`` lines stamped in ``zone`` to ``stream`` (stderr by default), each led by
    its priority when the stream is systemd's journal."""
    target = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(target)
    handler.addFilter(LogContextFilter())
    formatter: logging.Formatter = JsonFormatter(zone) if log_format == "json" else ZonedTextFormatter(zone)
    handler.setFormatter(JournalPriority(formatter) if writes_to_journal(target) else formatter)
    return handler


def setup_logging(verbose: bool, log_format: LogFormat, zone: tzinfo) -> None:
    """The process's logging, once where it starts; a root logger already given a handler is left as it is
    (``logging.basicConfig``'s rule: under a test runner that captures the logs, the runner keeps them)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        handlers=[log_handler(log_format, zone)])
    if not verbose:  # Alembic names each of its plugins at every start: a screen of noise before any work
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
