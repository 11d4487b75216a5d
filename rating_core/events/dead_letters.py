"""Events the store refused, kept with the reason, so they never block the events behind them.

A journal is applied in order, and an event the database will not take (a
rule refuses it, a value it cannot hold) would otherwise stop its stream for
good. It goes here instead, fsynced before the store's position passes it, and
``hotline-eval db dead-letters`` lists what is waiting for a person to look at.
Once one event of a call is here, the call's later events follow it, so a
call is never half applied out of order.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rating_core.events.journal import Entry

FILE_NAME = "dead-letters.jsonl"


@dataclass(frozen=True)
class DeadLetter:
    stream: str
    segment: int
    line: int
    reason: str
    raw: str
    at: datetime

    @property
    def record(self) -> dict[str, Any] | None:
        try:
            value = json.loads(self.raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


def _ends_a_line(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


class DeadLetters:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / FILE_NAME
        self._lock = threading.Lock()

    def add(self, stream: str, entry: Entry, reason: str) -> None:
        """Keep a refused entry, durably, before its stream moves past it."""
        record = {"stream": stream, "segment": entry.position.segment, "line": entry.position.line,
                  "reason": reason, "raw": entry.raw,
                  "at": datetime.now(timezone.utc).isoformat()}
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+", encoding="utf-8") as f:
                f.seek(0, os.SEEK_END)
                torn = f.tell() > 0 and not _ends_a_line(self.path)  # a crash mid-write: start a line of our own
                f.write(("\n" if torn else "") + json.dumps(record, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())

    def all(self) -> list[DeadLetter]:
        """Every dead letter, oldest first; one written twice (a crash before the store moved on) once."""
        if not self.path.exists():
            return []
        seen: dict[tuple[str, int, int], DeadLetter] = {}
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
                letter = DeadLetter(record["stream"], int(record["segment"]), int(record["line"]), record["reason"],
                                    record["raw"], datetime.fromisoformat(record["at"]))
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a crash mid-write: its event is still in its stream, not yet passed
            seen.setdefault((letter.stream, letter.segment, letter.line), letter)
        return list(seen.values())

    def uniqueids(self) -> set[str]:
        """Calls with an event here: their rating may be among them, so they are not to be defaulted."""
        found = set()
        for letter in self.all():
            record = letter.record
            if record is not None and isinstance(record.get("uniqueid"), str):
                found.add(record["uniqueid"])
        return found
