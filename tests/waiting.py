"""Waiting for asynchronous work in tests by its state, never by a fixed sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# How long to wait for something that must happen before calling the test hung: a guard, so that a process
# which never answers fails the test instead of stalling the suite; never a measure of speed.
HANG = 600.0


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0, *, every: float = 0.01,
                     explain: Callable[[], str] | None = None) -> None:
    """Poll `condition` every `every` seconds until it holds; after `timeout` seconds (a generous bound,
    not a speed check) fail, saying what `explain` returns about the state it was stuck in."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() >= deadline:
            raise TimeoutError(f"not reached within {timeout:g} s" + (f"; {explain()}" if explain else ""))
        await asyncio.sleep(every)
