"""What a log line is about: the call (its Asterisk uniqueid) or the callback task being handled.

A line deep in a call's handling (a store lookup in a thread, a speech
worker's answer) does not know which call it serves, and threading the id
through every signature only to log it would be noise. So the places where a
call's or a task's handling starts set it here, in a :class:`~contextvars.ContextVar`,
and the logging set-up of each process (``hotline_eval.logging_setup``) reads it into
every record. Context variables follow asyncio: each FastAGI connection is a
task with its own copy, so thousands of calls in one process never see one
another's id, and ``asyncio.to_thread`` carries the copy into the thread.

It lives in the lowest layer of ``rating_core`` (plain data, no I/O) so that
``ivr``, ``callback`` and ``web`` may all set it without importing one another.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

call_uniqueid: ContextVar[str | None] = ContextVar("call_uniqueid", default=None)
task_id: ContextVar[int | None] = ContextVar("task_id", default=None)


@contextlib.contextmanager
def about_call(uniqueid: str | None) -> Iterator[None]:
    """Lines logged inside are about the call ``uniqueid`` (None: about no call)."""
    token = call_uniqueid.set(uniqueid)
    try:
        yield
    finally:
        call_uniqueid.reset(token)


@contextlib.contextmanager
def about_task(task: int | None) -> Iterator[None]:
    """Lines logged inside are about the callback task ``task`` (None: about no task)."""
    token = task_id.set(task)
    try:
        yield
    finally:
        task_id.reset(token)
