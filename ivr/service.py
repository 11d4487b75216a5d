"""Wiring for the IVR processes: the store, the writer, the scripts, the spool replayer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ivr.agi_server import FastAgiServer, Script
from ivr.agi_session import AgiSession
from ivr.call_flow import evaluate
from ivr.rating_writer import RatingWriter
from ivr.verification_flow import verify
from rating_core.callback_tasks import VerificationCall
from rating_core.rules import Rules
from rating_core.spool import Spool
from rating_core.store import RatingStore

log = logging.getLogger(__name__)


@dataclass
class IvrService:
    store: RatingStore
    spool: Spool
    writer: RatingWriter
    server: FastAgiServer

    @property
    def rules(self) -> Rules:
        return self.store.rules


def make_scripts(store: RatingStore, writer: RatingWriter, *, lookup_timeout: float = 5.0) -> dict[str, Script]:
    """The FastAGI scripts by URL path: the post-call evaluation and the automated callback."""
    rules = store.rules

    async def postcall(agi: AgiSession) -> None:
        await evaluate(agi, rules, writer)

    async def lookup(task_id: int, attempt_id: int) -> VerificationCall | None:
        # The store is read in a thread under a time limit: a slow database must not freeze other calls.
        return await asyncio.wait_for(asyncio.to_thread(store.verification_call, task_id, attempt_id), lookup_timeout)

    async def callback_verify(agi: AgiSession) -> None:
        await verify(agi, rules, writer, lookup)

    return {"postcall": postcall, "callback-verify": callback_verify}


@contextlib.asynccontextmanager
async def running_ivr(
    store: RatingStore, spool: Spool, host: str, port: int, *, replay_interval: float = 15.0,
    write_timeout: float = 10.0,
) -> AsyncIterator[IvrService]:
    """A started FastAGI server with its writer and spool replayer; all stopped on exit."""
    writer = RatingWriter(store, spool, write_timeout=write_timeout)
    writer.start()
    server = FastAgiServer(make_scripts(store, writer))
    await server.start(host, port)
    await writer.replay_once()  # what an earlier run left in the spool
    replayer = asyncio.create_task(writer.replay_forever(replay_interval), name="spool-replayer")
    try:
        yield IvrService(store, spool, writer, server)
    finally:
        await server.close()
        replayer.cancel()
        await asyncio.gather(replayer, return_exceptions=True)
        await writer.stop()
        await writer.replay_once()


async def serve_until_signalled(store: RatingStore, spool: Spool, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_ivr(store, spool, host, port) as ivr:
        log.info("FastAGI server listening on %s:%d (hotlines: %s)", host, ivr.server.port, ", ".join(store.rules.hotlines))
        await stop.wait()
        log.info("stopping: waiting for %d call(s) in progress", len(ivr.server.active))
