"""Waiting for asynchronous work in tests by its state, never by a fixed sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `condition` until it holds; fail with TimeoutError after `timeout` seconds (a generous bound, not a speed check)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
