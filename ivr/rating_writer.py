"""Writes call events to the rating store without ever losing one or stalling the event loop.

Calls hand events to :meth:`RatingWriter.write` and wait until they are
durable. One worker thread commits whatever has queued up in one transaction
(group commit: thousands of concurrent calls cost a few transactions a second,
not thousands). If the database fails or is too slow, the event is appended to
the local spool instead, fsynced, and the call goes on; the replayer moves the
spool into the store when the database is back. Once one event of a call is
spooled, the rest of that call's events follow it there, so they stay in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from rating_core.call_events import FINAL_EVENTS, CallEvent
from rating_core.spool import Spool
from rating_core.store import RatingStore

log = logging.getLogger(__name__)

MAX_BATCH = 500


class RatingWriter:
    def __init__(self, store: RatingStore, spool: Spool, *, write_timeout: float = 10.0) -> None:
        self.store = store
        self.spool = spool
        self.write_timeout = write_timeout
        self._queue: asyncio.Queue[tuple[CallEvent, asyncio.Future[None]]] = asyncio.Queue()
        self._spooling: set[str] = set()
        self._worker: asyncio.Task[None] | None = None
        self.spooled = 0

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._commit_forever(), name="rating-writer")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None

    async def write(self, event: CallEvent) -> None:
        """Return once ``event`` is in the store or in the spool. Never raises for a store failure."""
        try:
            if event.uniqueid not in self._spooling:
                self.start()
                done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._queue.put_nowait((event, done))
                try:
                    await asyncio.wait_for(asyncio.shield(done), self.write_timeout)
                    return
                except Exception as exc:  # the store is down, locked or slow: keep the event locally
                    done.add_done_callback(_consume)
                    reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
                    log.error("store write of %s for call %s failed (%s); spooling it", event.kind, event.uniqueid, reason)
                    self._spooling.add(event.uniqueid)
            await asyncio.to_thread(self.spool.append, event)
            self.spooled += 1
        finally:
            if isinstance(event, FINAL_EVENTS):
                self._spooling.discard(event.uniqueid)

    async def _commit_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[CallEvent, asyncio.Future[None]]]) -> None:
        try:
            await asyncio.to_thread(self.store.apply, (event for event, _ in batch))
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch, exc)
                return
            # One bad event must not fail its neighbours: retry them one by one.
            for item in batch:
                await self._commit([item])
            return
        _settle(batch, None)

    async def replay_forever(self, interval: float = 15.0) -> None:
        """Move spooled events into the store whenever it is reachable again."""
        while True:
            await asyncio.sleep(interval)
            await self.replay_once()

    async def replay_once(self) -> int:
        if not self.spool.has_pending():
            return 0
        try:
            applied = await asyncio.to_thread(self.store.replay_spool, self.spool)
        except Exception as exc:
            log.warning("spool replay postponed: %s: %s", type(exc).__name__, exc)
            return 0
        if applied:
            log.info("spool replay: %d event(s) now in the store", applied)
        return applied


def _consume(done: asyncio.Future[None]) -> None:
    # A late outcome nobody waits for any more; reading it keeps asyncio from warning.
    if not done.cancelled():
        done.exception()


def _settle(batch: Iterable[tuple[CallEvent, asyncio.Future[None]]], error: BaseException | None) -> None:
    for _event, done in batch:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)
