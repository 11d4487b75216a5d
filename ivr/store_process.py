"""The rating store's writes in a process of their own, beside the FastAGI server.

Applying a call's events through the ORM costs a few milliseconds of Python.
In a thread of the FastAGI process that work holds the GIL, and the event
loop, which has thousands of calls to answer, waits up to the interpreter's
switch interval for it each time it lets go (every socket write does): every
AGI turn would pay for the database. In a child process it runs on the other
core and the event loop never waits for it.

The parent sends one batch at a time over a pipe and keeps it until the child
answers, so a child that dies, hangs or is killed takes nothing with it: the
writer spools the batch, and the next batch starts a new child.
``concurrent.futures.ProcessPoolExecutor`` is not used because a worker that
dies breaks the whole pool, and a hung one cannot be killed on its own.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import ForkingPickler

from rating_core.call_events import CallEvent
from rating_core.database import make_engine
from rating_core.rules import Rules
from rating_core.store import RatingStore, Rejected, StoreUnavailable

log = logging.getLogger(__name__)


def database_url(store: RatingStore) -> str:
    """The store's URL with its password, for the child to connect the same way."""
    return store.engine.url.render_as_string(hide_password=False)


class StoreProcess:
    """An applier for :class:`ivr.rating_writer.RatingWriter` that applies batches in a child process."""

    def __init__(self, url: str, rules: Rules) -> None:
        self.url = url
        self.rules = rules
        self.started = 0  # children started so far (a restart after a death counts)
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the child (blocking: a second or so of imports); done again after it died."""
        context = multiprocessing.get_context("spawn")  # no fork of a process holding sockets and threads
        parent, child = context.Pipe()
        process = context.Process(target=_serve, args=(child, self.url, self.rules), name="hotline-eval-store",
                                  daemon=True)
        process.start()
        child.close()
        self._process, self._conn = process, parent
        self.started += 1
        log.info("store process %d started", process.pid)

    async def apply(self, events: Sequence[CallEvent]) -> list[Rejected]:
        if self._process is None or not self._process.is_alive():
            self._discard()
            await asyncio.to_thread(self.start)
        conn = self._conn
        assert conn is not None
        try:
            # A batch is larger than the pipe's buffer, and on a busy machine the child may wait
            # milliseconds for a CPU before it reads: a thread waits for that, not the event loop.
            await asyncio.to_thread(conn.send_bytes, ForkingPickler.dumps(list(events)))
            answer = await self._receive(conn)
        except (EOFError, OSError) as exc:
            self._discard()
            raise StoreUnavailable(f"store process died ({type(exc).__name__})") from exc
        except BaseException:  # cancelled (the writer's time limit): the child may be stuck in a locked database
            self._discard()
            raise
        status, detail = answer
        if status == "unavailable":
            raise StoreUnavailable(detail)
        return detail

    async def _receive(self, conn: Connection) -> tuple[str, object]:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(conn.fileno(), readable)
        try:
            await ready
        finally:
            loop.remove_reader(conn.fileno())
        return conn.recv()  # the answer is small: once readable, it is all there

    def _discard(self) -> None:
        """Forget the child, killing it if it still runs."""
        if self._process is not None:
            if self._process.is_alive():
                log.error("store process %d is stuck; killing it", self._process.pid)
                self._process.kill()
            self._process.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None

    async def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.send(None)
            except OSError:
                pass
        if self._process is not None:
            await asyncio.to_thread(self._process.join, 10)
        self._discard()


def _serve(conn: Connection, url: str, rules: Rules) -> None:
    """The child: apply each batch that arrives, answer ("ok", rejected) or ("unavailable", why)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which drains the writer first
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s[store]: %(message)s")
    store = RatingStore(make_engine(url), rules)
    while True:
        try:
            events = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if events is None:
            return
        try:
            answer: tuple[str, object] = ("ok", store.apply_batch(events))
        except StoreUnavailable as exc:
            answer = ("unavailable", str(exc))
        except Exception as exc:  # a bug must reach the parent as a failure, not as a silent child
            logging.getLogger(__name__).exception("store process: batch failed")
            answer = ("unavailable", f"{type(exc).__name__}: {exc}")
        conn.send(answer)
