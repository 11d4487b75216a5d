"""Makes a call's events durable before the caller hears the next prompt, without a database in the way.

A call hands each event to :meth:`RatingWriter.submit`, and waits (:meth:`RatingWriter.write`) where the
caller must not be thanked for what could still be lost: the rating, the reason, the voice message, the
end of the call. The writer appends whatever has queued up to the journal (:mod:`rating_core.events.journal`)
with one fsync — group commit: while one fsync is on the disk the next group gathers, so thousands of
calls cost a few hundred fsyncs a second, not thousands — and the store process applies the journal to
the database on its own time (:mod:`ivr.store_process`). A database that is down, slow or refusing
costs the calls nothing: the journal keeps the events until the store takes them.

The queue is bounded: if the disk stalls, calls wait to hand over events instead of the server's memory
growing without end. A disk that fails an append is tried again, the events still held, and a disk
short of space is reported before it fills.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from rating_core.events.call_events import CallEvent
from rating_core.events.journal import Journal, Position
from rating_core.store.event_values import clamp

log = logging.getLogger(__name__)

# Events waiting for the disk at most; a call that would go beyond waits (back-pressure). At a few
# events per call, many times the calls a server holds.
MAX_QUEUE = 20_000
MAX_APPEND = 5_000
# After a failed append (a full or failing disk), the events are tried again this often.
APPEND_RETRY = 1.0
# How often the journal's free space is looked at while the server runs.
FREE_SPACE_CHECK = 30.0

# How long a call's end waits for the store to have the call before the socket closes (the caller is
# gone by then: nobody waits for it). Whoever reads the store right after a call (the next step of a
# hotline's dialplan, a test) then finds it there, unless the store is down.
SETTLE_TIMEOUT = 5.0

Item = tuple[CallEvent, asyncio.Future[Position]]


class Applied(Protocol):
    """What the writer asks of the store's applier (:class:`ivr.store_process.StoreProcess`)."""

    async def reached(self, position: Position, timeout: float | None = None) -> bool: ...


class RatingWriter:
    def __init__(self, journal: Journal, applier: Applied | None = None, *, max_queue: int = MAX_QUEUE,
                 settle_timeout: float = SETTLE_TIMEOUT) -> None:
        self.journal = journal
        self.applier = applier
        self.settle_timeout = settle_timeout
        self._queue: asyncio.Queue[Item] = asyncio.Queue(max_queue)
        self._worker: asyncio.Task[None] | None = None
        self._failing: str | None = None
        self._next_space_check = 0.0
        self.appended = journal.position  # of the last event made durable

    @property
    def pending(self) -> int:
        """Events handed over and not yet durable."""
        return self._queue.qsize()

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._append_forever(), name="journal-writer")

    async def stop(self) -> None:
        """Append what is queued, then stop."""
        if self._worker is not None:
            await self._queue.join()
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None

    async def submit(self, event: CallEvent) -> asyncio.Future[Position]:
        """Hand ``event`` over (waiting for room if the queue is full); the future is done, with the
        event's place in the journal, once it is on disk."""
        self.start()
        done: asyncio.Future[Position] = asyncio.get_running_loop().create_future()
        await self._queue.put((clamp(event), done))
        return done

    async def write(self, event: CallEvent) -> None:
        """Submit ``event`` and wait until it, and every event submitted before it, is on disk."""
        await asyncio.shield(await self.submit(event))

    async def finish(self, event: CallEvent) -> None:
        """A call's last event: on disk, then, for up to ``settle_timeout``, waited for in the store."""
        position = await asyncio.shield(await self.submit(event))
        if self.applier is not None:
            await self.applier.reached(position, self.settle_timeout)

    async def _append_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_APPEND and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            position = await self._append(batch)
            self.appended = position
            for _, done in batch:
                if not done.done():
                    done.set_result(position)
                self._queue.task_done()

    async def _append(self, batch: list[Item]) -> Position:
        """Append the batch, trying again until the disk takes it: the events are held meanwhile."""
        events = [event for event, _ in batch]
        while True:
            try:
                position = await asyncio.to_thread(self.journal.append, events)
            except Exception as exc:  # a full or failing disk, or a bug: held, never dropped, never the worker's end
                if self._failing is None:
                    log.critical("journal append failed (%s); %d event(s) held in memory and tried again every "
                                 "%.0f s: calls wait for it", exc, len(events), APPEND_RETRY)
                self._failing = str(exc)
                await asyncio.sleep(APPEND_RETRY)
                continue
            if self._failing is not None:
                log.warning("journal append works again (%d event(s) written)", len(events))
                self._failing = None
            self._check_space()
            return position

    def _check_space(self) -> None:
        now = time.monotonic()
        if now < self._next_space_check:
            return
        self._next_space_check = now + FREE_SPACE_CHECK
        free = self.journal.free_bytes()
        if free < self.journal.min_free_bytes:
            log.critical("the journal's disk (%s) has %d MiB free, below the %d MiB the server needs; free space "
                         "before it fills, or ratings will wait", self.journal.directory, free // 2**20,
                         self.journal.min_free_bytes // 2**20)
