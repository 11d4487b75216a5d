"""Moves journals into the store: the running server's own, and those whose servers died.

:class:`JournalApplier` is the store's side of :mod:`rating_core.events.journal`. It
reads a stream in batches, each applied in one transaction with the stream's
position, and deletes each segment once it is applied and a later one exists.
Between batches of its own stream it takes over dead streams one by one,
applies them, ends the calls they left open, and deletes them. The FastAGI
server runs one in its store process; ``hotline-eval db replay-spool`` runs one
with no stream of its own, for the dead streams only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rating_core.events.dead_letters import DeadLetters
from rating_core.events.journal import START, Claim, Cursor, Journal, Position, claim_dead
from rating_core.ratings.store import RatingStore, StoreUnavailable

log = logging.getLogger(__name__)

MAX_BATCH = 500
# How often an applier with nothing to do looks for streams of dead servers.
DEAD_SCAN_INTERVAL = 5.0


@dataclass
class _DeadStream:
    claim: Claim
    cursor: Cursor
    applied: int = 0


class JournalApplier:
    def __init__(self, store: RatingStore, directory: str | Path, stream: str | None = None, *,
                 after: Position = START, batch: int = MAX_BATCH, take_over: bool = True) -> None:
        self.store = store
        self.take_over = take_over
        self.directory = Path(directory)
        self.stream = stream
        self.batch = batch
        self.dead_letters = DeadLetters(self.directory)
        # Calls with an event among the dead letters: their later events join it there, in order.
        self.refused_calls = self.dead_letters.uniqueids()
        self.cursor = Cursor(self.directory, stream, after) if stream is not None else None
        self.applied = 0  # events of the own stream applied by this applier
        self.read = 0  # lines read of every stream
        self._dead: _DeadStream | None = None
        self._next_scan = 0.0
        self._turn = 0

    @property
    def position(self) -> Position:
        """The own stream's position: every event up to it is in the store (or a dead letter)."""
        return self.cursor.position if self.cursor is not None else START

    def step(self) -> int:
        """Apply one batch, the own stream's first; how many lines were read (0: nothing to do; a dead
        stream's end, applied and deleted, counts as one).

        Raises :class:`~rating_core.ratings.store.StoreUnavailable` with nothing moved: the same entries are read
        again at the next step.
        """
        self._turn += 1
        if self._turn % 2 == 0:  # every other step, a dead stream's turn: a busy server must not starve it
            read = self._recover_step()
            if read:
                return read
        if self.cursor is not None:
            read = self._apply(self.stream or "", self.cursor)
            if read:
                return read
        return self._recover_step()

    def _apply(self, stream: str, cursor: Cursor) -> int:
        mark = cursor.mark()
        try:
            entries = cursor.read(self.batch)  # a disk error mid-read leaves the cursor half moved: rewound too
            if not entries:
                self._delete_finished(cursor)
                return 0
            applied = self.store.apply_journaled(stream, entries, self.dead_letters.add, self.refused_calls)
        except BaseException:
            cursor.rewind(mark)  # read them again next time
            raise
        if cursor is self.cursor:
            self.applied += applied
        self.read += len(entries)
        self._delete_finished(cursor)
        return len(entries)

    @staticmethod
    def _delete_finished(cursor: Cursor) -> None:
        for path in cursor.finished_segments():
            path.unlink(missing_ok=True)

    def _recover_step(self) -> int:
        if self._dead is None:
            if not self.take_over:
                return 0
            now = time.monotonic()
            if now < self._next_scan:
                return 0
            self._next_scan = now + DEAD_SCAN_INTERVAL
            claim = next(claim_dead(self.directory, skip={self.stream} if self.stream else frozenset()), None)
            if claim is None:
                return 0
            log.info("journal: taking over %s, left by a server that is gone", claim.stream)
            self.refused_calls |= self.dead_letters.uniqueids()  # its server may have refused some
            self._dead = _DeadStream(claim, Cursor(self.directory, claim.stream, legacy=claim.legacy))
        dead = self._dead
        try:
            read = self._apply(dead.claim.stream, dead.cursor)
        except BaseException:
            dead.claim.release()  # another applier (or this one, later) takes it from where the store says
            self._dead = None
            raise
        if read:
            dead.applied += read
            return read
        self._finish(dead)
        return 1

    def _finish(self, dead: _DeadStream) -> None:
        """The dead stream is in the store: end the calls it left open, then delete it."""
        stream = dead.claim.stream
        files = dead.claim.files()
        last_written = max((path.stat().st_mtime for path in files), default=time.time())
        try:
            ended = self.store.end_crashed_calls(stream, dead.cursor.open_calls,
                                                 datetime.fromtimestamp(last_written, timezone.utc),
                                                 self.refused_calls)
            dead.claim.delete()
            self.store.forget_stream(stream)
        finally:
            dead.claim.release()
            self._dead = None
            self._next_scan = 0.0  # there may be more
        log.info("journal: %s applied (%d line(s)); %d call(s) it left open ended as %s", stream, dead.applied,
                 ended, "server_crash")

    def drain(self) -> int:
        """Apply everything there is now (the own stream and every dead one); how many lines were read."""
        before = self.read
        self._next_scan = 0.0
        while self.step():
            pass
        return self.read - before

    def close(self) -> None:
        if self._dead is not None:
            self._dead.claim.release()
            self._dead = None


def apply_own_journal(store: RatingStore, journal: Journal) -> bool:
    """Apply a one-call process's own stream (plain AGI) before it exits; whether the store took it all."""
    applier = JournalApplier(store, journal.directory, journal.stream, take_over=False)
    try:
        applier.drain()
    except StoreUnavailable as exc:
        log.error("store unavailable (%s); journal %s stays for the FastAGI server or db replay-spool",
                  exc, journal.stream)
        return False
    return True


def replay_dead_journals(store: RatingStore, directory: str | Path) -> int:
    """Apply every stream whose server is gone; how many entries were read. Live streams are left alone."""
    applier = JournalApplier(store, directory)
    try:
        return applier.drain()
    finally:
        applier.close()
