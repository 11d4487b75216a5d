"""Wiring for the IVR processes: the store, the writer, the scripts, the spool replayer."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import signal
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ivr.agi_server import FastAgiServer, Script
from ivr.agi_session import AgiSession
from ivr.audiosocket_server import AudioSocketServer
from ivr.call_flow import evaluate
from ivr.rating_writer import RatingWriter
from ivr.recorded_speech import RecordingListener
from ivr.speech_listener import RatingListener, SpeechListener
from ivr.speech_workers import GrammarSpec, RecognizerPool
from ivr.store_process import StoreProcess
from ivr.verification_flow import verify
from protocols.service_manager import notify
from rating_core.complaints.callback_tasks import VerificationCall
from rating_core.events.journal import Journal, Position
from rating_core.ratings.store import RatingStore
from rating_core.rules.log_context import task_id
from rating_core.rules.metrics import JOURNAL_QUEUE, SPOOL_PENDING
from rating_core.rules.rulebook import Rules
from speech_models.manifests import locate

log = logging.getLogger(__name__)


class PortTaken(Exception):
    """A port this server is to listen on is held by another process (another FastAGI server, say)."""

    def __init__(self, listener: Literal["fastagi", "audiosocket"], host: str, port: int) -> None:
        super().__init__(f"{host}:{port} is already in use")
        self.listener, self.host, self.port = listener, host, port


async def listening(start: Awaitable[object], listener: Literal["fastagi", "audiosocket"], host: str,
                    port: int) -> None:
    """Await a server's ``start``; a port in use becomes :class:`PortTaken`, for one line instead of a traceback."""
    try:
        await start
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortTaken(listener, host, port) from exc
        raise


@dataclass
class IvrService:
    store: RatingStore
    journal: Journal
    writer: RatingWriter
    applier: StoreProcess
    server: FastAgiServer
    speech: RatingListener | None = None

    @property
    def rules(self) -> Rules:
        return self.store.rules

    async def settled(self) -> None:
        """Wait until the store has every event handed over so far (for tests and the demo)."""
        await self.writer.stop()
        await self.applier.reached(self.writer.appended)


def make_scripts(store: RatingStore, writer: RatingWriter, *, lookup_timeout: float = 5.0,
                 speech: RatingListener | None = None) -> dict[str, Script]:
    """The FastAGI scripts by URL path: the post-call evaluation and the automated callback."""
    rules = store.rules

    async def postcall(agi: AgiSession) -> None:
        await evaluate(agi, rules, writer, speech)

    async def lookup(task: int, attempt_id: int) -> VerificationCall | None:
        # Where a callback call's task is first known: the rest of the call's lines are about it too (the
        # connection's own asyncio task, whose context this is, ends with the call).
        task_id.set(task)
        # The store is read in a thread under a time limit: a slow database must not freeze other calls.
        return await asyncio.wait_for(asyncio.to_thread(store.verification_call, task, attempt_id), lookup_timeout)

    async def callback_verify(agi: AgiSession) -> None:
        await verify(agi, rules, writer, lookup)

    return {"postcall": postcall, "callback-verify": callback_verify}


def speech_grammars(rules: Rules, models_dir: Path | None) -> tuple[dict[str, str], dict[str, GrammarSpec]]:
    """The models to load ({name: folder}) and a grammar per hotline that hears speech and has its model."""
    models: dict[str, str] = {}
    grammars: dict[str, GrammarSpec] = {}
    for hotline in rules.hotlines.values():
        if hotline.speech.language is None:
            continue
        model = rules.speech_languages[hotline.speech.language].model
        status = locate(model, models_dir)
        if not status.usable:
            log.warning("hotline %s: speech model %s is not usable (%s); keys only",
                        hotline.code, model, "; ".join(status.problems[:3]))
            continue
        models[model] = str(status.directory)
        grammars[hotline.code] = (model, rules.speech_phrases(hotline))
    return models, grammars


@contextlib.asynccontextmanager
async def running_speech(rules: Rules, host: str, port: int, *, advertise: str | None = None, workers: int = 2,
                         recordings: tuple[str, Path] | None = None,
                         models_dir: Path | None = None) -> AsyncIterator[RatingListener | None]:
    """The recognition workers and how the audio reaches them; None when no hotline can hear speech here.

    The audio comes over AudioSocket, or with ``recordings`` (Asterisk's folder, and where this host
    sees it) from RECORD FILE on a disk both hosts share. The models come from ``models_dir`` (else only
    those installed as Python packages).

    The AudioSocket server is started only when it has something to hear: some hotline with speech and
    its model here, and no ``recordings``. So FastAGI servers for keys-only hotlines hold no port but
    their own and several run side by side on one host with the defaults. It is bound before the models
    load (which takes seconds): a port already taken (:class:`PortTaken`) stops the start at once.
    """
    models, grammars = speech_grammars(rules, models_dir)
    if not grammars:
        log.info("no hotline hears speech here: keys only, no AudioSocket server")
        yield None
        return
    server: AudioSocketServer | None = None
    if recordings is None:
        server = AudioSocketServer()
        await listening(server.start(host, port), "audiosocket", host, port)
    pool = RecognizerPool(models, grammars, workers=workers)
    try:
        await asyncio.to_thread(pool.start)
        for code, (model, _) in grammars.items():
            grammar = pool.grammars.get(code)
            if grammar is None:
                log.warning("hotline %s: speech model %s failed to load; keys only", code, model)
            elif grammar.left_out:
                log.warning("hotline %s: model %s cannot hear %s", code, model, ", ".join(grammar.left_out))
        if server is None:
            assert recordings is not None
            log.info("speech from RECORD FILE into %s, read at %s; speech for %s", *recordings,
                     ", ".join(pool.grammars) or "no hotline")
            yield RecordingListener(pool, *recordings)
        else:
            address = advertise or f"{host}:{server.port}"
            log.info("AudioSocket server on %s:%d (Asterisk connects to %s); speech for %s",
                     host, server.port, address, ", ".join(pool.grammars) or "no hotline")
            yield SpeechListener(server, pool, address)
    finally:
        if server is not None:
            await server.close()
        await asyncio.to_thread(pool.close)


@contextlib.asynccontextmanager
async def running_ivr(
    store: RatingStore, journal: Journal, host: str, port: int, *, speech: RatingListener | None = None,
    store_process: bool = False, drain_timeout: float = 30.0,
) -> AsyncIterator[IvrService]:
    """A started FastAGI server with its journal and the store's applier; all stopped on exit.

    With ``store_process`` the journal is applied in a child process (see :mod:`ivr.store_process`):
    what a server with thousands of calls wants; tests and the demo may apply it in a thread. On exit
    the calls finish, the journal is written, and the store is given ``drain_timeout`` seconds to take
    it all; what it has not taken stays on disk for the next start.
    """
    journal.open()
    applier = StoreProcess(store, journal.directory, journal.stream, after=journal.position,
                           in_thread=not store_process)
    watcher = asyncio.create_task(applier.run(), name="journal-applier")
    writer = RatingWriter(journal, applier)
    writer.start()
    server = FastAgiServer(make_scripts(store, writer, speech=speech))
    # Read on scrape, from where the journal and the store stand: nothing to keep up to date on each call.
    SPOOL_PENDING.set_function(lambda: lines_between(applier.position, journal.position, journal.segment_events))
    JOURNAL_QUEUE.set_function(lambda: writer.pending)
    try:
        await listening(server.start(host, port), "fastagi", host, port)
        yield IvrService(store, journal, writer, applier, server, speech)
    finally:
        await server.close()
        await writer.stop()
        drained = await applier.drain(watcher, drain_timeout)
        journal.close(applied=drained)
        if drained:
            await asyncio.to_thread(store.forget_stream, journal.stream)


def lines_between(applied: Position, written: Position, segment_events: int) -> int:
    """Journal lines written after ``applied`` up to ``written``: exact within a segment, and across segments as
    if each were full (they are, but for the header and the last one)."""
    return max(0, (written.segment - applied.segment) * segment_events + written.line - applied.line)


# Collect the youngest generation every 50,000 allocations (Python's default: 700), the next every 20 of
# those, the oldest at most every 10 of those.
GC_THRESHOLDS = (50_000, 20, 10)


def tune_garbage_collector() -> None:
    """Keep the collector's pauses off the callers' turns, once the server has started.

    Thousands of calls in progress hold a few hundred thousand live objects (their coroutines, futures,
    streams), and each full collection walks them all with the event loop stopped: 100-500 ms on two busy
    cores, several times a minute with the default thresholds (benchmarks/agi_concurrency.py). What was
    loaded to start (modules, rules, prompts) is frozen out of the walk, and young collections run
    far less often, so a full one comes rarely; reference cycles are still collected.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def serve_until_signalled(store: RatingStore, journal: Journal, host: str, port: int, *,
                                audiosocket: tuple[str, int] = ("127.0.0.1", 9092),
                                audiosocket_advertise: str | None = None, speech_workers: int = 2,
                                speech_recordings: tuple[str, Path] | None = None,
                                models_dir: Path | None = None, notify_socket: str | None = None) -> None:
    """Serve calls until SIGINT or SIGTERM, then drain; ``notify_socket`` (systemd's ``$NOTIFY_SOCKET``) hears
    READY=1 once the port takes calls, and STOPPING=1 when the drain begins."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with (
        running_speech(store.rules, *audiosocket, advertise=audiosocket_advertise, workers=speech_workers,
                       recordings=speech_recordings, models_dir=models_dir) as speech,
        running_ivr(store, journal, host, port, speech=speech, store_process=True) as ivr,
    ):
        log.info("FastAGI server listening on %s:%d (hotlines: %s)", host, ivr.server.port,
                 ", ".join(store.rules.hotlines))
        notify(notify_socket, READY="1", STATUS=f"listening on {host}:{ivr.server.port}")
        tune_garbage_collector()
        await stop.wait()
        log.info("stopping: waiting for %d call(s) in progress", len(ivr.server.active))
        notify(notify_socket, STOPPING="1", STATUS=f"stopping: {len(ivr.server.active)} call(s) in progress")
