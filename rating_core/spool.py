"""A local, append-only journal of call events the database could not take.

When the database is briefly unreachable a caller's rating must still be kept.
The IVR appends the event to a JSON-lines file (flushed and fsynced before the
call moves on) and a replayer applies the files to the store once it is back.
Events are idempotent, so a file that is replayed twice does no harm.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from rating_core.call_events import CallEvent, from_record, to_record

log = logging.getLogger(__name__)


class Spool:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._name = f"events-{os.getpid()}-{os.urandom(4).hex()}.jsonl"

    @property
    def current_file(self) -> Path:
        return self.directory / self._name

    def append(self, *events: CallEvent) -> None:
        """Add events at the end of the journal, durably (one fsync for them all)."""
        line = "".join(json.dumps(to_record(event), ensure_ascii=False) + "\n" for event in events)
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self.current_file, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())

    def pending_files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("events-*.jsonl"), key=lambda p: p.stat().st_mtime)

    def has_pending(self) -> bool:
        return bool(self.pending_files())

    def replay(self, apply: Callable[[list[CallEvent]], None]) -> int:
        """Apply every spooled file, oldest first; return the number of events applied.

        ``apply`` takes one file's events and commits them in one transaction;
        if it raises, the file stays for the next attempt. The file being
        written is first rotated, so appends during a replay are not lost.
        """
        with self._lock:
            if self.current_file.exists():
                self._name = f"events-{os.getpid()}-{os.urandom(4).hex()}.jsonl"
        applied = 0
        for path in self.pending_files():
            if path == self.current_file:
                continue
            events = self._read(path)
            apply(events)
            path.unlink()
            applied += len(events)
            log.info("spool: replayed %d event(s) from %s", len(events), path.name)
        return applied

    @staticmethod
    def _read(path: Path) -> list[CallEvent]:
        events = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                events.append(from_record(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                # A torn last line (crash mid-write) must not block the rest of the file.
                log.error("spool: skipping unreadable line %d of %s: %s", number, path.name, exc)
        return events
