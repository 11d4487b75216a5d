"""The store's side of the journal, beside the FastAGI server: a process of its own that applies it.

Applying a call's events through the ORM costs a few milliseconds of Python.
In a thread of the FastAGI process that work holds the GIL, and the event
loop, which has thousands of calls to answer, waits up to the interpreter's
switch interval for it each time it lets go (every socket write does): every
AGI turn would pay for the database. In a child process it runs on the other
core and the event loop never waits for it.

The child reads the server's journal from disk itself (the server sends it
nothing but "stop"), applies it batch by batch with
:class:`rating_core.ratings.journal_replay.JournalApplier`, takes over the streams of
dead servers between batches, and reports its position. A child that dies
takes nothing with it: everything is in the journal, and a new child goes on
from the last position the store has. Tests and the demo may run the same loop
in a thread (``in_thread``).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import pickle
import signal
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from ivr.parent_watch import exit_with_parent
from rating_core.events.journal import START, Position
from rating_core.ratings.journal_replay import JournalApplier
from rating_core.ratings.store import RatingStore, StoreUnavailable
from rating_core.rules.metrics import STORE_BATCH, STORE_EVENTS, STORE_UP
from rating_core.rules.rulebook import Rules
from rating_core.store.database import make_engine

log = logging.getLogger(__name__)

# How long the child waits before trying a database that failed again: short, so a database that comes
# back is drained within seconds of its return, and one attempt a second costs it nothing.
RETRY_AFTER = 1.0
# How long the child lets new lines gather before it reads them, unless a whole batch is waiting (a
# backlog). Each batch costs the store a few queries and a commit whatever its size, so at a few events
# a second per call, batches read the moment a line appeared would hold two or three events and the store
# would spend its CPU on those fixed costs (benchmarks/README). Nobody waits for it but a call's end,
# after the caller is gone.
GATHER = 0.05


def database_url(store: RatingStore) -> str:
    """The store's URL with its password, for the child to connect the same way."""
    return store.engine.url.render_as_string(hide_password=False)


# Only where the parent logs in a way the child cannot copy (a test runner's own handler, which does not
# pickle): the text format's fields, the time as logging writes it.
FALLBACK_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class ChildLogging:
    """How the parent logs, handed to the child so that its lines read as the parent's: the same format (text
    or JSON) stamped in the same zone with its offset, through the same filters (the call's uniqueid).

    Copied from the parent's root handler that writes to its stderr (``hotline_eval.logging_setup`` made it
    from the settings) rather than rebuilt from the settings here: ``ivr`` does not import the CLI's
    modules, and the formatter and filters pickle across to the spawned child as they are.
    """

    level: int
    formatter: logging.Formatter | None = None
    filters: tuple[Any, ...] = ()

    @classmethod
    def of_parent(cls) -> ChildLogging:
        root = logging.getLogger()
        for handler in root.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
                copied = cls(root.level, handler.formatter, tuple(handler.filters))
                try:
                    pickle.dumps(copied)
                except (pickle.PicklingError, TypeError, AttributeError):
                    break
                return copied
        return cls(root.level)

    def apply(self) -> None:
        """The child's logging: to its stderr (the parent's, inherited), each logger name marked ``[store]``."""
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(self.formatter or logging.Formatter(FALLBACK_FORMAT))
        for kept in self.filters:
            handler.addFilter(kept)
        handler.addFilter(_mark_store)
        logging.basicConfig(level=self.level, handlers=[handler], force=True)


def _mark_store(record: logging.LogRecord) -> bool:
    """Name the child in each of its lines, as ``ivr.store_process[store]``, beside the server's own."""
    if not record.name.endswith("[store]"):
        record.name = f"{record.name}[store]"
    return True


@dataclass(frozen=True)
class Report:
    """What the child tells the server: where the stream is, and whether the store is taking it."""

    position: Position
    unavailable: str | None = None
    drained: bool = False
    # The batch this report follows: lines applied, and how long it took (counted in the server, which
    # serves the metrics: the child has no endpoint of its own).
    applied: int = 0
    seconds: float | None = None


class StoreProcess:
    """Starts the applier, restarts it if it dies, and asks it to drain when the server stops."""

    def __init__(self, store: RatingStore, directory: Path, stream: str, *, after: Position = START,
                 in_thread: bool = False) -> None:
        self.store = store
        self.directory = directory
        self.stream = stream
        self.in_thread = in_thread
        self.last = Report(after)
        self._changed = asyncio.Event()  # set, and replaced, at every report
        self._process: BaseProcess | threading.Thread | None = None
        self._conn: Connection | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if isinstance(self._process, BaseProcess) else None

    @property
    def position(self) -> Position:
        return self.last.position

    def start(self) -> None:
        """Start the child (blocking: a second or so of imports)."""
        where = (self.directory, self.stream, self.last.position)
        if self.in_thread:
            parent, child = multiprocessing.Pipe()
            self._process = threading.Thread(target=serve, args=(child, self.store, *where), name="journal-applier",
                                             daemon=True)
        else:
            context = multiprocessing.get_context("spawn")  # no fork of a process holding sockets and threads
            parent, child = context.Pipe()
            self._process = context.Process(
                target=_child_main,
                args=(child, ChildLogging.of_parent(), database_url(self.store), self.store.rules,
                      self.store.region_code, self.store.number_key, *where),
                name="hotline-eval-store", daemon=True,
            )
        self._process.start()
        if not self.in_thread:
            child.close()
        self._conn = parent
        log.info("store %s %s started, applying journal %s", "thread" if self.in_thread else "process",
                 self.pid or "", self.stream)

    async def run(self) -> None:
        """Follow the child's reports; start a new child when one dies (until :meth:`drain`)."""
        while True:
            if self._conn is None:
                try:
                    await asyncio.to_thread(self.start)
                except Exception:  # no process to be had (memory, file handles): the journal keeps it all
                    log.exception("store process could not be started; trying again")
                    if self._stopping:
                        return
                    await asyncio.sleep(RETRY_AFTER)
                    continue
                if self._stopping and self._conn is not None:  # asked to drain while it started
                    self._conn.send("stop")
            try:
                await self._follow()
            finally:
                self._forget()
            if self._stopping:
                return
            log.error("store process died at %d:%d of journal %s; starting another",
                      self.last.position.segment, self.last.position.line, self.stream)
            await asyncio.sleep(RETRY_AFTER)

    async def _follow(self) -> None:
        conn = self._conn
        assert conn is not None
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(conn.fileno(), readable.set)
        try:
            while True:
                await readable.wait()
                readable.clear()
                while conn.poll():
                    try:
                        report: Report = conn.recv()
                    except (EOFError, OSError):
                        return
                    self._note(report)
                    if report.drained:
                        return
        finally:
            loop.remove_reader(conn.fileno())

    def _note(self, report: Report) -> None:
        if report.unavailable and not self.last.unavailable:
            log.error("store unavailable (%s); the journal keeps every event until it is back", report.unavailable)
        elif self.last.unavailable and not report.unavailable:
            log.info("store available again; applying the journal from %d:%d",
                     report.position.segment, report.position.line)
        self.last = report
        STORE_UP.set(0 if report.unavailable else 1)
        if report.applied:
            STORE_EVENTS.inc(report.applied)
        if report.seconds is not None:
            STORE_BATCH.observe(report.seconds)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def reached(self, position: Position, timeout: float | None = None) -> bool:
        """Wait until the store has everything up to ``position``; False at once while the store is down,
        or if ``timeout`` passes first."""
        try:
            async with asyncio.timeout(timeout):
                while self.last.position < position:
                    if self.last.unavailable:
                        return False
                    await self._changed.wait()
        except TimeoutError:
            return False
        return True

    def _forget(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if isinstance(self._process, BaseProcess):
            if self._process.is_alive():
                self._process.kill()
            self._process.join(timeout=5)
        self._process = None

    async def drain(self, watcher: asyncio.Task[None], timeout: float) -> bool:
        """Ask the child to apply everything and stop; whether it did within ``timeout`` (if not, the
        journal stays on disk, whole, for the next start)."""
        self._stopping = True
        if self._conn is not None:
            try:
                self._conn.send("stop")
            except OSError:
                pass
        done, _ = await asyncio.wait([watcher], timeout=timeout)
        if not done:
            log.error("the store did not take the whole journal within %.0f s (%s); it stays in %s for the next "
                      "start", timeout, self.last.unavailable or "still applying", self.directory)
            watcher.cancel()  # and with it the child: the journal stays whole on disk
            await asyncio.gather(watcher, return_exceptions=True)
            return False
        return self.last.drained


def _child_main(conn: Connection, logs: ChildLogging, url: str, rules: Rules, region_code: str | None,
                number_key: str | None, directory: Path, stream: str, after: Position) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which asks for a drain
    logs.apply()
    exit_with_parent()
    log.info("applying journal %s after %d:%d", stream, after.segment, after.line)
    store = RatingStore(make_engine(url), rules, region_code=region_code, number_key=number_key)
    try:
        serve(conn, store, directory, stream, after)
    finally:
        store.engine.dispose()


def serve(conn: Connection, store: RatingStore, directory: Path, stream: str, after: Position) -> None:
    """The applier's loop: apply what the journal has, report, wait for more; drain and stop when asked.

    Returns when the parent is gone (the pipe closes) or, asked to stop, once everything is applied.
    """
    applier = JournalApplier(store, directory, stream, after=after)
    stopping = False
    unavailable: str | None = None
    try:
        while True:
            try:
                while conn.poll():
                    if conn.recv() == "stop":
                        stopping = True
            except (EOFError, OSError):
                return
            began = time.perf_counter()
            try:
                read = applier.step()
                unavailable = None
            except StoreUnavailable as exc:
                read, unavailable = 0, str(exc)
            except Exception as exc:  # a bug must show, and must not end the loop: the journal keeps the events
                logging.getLogger(__name__).exception("journal applier: batch failed")
                read, unavailable = 0, f"{type(exc).__name__}: {exc}"
            seconds = time.perf_counter() - began if read else None
            drained = stopping and not read and unavailable is None
            if read or unavailable or drained:
                try:
                    conn.send(Report(applier.position, unavailable, drained, read, seconds))
                except OSError:
                    return  # the parent is gone
            if drained:
                return
            if read < applier.batch:  # caught up: let the next batch gather
                wait([conn], RETRY_AFTER if unavailable else GATHER)
    finally:
        applier.close()
