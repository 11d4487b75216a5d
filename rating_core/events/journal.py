"""The IVR's write-ahead journal: every call event on disk, fsynced, before the caller hears the next prompt.

A FastAGI server appends each event to its own *stream* of segment files and
fsyncs (one fsync for every event that queued up meanwhile: group commit);
only then does the call go on. The store applies a stream in order, and writes
how far it got (``journal_positions``) in the same transaction as the events,
so an event is applied exactly once however often a stream is read again.

One process owns a stream: it holds an exclusive ``flock`` on the stream's
lock file for as long as it runs, and the kernel lets go when it dies, even by
SIGKILL. A stream nobody holds is *dead*: any server, or ``db replay-spool``,
may claim it (the same lock), apply what is left, end the calls it had open
(``server_crash``), and delete it. A live stream is never touched by anyone
but its owner and the owner's store process.

Each segment starts with a header naming the calls open when it was begun, so
the last segment alone says which calls a crashed server left half done.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rating_core.events.call_events import (
    FINAL_EVENTS,
    CallbackAnswered,
    CallEvent,
    CallStarted,
    from_record,
    to_record,
)

log = logging.getLogger(__name__)

FORMAT = 1
# A segment is closed and a new one begun after this many events; the store deletes each segment it has
# applied once the next one exists, so a running journal holds about one segment.
SEGMENT_EVENTS = 20_000
# Below this much free space on the journal's disk the server will not start, and says so while it runs:
# at a few hundred bytes an event, it is hours of a centre's events with the database down.
MIN_FREE_BYTES = 256 * 1024 * 1024
_SEGMENT = re.compile(r"^(?P<stream>.+)\.(?P<number>\d{8})\.jsonl$")
# Spool files of versions before the journal: whole call histories, applied once as a segment of their own.
_LEGACY = re.compile(r"^events-.+\.jsonl$")


class JournalFull(OSError):
    """The journal's disk has less free space than the server needs to promise anything."""


@dataclass(frozen=True, order=True)
class Position:
    """Where an event is in its stream: the segment, and the line within it (the header is line 0)."""

    segment: int
    line: int


START = Position(0, 0)


@dataclass(frozen=True)
class Entry:
    """One line of a stream as the store reads it: the event, or why it could not be read."""

    position: Position
    raw: str
    event: CallEvent | None
    error: str | None = None

    @property
    def uniqueid(self) -> str | None:
        return self.event.uniqueid if self.event is not None else None


@dataclass
class OpenCalls:
    """Calls a stream has begun and not ended: evaluations, and automated callbacks by attempt."""

    evaluations: set[str] = field(default_factory=set)
    callbacks: dict[str, int] = field(default_factory=dict)

    def follow(self, event: CallEvent) -> None:
        if isinstance(event, CallStarted):
            self.evaluations.add(event.uniqueid)
        elif isinstance(event, CallbackAnswered):
            self.callbacks[event.uniqueid] = event.attempt_id
        elif isinstance(event, FINAL_EVENTS):
            self.evaluations.discard(event.uniqueid)
            self.callbacks.pop(event.uniqueid, None)

    def header(self, stream: str, segment: int) -> dict[str, Any]:
        return {"journal": FORMAT, "stream": stream, "segment": segment,
                "open_calls": sorted(self.evaluations), "open_callbacks": dict(sorted(self.callbacks.items()))}

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> OpenCalls:
        return cls(set(header.get("open_calls", ())), {k: int(v) for k, v in header.get("open_callbacks", {}).items()})


def free_bytes(directory: Path) -> int:
    return shutil.disk_usage(directory).free


def segment_path(directory: Path, stream: str, number: int) -> Path:
    return directory / f"{stream}.{number:08d}.jsonl"


def lock_path(directory: Path, stream: str) -> Path:
    return directory / f"{stream}.lock"


class Journal:
    """This process's stream: append events durably, begin a new segment now and then."""

    def __init__(self, directory: str | os.PathLike[str], *, segment_events: int = SEGMENT_EVENTS,
                 min_free_bytes: int = MIN_FREE_BYTES) -> None:
        self.directory = Path(directory)
        self.segment_events = segment_events
        self.min_free_bytes = min_free_bytes
        self.stream = ""
        self.open_calls = OpenCalls()
        self.position = START  # of the last event appended
        self._lock = threading.Lock()
        self._lock_file: IO[bytes] | None = None
        self._segment: int | None = None  # the file descriptor of the segment being written

    def open(self) -> None:
        """Take the stream (its lock) and begin its first segment; refuse when the disk is nearly full."""
        self.directory.mkdir(parents=True, exist_ok=True)
        # A new name at every start: a stream is never written again once closed, so its stored
        # position can never skip a later event.
        host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40]
        self.stream = f"journal-{host}-{os.getpid()}-{os.urandom(4).hex()}"
        self.open_calls = OpenCalls()
        free = free_bytes(self.directory)
        if free < self.min_free_bytes:
            raise JournalFull(f"the journal's disk ({self.directory}) has {free // 2**20} MiB free, "
                              f"less than the {self.min_free_bytes // 2**20} MiB it needs")
        self._lock_file = open(lock_path(self.directory, self.stream), "wb")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            taken = _still_named(self._lock_file, lock_path(self.directory, self.stream))
        except BlockingIOError:
            taken = False
        if not taken:
            # A replayer found the lock file between its creation and the flock and took the stream for a
            # dead one without files (to delete it): this lock would guard nothing. A new name, once more.
            self._lock_file.close()
            self.open()
            return
        self._begin_segment(1)

    def append(self, events: Sequence[CallEvent]) -> Position:
        """Write ``events`` at the end of the stream and fsync them: one fsync for them all.

        Raises OSError (a full or failing disk) with nothing counted as written: the caller keeps the
        events and tries again.
        """
        data = "".join(json.dumps(to_record(event), ensure_ascii=False) + "\n" for event in events).encode()
        with self._lock:
            if self._segment is None:
                raise OSError("the journal is closed")
            if self.position.line >= self.segment_events:
                self._begin_segment(self.position.segment + 1)
            fd = self._segment
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                _write_all(fd, data)
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, start)  # a torn write must not be read as events; they are written again
                raise
            for event in events:
                self.open_calls.follow(event)
            self.position = Position(self.position.segment, self.position.line + len(events))
            return self.position

    def _begin_segment(self, number: int) -> None:
        """Begin segment ``number`` with its header, then leave the one being written (complete, fsynced).

        The new segment is made whole under a name no reader lists, then renamed into place: a reader
        that sees segment N+1 takes N as finished, so N+1 must never appear half made. If anything fails,
        the stream stays on the old segment and the next append tries again.
        """
        path = segment_path(self.directory, self.stream, number)
        making = path.with_name(path.name + ".new")
        # Unbuffered, appended with os.write: nothing of a failed write can linger in a buffer to be
        # written later, after the truncation that undid it.
        segment = os.open(making, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o640)
        try:
            _write_all(segment, (json.dumps(self.open_calls.header(self.stream, number)) + "\n").encode())
            os.fsync(segment)
            os.rename(making, path)
            _fsync_directory(self.directory)  # the new file's name is as durable as its contents
        except OSError:
            os.close(segment)
            making.unlink(missing_ok=True)
            raise
        if self._segment is not None:
            os.close(self._segment)
        self._segment = segment
        self.position = Position(number, 0)

    def free_bytes(self) -> int:
        return free_bytes(self.directory)

    def close(self, *, applied: bool) -> None:
        """Stop writing. ``applied``: the store has every event, so the stream is deleted; otherwise it
        is left whole, and the next server to start (this one again, after a restart) applies it."""
        with self._lock:
            if self._segment is not None:
                os.close(self._segment)
                self._segment = None
            if applied:
                for path in segments(self.directory, self.stream):
                    path.unlink(missing_ok=True)
                lock_path(self.directory, self.stream).unlink(missing_ok=True)
                _fsync_directory(self.directory)  # gone for good before the store forgets the stream
            if self._lock_file is not None:
                self._lock_file.close()  # lets go of the lock
                self._lock_file = None


def _write_all(fd: int, data: bytes) -> None:
    """All of ``data``, or OSError: a nearly full disk may take part of a write without failing it."""
    written = 0
    while written < len(data):
        written += os.write(fd, data[written:])


def _still_named(lock_file: IO[bytes], path: Path) -> bool:
    """Whether the file locked is still the one at ``path`` (a lock on a deleted lock file guards nothing)."""
    try:
        return os.stat(path).st_ino == os.fstat(lock_file.fileno()).st_ino
    except FileNotFoundError:
        return False


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def segments(directory: Path, stream: str) -> list[Path]:
    """The stream's segment files, oldest first."""
    found = []
    for path in directory.glob(f"{glob_escape(stream)}.*.jsonl"):
        match = _SEGMENT.match(path.name)
        if match and match["stream"] == stream:
            found.append((int(match["number"]), path))
    return [path for _, path in sorted(found)]


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def streams(directory: Path) -> list[str]:
    """Every stream with files in ``directory`` (segments or just a lock), and spool files of older versions."""
    if not directory.is_dir():
        return []
    names = set()
    for path in directory.iterdir():
        match = _SEGMENT.match(path.name)
        if match:
            names.add(match["stream"])
        elif path.suffix == ".lock":
            names.add(path.stem)
        elif _LEGACY.match(path.name):
            names.add(path.name)
    return sorted(names)


class Claim:
    """A dead stream taken for replay: its lock held until :meth:`release`."""

    def __init__(self, directory: Path, stream: str, lock_file: IO[bytes]) -> None:
        self.directory = directory
        self.stream = stream
        self._lock_file = lock_file

    @property
    def legacy(self) -> bool:
        return bool(_LEGACY.match(self.stream))

    def files(self) -> list[Path]:
        if self.legacy:
            path = self.directory / self.stream
            return [path] if path.exists() else []
        return segments(self.directory, self.stream)

    def delete(self) -> None:
        """The stream is in the store: remove its files (the lock file last, then let go of it)."""
        for path in self.files():
            path.unlink(missing_ok=True)
        lock_path(self.directory, self.stream).unlink(missing_ok=True)
        # Gone for good before the store forgets the stream's position: files that came back after a
        # power cut with no position would be applied again from the start.
        _fsync_directory(self.directory)
        self.release()

    def release(self) -> None:
        self._lock_file.close()


def claim_dead(directory: Path, *, skip: set[str] | frozenset[str] = frozenset()) -> Iterator[Claim]:
    """Claim, one by one, each stream whose owner is gone (its lock is free); a live one is left alone."""
    for stream in streams(directory):
        if stream in skip:
            continue
        try:
            lock_file = open(lock_path(directory, stream), "ab")
        except OSError as exc:
            log.error("journal: cannot open the lock of %s: %s", stream, exc)
            continue
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            continue  # its server is running
        if not _still_named(lock_file, lock_path(directory, stream)):
            lock_file.close()  # another replayer finished the stream and deleted its lock meanwhile
            continue
        claim = Claim(directory, stream, lock_file)
        if not claim.files():  # taken, applied and deleted by someone else since the listing
            lock_path(directory, stream).unlink(missing_ok=True)
            claim.release()
            continue
        yield claim


class Cursor:
    """Reads a stream in order from a position on, one batch at a time.

    Only whole lines are read: a live stream's last line may still be on its way, and a dead one's may
    be torn by the crash (never acknowledged, so nothing is lost by leaving it).
    """

    def __init__(self, directory: Path, stream: str, after: Position = START, *, legacy: bool = False) -> None:
        self.directory = directory
        self.stream = stream
        self.legacy = legacy
        self.position = after  # the last line read
        self.open_calls = OpenCalls()  # as of the position, once the reader has passed a header
        self._offset = 0  # bytes of the current segment read
        self._line = 0
        self._segment = after.segment
        self._behind = -1  # the segment the cursor was in when those behind it were last listed

    def mark(self) -> tuple[Any, ...]:
        """Where the cursor is, to go back to when what was read could not be applied."""
        open_calls = OpenCalls(set(self.open_calls.evaluations), dict(self.open_calls.callbacks))
        return self.position, self._segment, self._offset, self._line, open_calls

    def rewind(self, mark: tuple[Any, ...]) -> None:
        self.position, self._segment, self._offset, self._line, self.open_calls = mark

    def _files(self) -> list[tuple[int, Path]]:
        if self.legacy:
            path = self.directory / self.stream
            return [(1, path)] if path.exists() else []  # a legacy file is its stream's only segment, 1
        result = []
        for path in segments(self.directory, self.stream):
            match = _SEGMENT.match(path.name)
            assert match is not None
            result.append((int(match["number"]), path))
        return result

    def finished_segments(self) -> list[Path]:
        """Segments wholly behind the cursor (a later one exists): the store may delete them once applied.
        Listed once each time the cursor enters a segment, not at every batch."""
        if self._segment == self._behind:
            return []
        self._behind = self._segment
        return [path for number, path in self._files() if number < self._segment]

    def read(self, limit: int) -> list[Entry]:
        entries: list[Entry] = []
        while len(entries) < limit:
            offset = self._offset
            if self._segment:
                entries.extend(self._read_lines(self._path(self._segment), limit - len(entries)))
                if self._offset != offset:
                    continue
            # Nothing new here: the folder is listed only now, to see whether a later segment has begun.
            later = [number for number, _ in self._files() if number > self._segment]
            if not later:
                break
            if self._segment:  # the writer closed this one whole before it began the next: read it to its end
                entries.extend(self._read_lines(self._path(self._segment), limit - len(entries)))
                if self._offset != offset:
                    continue
            self._enter(later[0])
        return entries

    def _path(self, number: int) -> Path:
        return self.directory / self.stream if self.legacy else segment_path(self.directory, self.stream, number)

    def _enter(self, number: int) -> None:
        self._segment, self._offset, self._line = number, 0, 0

    def _read_lines(self, path: Path, limit: int) -> list[Entry]:
        try:
            with open(path, "rb") as f:
                f.seek(self._offset)
                data = f.read(1 << 20)
        except FileNotFoundError:
            return []
        entries: list[Entry] = []
        start = 0
        while len(entries) < limit:
            end = data.find(b"\n", start)
            if end < 0:
                break
            raw = data[start:end].decode("utf-8", errors="replace")
            start = end + 1
            line = self._line
            self._line += 1
            if line == 0 and not self.legacy and self._read_header(raw):
                continue
            number = line if not self.legacy else line + 1
            position = Position(self._segment, number)
            entry = parse(position, raw)
            if entry.event is not None:
                self.open_calls.follow(entry.event)
            if position > self.position:
                entries.append(entry)
        self._offset += start
        if entries:
            self.position = entries[-1].position
        return entries

    def _read_header(self, raw: str) -> bool:
        """Take line 0 as the segment's header; False if it is none (it is then read as an event line,
        or kept as a dead letter, never dropped unseen)."""
        try:
            header = json.loads(raw)
            if not isinstance(header, dict) or header.get("journal") != FORMAT:
                raise ValueError("not a journal header")
            self.open_calls = OpenCalls.from_header(header)
        except (ValueError, TypeError, AttributeError):
            log.error("journal %s: segment %d begins with no header; read as an event line", self.stream,
                      self._segment)
            return False
        return True


def parse(position: Position, raw: str) -> Entry:
    try:
        return Entry(position, raw, from_record(json.loads(raw)))
    except (ValueError, KeyError, TypeError) as exc:
        return Entry(position, raw, None, f"unreadable line: {type(exc).__name__}: {exc}")
