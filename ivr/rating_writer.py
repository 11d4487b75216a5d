"""Writes call events to the rating store without ever losing one or stalling a call.

A call hands each event to :meth:`RatingWriter.submit` the moment it happens
(the key is read: the rating is submitted) and goes straight on to its next
prompt: no AGI turn waits for a database. The writer owns the event from then
on, whatever the caller does next — a hangup cannot take it back. At the end
of the call :meth:`RatingWriter.write` waits until the call's last event, and so
every earlier one, is durable.

One task commits whatever has queued up in one transaction (group commit:
thousands of concurrent calls cost a few transactions a second, not
thousands; in the FastAGI server a batch first gathers for ``linger``), through
an *applier*: a thread for one-off use, or
:class:`ivr.store_process.StoreProcess` for the FastAGI server, where the ORM's
work must not share the event loop's GIL. If the database fails, is too slow
or refuses an event, the event is appended to the local spool instead,
fsynced; the replayer moves the spool into the store when the database is
back. Once one event of a call is spooled, the rest of that call's events
follow it there, so they stay in order. After a failure the store is given
``retry_after`` seconds before it is tried again, so a dead database costs one
timeout, not one per batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from rating_core.call_events import FINAL_EVENTS, CallEvent, to_record
from rating_core.spool import Spool
from rating_core.store import RatingStore, Rejected

log = logging.getLogger(__name__)

MAX_BATCH = 500
# How long the FastAGI server lets a batch gather before writing it. Each batch costs the store a few
# queries and a commit whatever its size, so at a few events a second per call, batches written as soon as
# the last one finished stay tiny and the store spends its CPU on those fixed costs (benchmarks/README).
# Nothing waits on it but the socket's close after the hangup, and it bounds what a crash of the
# process itself could lose.
GROUP_COMMIT_LINGER = 0.05


class Applier(Protocol):
    """Applies a batch to the store: what it refused, or raises when the store cannot take it at all."""

    async def apply(self, events: Sequence[CallEvent]) -> list[Rejected]: ...

    async def close(self) -> None: ...


class ThreadApplier:
    """The store's :meth:`~RatingStore.apply_batch` in a worker thread: fine for one call, or a few."""

    def __init__(self, store: RatingStore) -> None:
        self.store = store

    async def apply(self, events: Sequence[CallEvent]) -> list[Rejected]:
        return await asyncio.to_thread(self.store.apply_batch, events)

    async def close(self) -> None:
        return None


Item = tuple[CallEvent, asyncio.Future[None]]


class RatingWriter:
    def __init__(self, store: RatingStore, spool: Spool, *, write_timeout: float = 10.0,
                 applier: Applier | None = None, retry_after: float = 5.0, linger: float = 0.0) -> None:
        self.store = store
        self.spool = spool
        self.write_timeout = write_timeout
        self.retry_after = retry_after
        self.linger = linger  # seconds a batch gathers after its first event (GROUP_COMMIT_LINGER)
        self.applier: Applier = applier or ThreadApplier(store)
        self._queue: asyncio.Queue[Item] = asyncio.Queue()
        self._spooling: set[str] = set()
        self._store_down_until = 0.0
        self._worker: asyncio.Task[None] | None = None
        self._last: asyncio.Future[None] | None = None
        self.spooled = 0
        self.pending = 0  # events handed over and not yet durable (in the queue or in the batch being written)

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._commit_forever(), name="rating-writer")

    async def stop(self) -> None:
        """Write what is queued, then stop (and stop the applier)."""
        if self._worker is not None:
            if self._last is not None:  # the queue is in order: the last one done means all are
                await asyncio.wait([self._last], timeout=self.write_timeout + 1)
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        await self.applier.close()

    def submit(self, event: CallEvent) -> asyncio.Future[None]:
        """Hand ``event`` over and return at once; the future is done when it is in the store or the spool.

        The future never fails: an event the spool could not take either is logged whole, as a last resort.
        """
        self.start()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((event, done))
        self._last = done
        self.pending += 1
        return done

    async def write(self, event: CallEvent) -> None:
        """Submit ``event`` and wait until it, and every event submitted before it, is durable."""
        await asyncio.shield(self.submit(event))

    async def _commit_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self.linger:
                await asyncio.sleep(self.linger)
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            except Exception:  # never let the writer die: these events are logged whole below
                log.exception("rating writer: batch of %d event(s) failed unexpectedly", len(batch))
                for event, done in batch:
                    if not done.done():
                        log.critical("event not written: %s", to_record(event))
                        self._settle(done)

    async def _commit(self, batch: list[Item]) -> None:
        loop = asyncio.get_running_loop()
        down = loop.time() < self._store_down_until
        to_store = [n for n, (event, _) in enumerate(batch) if not down and event.uniqueid not in self._spooling]
        to_spool = sorted(set(range(len(batch))) - set(to_store))
        if down:
            for n in to_spool:
                event = batch[n][0]
                log.error("store write of %s for call %s skipped (store unavailable, retried in %.0f s); spooling it",
                          event.kind, event.uniqueid, self._store_down_until - loop.time())
        if to_store:
            events = [batch[n][0] for n in to_store]
            try:
                rejected = await asyncio.wait_for(self.applier.apply(events), self.write_timeout)
            except Exception as exc:  # unreachable, locked, slow, or the store process died
                reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
                self._store_down_until = loop.time() + self.retry_after
                rejected = [Rejected(index, reason) for index in range(len(events))]
            for refusal in rejected:
                event = events[refusal.index]
                log.error("store write of %s for call %s failed (%s); spooling it",
                          event.kind, event.uniqueid, refusal.reason)
            to_spool = sorted(to_spool + [to_store[refusal.index] for refusal in rejected])
        if to_spool:
            await self._spool([batch[n][0] for n in to_spool])
        for event, done in batch:
            if isinstance(event, FINAL_EVENTS):
                self._spooling.discard(event.uniqueid)
            if not done.done():
                self._settle(done)

    def _settle(self, done: asyncio.Future[None]) -> None:
        self.pending -= 1
        done.set_result(None)

    async def _spool(self, events: list[CallEvent]) -> None:
        try:
            await asyncio.to_thread(self.spool.append, *events)
        except OSError as exc:
            for event in events:  # the disk failed too: the log is all that is left
                log.critical("spool append failed (%s); event not written: %s", exc, to_record(event))
            return
        self.spooled += len(events)
        self._spooling.update(event.uniqueid for event in events if not isinstance(event, FINAL_EVENTS))

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
